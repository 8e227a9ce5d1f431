"""What the architecture layer says about one encoder family: where its blocks are and, inside a
block, which Linear layer plays which role. Techniques ask these questions instead of looking
for BERT names (`attention.self.query`, `intermediate.dense`, ...)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """One encoder layout. Paths are dotted attribute paths; block paths are relative to a block."""

    name: str  # the family's own model_type, e.g. "bert"
    model_types: tuple[str, ...]  # every config.model_type built this way
    blocks: str  # the ModuleList of transformer blocks, under the base model (model.base_model)
    # Attention. `heads_module` holds the per-head projections and the head-count attributes.
    heads_module: str
    attention_output: str  # Linear from the concatenated heads back to the hidden size
    query: str | None = None
    key: str | None = None
    value: str | None = None
    qkv: str | None = None  # one fused Linear: query rows, then key rows, then value rows
    # Projections of relative-position embeddings with one slice per head (DeBERTa's pos_key_proj,
    # pos_query_proj); present only with some configs, so each is optional in a block.
    position_projections: tuple[str, ...] = ()
    head_count_attributes: tuple[str, ...] = ()  # on heads_module: set to the kept head count
    head_width_attributes: tuple[str, ...] = ()  # on heads_module: set to kept heads x head size
    # Whether the output projection sits inside heads_module (DistilBERT, ModernBERT) or after it
    # in its own module, before the residual LayerNorm (BERT, DeBERTa).
    output_inside_heads_module: bool = False
    # FFN: in (rows = neurons; a gated FFN stacks up rows then gate rows) and out (columns = neurons).
    ffn_in: str = ""
    ffn_out: str = ""
    ffn_gated: bool = False
    # Config keys as config.json spells them (DistilBERT's own names: a config.json dict has no attribute_map).
    intermediate_size_key: str = "intermediate_size"
    layer_count_key: str = "num_hidden_layers"
    head_count_key: str = "num_attention_heads"
    # Whether transformers 4.x rebuilds removed heads from `config.pruned_heads` in from_pretrained.
    legacy_pruned_heads: bool = False
    layer_types_key: str | None = None  # per-layer attention kinds (ModernBERT's local / global)
    # transformers 4.x has no per-layer list: a layer is periodic_kinds[0] when its index is a multiple
    # of the config's `layer_period_key`, else periodic_kinds[1] (5.x's default list follows the same rule).
    layer_period_key: str | None = None
    periodic_kinds: tuple[str, str] | None = None
    # Block modules the first block lacks (ModernBERT's attn_norm: its embeddings are normalized already).
    absent_in_first_block: tuple[str, ...] = ()
    # Modules under the base model applied to the first block's output (DeBERTa-v2's optional conv,
    # built when conv_kernel_size > 0): while one is there, the first layer cannot be removed.
    follows_first_block: tuple[str, ...] = ()
    head_modules: tuple[str, ...] = ("classifier", "pooler")  # the task head: kept unquantized (bnb, QAT)
    new_head_modules: tuple[str, ...] = ("classifier",)  # head layers a checkpoint lacks: LoRA trains them in full
    lora_targets: tuple[str, ...] = ()  # LoRA's default layers (the query and value projections)
    takes_token_type_ids: bool = True  # False: its tokenizer's token_type_ids are dropped (a BERT tokenizer on DistilBERT)

    def projection_roles(self) -> dict[str, str]:
        """Recipe name -> path in a block of every Linear a block has (factorize, QAT, reports)."""
        roles = {"query": self.query, "key": self.key, "value": self.value, "qkv": self.qkv,
                 "attention_output": self.attention_output, "ffn_in": self.ffn_in, "ffn_out": self.ffn_out}
        return {role: path for role, path in roles.items() if path}

    def head_projections(self) -> tuple[str, ...]:
        """Linear layers whose output rows are grouped by head (the fused qkv counts once)."""
        return tuple(p for p in (self.query, self.key, self.value, self.qkv) if p)

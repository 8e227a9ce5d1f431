"""ModernBERT: one fused Wqkv per layer, a gated FFN (Wi holds the up rows, then the gate rows),
rotary positions, alternating global and local (sliding-window) attention layers, no
token_type_ids. Its task head is `head` (dense + norm) then `classifier`.

A student copies each chosen layer with its attention kind (transformers 5's `layer_types`). Its
first block has no pre-attention norm, as every ModernBERT's: a later teacher layer copied there
drops its attn_norm, and teacher layer 0 copied further up gets a fresh one (training adapts both)."""

from distill.models.families.base import Family

FAMILY = Family(
    name="modernbert",
    model_types=("modernbert",),
    blocks="layers",
    heads_module="attn",
    qkv="attn.Wqkv",
    attention_output="attn.Wo",
    output_inside_heads_module=True,
    head_count_attributes=("num_heads",),  # transformers 4.x reads it; 5.x infers heads from the shapes
    head_width_attributes=("all_head_size",),
    ffn_in="mlp.Wi",
    ffn_out="mlp.Wo",
    ffn_gated=True,
    layer_types_key="layer_types",
    layer_period_key="global_attn_every_n_layers",
    periodic_kinds=("full_attention", "sliding_attention"),
    absent_in_first_block=("attn_norm",),
    head_modules=("head", "classifier"),
    new_head_modules=("classifier",),
    takes_token_type_ids=False,
    lora_targets=("Wqkv",),
)

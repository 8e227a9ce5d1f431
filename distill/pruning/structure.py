"""Physically removing attention heads and FFN neurons, in every family the architecture layer
(`distill.models.families`) describes: which Linear layers hold a head's rows (query / key / value,
a fused qkv, DeBERTa's position projections) and its columns (the attention output), and which
hold an FFN neuron (a row of ffn_in, both the up and the gate row when gated; a column of ffn_out).

Heads are named by their ORIGINAL index (0..num_attention_heads-1 of the unpruned model), as in
transformers' `config.pruned_heads`, so pruning twice composes. FFN neurons are named by their
CURRENT position in the layer (what `ffn_importance` scores), and so are layers, here and in
`distill.pruning.layers.remove_layers` (which records the original indices of the layers it keeps).

After every change the pruning map is written to the model's config (see `sync_pruning_config`):
the native `pruned_heads` (transformers 4.x rebuilds BERT head shapes from it in `from_pretrained`)
and our own `distill_pruning` key, which `load_pruned` re-applies without relying on the native path.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from transformers.pytorch_utils import prune_linear_layer

from distill import DistillError
from distill.models.compat import TRANSFORMERS_5
from distill.models.families import Family, config_value, family_of, layer_kinds, periodic_layer_kinds, set_submodule, submodule
from distill.models.families import transformer_blocks as family_blocks

PRUNING_KEY = "distill_pruning"


class NoHeadsAttention(nn.Module):
    """The heads module of a layer whose heads were all removed: it contributes nothing.

    It keeps the original module's children (the emptied projections, with 0 output features)
    so the state dict keeps the same keys. Without the output projection inside (BERT, DeBERTa)
    it passes `hidden_states` through: the following `BiasOnlyLinear` reads only its shape. With
    it inside (DistilBERT, ModernBERT) it returns that projection's bias. No zero-sized tensor
    enters the graph: the native 0-head modules fail on `view(batch, -1, 0, head_size)`.
    """

    def __init__(self, original: nn.Module, output_name: str | None):
        super().__init__()
        for name, child in original.named_children():
            setattr(self, name, child)
        self.output_name = output_name

    def forward(self, *args, **kwargs):
        # transformers 4.x DistilBERT passes the input as `query=`; every other caller positionally.
        hidden_states = args[0] if args else kwargs.get("hidden_states", kwargs.get("query"))
        output = getattr(self, self.output_name)(hidden_states) if self.output_name else hidden_states
        return output, None


class BiasOnlyLinear(nn.Module):
    """The attention output projection once every head is gone (0 input features): its output is
    its bias (zeros without one), broadcast over the input's leading dimensions."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = 0, linear.out_features
        self.weight = nn.Parameter(linear.weight.detach()[:, :0].clone())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        shape = hidden_states.shape[:-1] + (self.out_features,)
        if self.bias is None:
            return hidden_states.new_zeros(shape)
        return self.bias.expand(shape)


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    return family_blocks(model, "pruning")[1]


def head_size(model: nn.Module) -> int:
    config = model.config  # DeBERTa may set its own head size
    return getattr(config, "attention_head_size", None) or config.hidden_size // config.num_attention_heads


def kept_heads(model: nn.Module) -> list[list[int]]:
    """Per layer, the original indices of the heads still present."""
    total = model.config.num_attention_heads
    return [[h for h in range(total) if h not in getattr(layer, "pruned_heads", set())] for layer in transformer_blocks(model)]


def kept_layers(model: nn.Module) -> list[int]:
    """The original indices of the model's layers (recorded when layers were removed, else 0..n-1)."""
    layers = (config_value(model, PRUNING_KEY) or {}).get("layers_kept")
    count = len(transformer_blocks(model))
    if layers is None:
        return list(range(count))
    if len(layers) != count:
        raise DistillError(f"config.{PRUNING_KEY}.layers_kept: records {len(layers)} layers, the model has {count}")
    return list(layers)


def intermediate_sizes(model: nn.Module) -> list[int]:
    family = family_of(model, "pruning")
    return [submodule(layer, family.ffn_out).in_features for layer in transformer_blocks(model)]


def _take(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    with warnings.catch_warnings():  # emptying every head builds 0-sized layers; torch warns on their init
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        pruned = prune_linear_layer(linear, index, dim=dim)
    return pruned.to(dtype=linear.weight.dtype)  # it is built in the default dtype: keep the model's


def _relative(path: str, parent: str) -> str:
    return path.removeprefix(parent + ".")


def _remove_heads(layer: nn.Module, family: Family, index: torch.Tensor, kept: int, size: int, width: int) -> None:
    """Keep the rows `index` (within one head-grouped projection) everywhere heads live."""
    for path in family.head_projections() + family.position_projections:
        linear = submodule(layer, path)
        if linear is None:  # an optional projection this config has not built
            continue
        rows = index if path != family.qkv else torch.cat([index + part * width for part in range(3)])
        set_submodule(layer, path, _take(linear, rows, 0))
    output = _take(submodule(layer, family.attention_output), index, 1)
    if kept:
        set_submodule(layer, family.attention_output, output)
        heads_module = submodule(layer, family.heads_module)
        for name in family.head_count_attributes:
            if hasattr(heads_module, name):
                setattr(heads_module, name, kept)
        for name in family.head_width_attributes:
            if hasattr(heads_module, name):
                setattr(heads_module, name, kept * size)
        return
    output = BiasOnlyLinear(output)
    if family.output_inside_heads_module:
        set_submodule(layer, family.attention_output, output)
        name = _relative(family.attention_output, family.heads_module)
        set_submodule(layer, family.heads_module, NoHeadsAttention(submodule(layer, family.heads_module), name))
    else:
        set_submodule(layer, family.heads_module, NoHeadsAttention(submodule(layer, family.heads_module), None))
        set_submodule(layer, family.attention_output, output)


def prune_heads(model: nn.Module, heads_to_prune: Mapping[int, Sequence[int]]) -> nn.Module:
    """Remove heads (original indices) in place: their rows go from the head-grouped projections,
    their columns from the output projection. A layer may lose every head; its attention then adds
    only the output bias. Heads already removed are ignored. Returns the model."""
    family = family_of(model, "pruning")
    layers = transformer_blocks(model)
    total, size = model.config.num_attention_heads, head_size(model)
    for layer_index, heads in heads_to_prune.items():
        if not 0 <= int(layer_index) < len(layers):
            raise DistillError(f"heads_to_prune: layer {layer_index} out of range; the model has layers 0..{len(layers) - 1}")
        bad = [h for h in heads if not 0 <= int(h) < total]
        if bad:
            raise DistillError(f"heads_to_prune[{layer_index}]: head(s) {bad} out of range; layers have heads 0..{total - 1}")
        layer = layers[int(layer_index)]
        pruned_before = set(getattr(layer, "pruned_heads", set()))
        kept_before = [h for h in range(total) if h not in pruned_before]
        removed = {int(h) for h in heads} - pruned_before
        if not removed:
            continue
        positions = [i for i, h in enumerate(kept_before) if h not in removed]
        index = (torch.tensor(positions, dtype=torch.long)[:, None] * size + torch.arange(size)).reshape(-1)
        _remove_heads(layer, family, index, len(positions), size, len(kept_before) * size)
        layer.pruned_heads = pruned_before | removed
    sync_pruning_config(model)
    return model


def prune_ffn(model: nn.Module, neurons_to_keep: Mapping[int, Sequence[int]] | Sequence[Sequence[int]]) -> nn.Module:
    """Keep only the listed intermediate neurons (current positions) of each named layer, in place.
    A list gives every layer's neurons in order; a mapping only the layers it names. Every layer
    keeps at least one neuron. A gated FFN keeps each neuron's up and gate rows together. Returns the model."""
    family = family_of(model, "pruning")
    layers = transformer_blocks(model)
    items = neurons_to_keep.items() if isinstance(neurons_to_keep, Mapping) else enumerate(neurons_to_keep)
    for layer_index, keep in items:
        if not 0 <= int(layer_index) < len(layers):
            raise DistillError(f"neurons_to_keep: layer {layer_index} out of range; the model has layers 0..{len(layers) - 1}")
        layer = layers[int(layer_index)]
        ffn_out = submodule(layer, family.ffn_out)
        size = ffn_out.in_features
        index = torch.as_tensor(keep, dtype=torch.long).reshape(-1).unique(sorted=True)
        if index.numel() == 0:
            raise DistillError(f"neurons_to_keep[{layer_index}]: must keep at least one neuron")
        if index[0] < 0 or index[-1] >= size:
            raise DistillError(f"neurons_to_keep[{layer_index}]: indices must be in 0..{size - 1}")
        if index.numel() == size:
            continue
        rows = torch.cat([index, index + size]) if family.ffn_gated else index
        set_submodule(layer, family.ffn_in, _take(submodule(layer, family.ffn_in), rows, 0))
        set_submodule(layer, family.ffn_out, _take(ffn_out, index, 1))
    sync_pruning_config(model)
    return model


def original_intermediate_size(model_or_config) -> int:
    """The FFN size of every layer before any pruning (the config's, or the one recorded at the first pruning)."""
    recorded = (config_value(model_or_config, PRUNING_KEY) or {}).get("original_intermediate_size")
    return recorded or config_value(model_or_config, family_of(model_or_config, "pruning").intermediate_size_key)


def sync_pruning_config(model: nn.Module) -> None:
    """Write the model's current pruning map into its config, so it travels with `save_pretrained`.

    - `pruned_heads` {layer: [original heads]}: transformers 4.x's own field (gone in 5.x), only for
      the families whose 4.x classes rebuild from it (others raise on a non-empty one).
    - the intermediate size: the per-layer size when uniform (a standard config), else the largest.
    - `distill_pruning`: the original indices of the layers kept, per layer the kept heads and the
      intermediate size; `load_pruned` reads it.
    """
    config, family = model.config, family_of(model, "pruning")
    layers, heads, sizes = kept_layers(model), kept_heads(model), intermediate_sizes(model)
    original_size = original_intermediate_size(model)
    total = config.num_attention_heads
    removed = {i: [h for h in range(total) if h not in kept] for i, kept in enumerate(heads) if len(kept) < total}
    config.pruned_heads = removed if family.legacy_pruned_heads else {}
    setattr(config, family.intermediate_size_key, max(sizes))
    setattr(
        config,
        PRUNING_KEY,
        {
            "layers_kept": [int(i) for i in layers],
            "heads_kept": heads,
            "intermediate_sizes": sizes,
            "original_intermediate_size": original_size,
        },
    )


def pruning_counts(model: nn.Module) -> dict[str, int]:
    """Heads and FFN neurons of the original model (`*_total`) and how many are gone (`*_pruned`)."""
    heads, sizes = kept_heads(model), intermediate_sizes(model)
    heads_total = len(heads) * model.config.num_attention_heads
    ffn_total = len(sizes) * original_intermediate_size(model)
    return {
        "heads_total": heads_total,
        "heads_pruned": heads_total - sum(len(k) for k in heads),
        "ffn_total": ffn_total,
        "ffn_pruned": ffn_total - sum(sizes),
    }


def loads_natively(model_or_config, *, transformers_5: bool = TRANSFORMERS_5) -> bool:
    """Whether plain `from_pretrained` (so `pipeline(task, model=folder)`) rebuilds the model's shapes.

    Takes a model, a config or a config.json dict. Both stacks need uniform FFN sizes (a standard
    `intermediate_size`). Heads: transformers 4.x re-applies `config.pruned_heads` (BERT-like and
    DistilBERT classes only), as long as every layer keeps a head (a 0-head layer loads but its forward fails); 5.x has no
    `pruned_heads` and takes the head size from hidden_size / num_attention_heads, so no head
    pruning, not even uniform, can be expressed: its `from_pretrained` fails on the sizes. Removed
    layers are a smaller layer count, native but for position-dependent block parts (`_kept_blocks_native`).
    `transformers_5` picks the rule (default: the installed stack's)."""
    spec = config_value(model_or_config, PRUNING_KEY)
    if not spec:
        return True
    if len(set(spec["intermediate_sizes"])) != 1 or not _kept_blocks_native(model_or_config, spec, transformers_5):
        return False
    family = family_of(model_or_config, "pruning")
    total = config_value(model_or_config, family.head_count_key)  # unknown: cannot tell whether heads were removed
    no_heads_removed = total is not None and all(len(kept) == total for kept in spec["heads_kept"])
    if not transformers_5 and family.legacy_pruned_heads:
        return all(spec["heads_kept"])
    return no_heads_removed


def _kept_blocks_native(model_or_config, spec: Mapping, transformers_5: bool) -> bool:
    """Whether `from_pretrained` builds the kept blocks as they are. Removing layers keeps each block
    whole, but a native model builds its first block without `absent_in_first_block` (ModernBERT's
    attn_norm) and drops that saved norm: so the first kept layer must be the original first.
    transformers 4.x also sets the attention kinds by the new index: they must be the kept ones."""
    layers = spec.get("layers_kept")  # absent: saved before layers could be removed, so none were
    if not layers:
        return True
    if family_of(model_or_config, "pruning").absent_in_first_block and layers[0] != 0:
        return False
    return transformers_5 or layer_kinds(model_or_config) == periodic_layer_kinds(model_or_config)

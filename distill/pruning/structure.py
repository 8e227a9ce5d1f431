"""Physically removing attention heads and FFN neurons from BERT-style encoders.

Heads are named by their ORIGINAL index (0..num_attention_heads-1 of the unpruned model), as in
transformers' `config.pruned_heads`, so pruning twice composes. FFN neurons are named by their
CURRENT position in the layer (what `ffn_importance` scores).

After every change the pruning map is written to the model's config (see `sync_pruning_config`):
the native `pruned_heads` (transformers 4.x rebuilds head shapes from it in `from_pretrained`) and
our own `distill_pruning` key, which `load_pruned` re-applies without relying on the native path.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from transformers.pytorch_utils import prune_linear_layer

from distill import DistillError
from distill.models.architectures import encoder_layers
from distill.models.compat import TRANSFORMERS_5

PRUNING_KEY = "distill_pruning"


class NoHeadsSelfAttention(nn.Module):
    """Self-attention of a layer whose heads were all removed: it contributes nothing.

    It keeps the emptied query/key/value projections (0 output features) so the state dict keeps
    the keys transformers writes for such a layer. It passes `hidden_states` through untouched:
    the following `BiasOnlyLinear` only reads its shape, so no zero-sized tensor enters the graph
    (the native 0-head module fails there: `view(batch, -1, 0, head_size)` is ambiguous).
    """

    def __init__(self, query: nn.Linear, key: nn.Linear, value: nn.Linear, head_size: int):
        super().__init__()
        self.query, self.key, self.value = query, key, value
        self.num_attention_heads = 0
        self.attention_head_size = head_size
        self.all_head_size = 0

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        return hidden_states, None


class BiasOnlyLinear(nn.Module):
    """The attention output projection once every head is gone (0 input features): its output is
    its bias, broadcast over the input's leading dimensions."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        if linear.bias is None:  # without a bias the projection would be a constant 0: not worth a class
            raise DistillError("cannot remove every head of a layer whose output projection has no bias")
        self.in_features, self.out_features = 0, linear.out_features
        self.weight = nn.Parameter(linear.weight.detach()[:, :0].clone())
        self.bias = nn.Parameter(linear.bias.detach().clone())

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(hidden_states.shape[:-1] + (self.out_features,))


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The encoder's layers, checked to have the BERT layout pruning edits (BERT, RoBERTa, ELECTRA,
    XLM-R, MiniLM: `attention.self.{query,key,value}`, `attention.output.dense`,
    `intermediate.dense`, `output.dense`)."""
    _, layers = encoder_layers(model)
    for layer in layers:
        attention = getattr(layer, "attention", None)
        ok = (
            attention is not None
            and all(hasattr(getattr(attention, "self", None), n) for n in ("query", "key", "value"))
            and hasattr(getattr(attention, "output", None), "dense")
            and hasattr(getattr(layer, "intermediate", None), "dense")
            and hasattr(getattr(layer, "output", None), "dense")
        )
        if not ok:
            raise DistillError(
                f"pruning supports BERT-style encoders (bert, roberta, electra, ...); "
                f"{type(model).__name__} has another layer layout"
            )
    return layers


def head_size(model: nn.Module) -> int:
    return model.config.hidden_size // model.config.num_attention_heads


def kept_heads(model: nn.Module) -> list[list[int]]:
    """Per layer, the original indices of the heads still present."""
    total = model.config.num_attention_heads
    return [[h for h in range(total) if h not in getattr(layer.attention, "pruned_heads", set())] for layer in transformer_blocks(model)]


def intermediate_sizes(model: nn.Module) -> list[int]:
    return [layer.intermediate.dense.out_features for layer in transformer_blocks(model)]


def _take(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    with warnings.catch_warnings():  # emptying every head builds 0-sized layers; torch warns on their init
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        pruned = prune_linear_layer(linear, index, dim=dim)
    return pruned.to(dtype=linear.weight.dtype)  # it is built in the default dtype: keep the model's


def prune_heads(model: nn.Module, heads_to_prune: Mapping[int, Sequence[int]]) -> nn.Module:
    """Remove heads (original indices) in place: q/k/v lose their rows, the output projection
    its columns. A layer may lose every head; its attention then adds only the output bias
    before the residual LayerNorm. Heads already removed are ignored. Returns the model."""
    layers = transformer_blocks(model)
    total, size = model.config.num_attention_heads, head_size(model)
    for layer_index, heads in heads_to_prune.items():
        if not 0 <= int(layer_index) < len(layers):
            raise DistillError(f"heads_to_prune: layer {layer_index} out of range; the model has layers 0..{len(layers) - 1}")
        bad = [h for h in heads if not 0 <= int(h) < total]
        if bad:
            raise DistillError(f"heads_to_prune[{layer_index}]: head(s) {bad} out of range; layers have heads 0..{total - 1}")
        attention = layers[int(layer_index)].attention
        pruned_before = set(getattr(attention, "pruned_heads", set()))
        kept_before = [h for h in range(total) if h not in pruned_before]
        removed = {int(h) for h in heads} - pruned_before
        if not removed:
            continue
        positions = [i for i, h in enumerate(kept_before) if h not in removed]
        index = (torch.tensor(positions, dtype=torch.long)[:, None] * size + torch.arange(size)).reshape(-1)
        self_attention = attention.self
        query, key, value = (_take(getattr(self_attention, n), index, 0) for n in ("query", "key", "value"))
        dense = _take(attention.output.dense, index, 1)
        if positions:
            self_attention.query, self_attention.key, self_attention.value = query, key, value
            self_attention.num_attention_heads = len(positions)
            self_attention.all_head_size = len(positions) * size
            attention.output.dense = dense
        else:
            attention.self = NoHeadsSelfAttention(query, key, value, size)
            attention.output.dense = BiasOnlyLinear(dense)
        attention.pruned_heads = pruned_before | removed
    sync_pruning_config(model)
    return model


def prune_ffn(model: nn.Module, neurons_to_keep: Mapping[int, Sequence[int]] | Sequence[Sequence[int]]) -> nn.Module:
    """Keep only the listed intermediate neurons (current positions) of each named layer, in place.
    A list gives every layer's neurons in order; a mapping only the layers it names. Every layer
    keeps at least one neuron. Returns the model."""
    layers = transformer_blocks(model)
    items = neurons_to_keep.items() if isinstance(neurons_to_keep, Mapping) else enumerate(neurons_to_keep)
    for layer_index, keep in items:
        if not 0 <= int(layer_index) < len(layers):
            raise DistillError(f"neurons_to_keep: layer {layer_index} out of range; the model has layers 0..{len(layers) - 1}")
        layer = layers[int(layer_index)]
        size = layer.intermediate.dense.out_features
        index = torch.as_tensor(keep, dtype=torch.long).reshape(-1).unique(sorted=True)
        if index.numel() == 0:
            raise DistillError(f"neurons_to_keep[{layer_index}]: must keep at least one neuron")
        if index[0] < 0 or index[-1] >= size:
            raise DistillError(f"neurons_to_keep[{layer_index}]: indices must be in 0..{size - 1}")
        if index.numel() == size:
            continue
        layer.intermediate.dense = _take(layer.intermediate.dense, index, 0)
        layer.output.dense = _take(layer.output.dense, index, 1)
    sync_pruning_config(model)
    return model


def sync_pruning_config(model: nn.Module) -> None:
    """Write the model's current pruning map into its config, so it travels with `save_pretrained`.

    - `pruned_heads` {layer: [original heads]}: transformers 4.x's own field (gone in 5.x).
    - `intermediate_size`: the per-layer size when uniform (a standard config), else the largest.
    - `distill_pruning`: per-layer kept heads and intermediate sizes, read by `load_pruned`.
    """
    config = model.config
    heads, sizes = kept_heads(model), intermediate_sizes(model)
    previous = getattr(config, PRUNING_KEY, None) or {}
    original_size = previous.get("original_intermediate_size", config.intermediate_size)
    total = config.num_attention_heads
    config.pruned_heads = {i: [h for h in range(total) if h not in kept] for i, kept in enumerate(heads) if len(kept) < total}
    config.intermediate_size = max(sizes)
    setattr(config, PRUNING_KEY, {"heads_kept": heads, "intermediate_sizes": sizes, "original_intermediate_size": original_size})


def pruning_counts(model: nn.Module) -> dict[str, int]:
    """Heads and FFN neurons of the original model (`*_total`) and how many are gone (`*_pruned`)."""
    config = model.config
    heads, sizes = kept_heads(model), intermediate_sizes(model)
    original_size = (getattr(config, PRUNING_KEY, None) or {}).get("original_intermediate_size", config.intermediate_size)
    heads_total = len(heads) * config.num_attention_heads
    ffn_total = len(sizes) * original_size
    return {
        "heads_total": heads_total,
        "heads_pruned": heads_total - sum(len(k) for k in heads),
        "ffn_total": ffn_total,
        "ffn_pruned": ffn_total - sum(sizes),
    }


def loads_natively(model_or_config, *, transformers_5: bool = TRANSFORMERS_5) -> bool:
    """Whether plain `from_pretrained` (so `pipeline(task, model=folder)`) rebuilds the model's shapes.

    Takes a model, a config or a config.json dict. Both stacks need uniform FFN sizes (a standard
    `intermediate_size`). Heads: transformers 4.x re-applies `config.pruned_heads`, as long as
    every layer keeps a head (a 0-head layer loads but its forward fails); 5.x has no
    `pruned_heads` and takes the head size from hidden_size / num_attention_heads, so no head
    pruning, not even uniform, can be expressed: its `from_pretrained` fails on the sizes.
    `transformers_5` picks the rule (default: the installed stack's)."""
    config = getattr(model_or_config, "config", model_or_config)
    get = config.get if isinstance(config, Mapping) else lambda key: getattr(config, key, None)
    spec = get(PRUNING_KEY)
    if not spec:
        return True
    if len(set(spec["intermediate_sizes"])) != 1:
        return False
    if not transformers_5:
        return all(spec["heads_kept"])
    total = get("num_attention_heads")  # unknown: cannot tell whether heads were removed
    return total is not None and all(len(kept) == total for kept in spec["heads_kept"])

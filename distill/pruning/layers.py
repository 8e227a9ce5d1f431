"""Physically removing whole transformer layers, in every family the architecture layer describes.

The kept blocks stay exactly as they were, position-dependent parts included: ModernBERT's block 0
has no attn_norm, so a model whose first kept layer is a later one keeps that layer's norm, and
each kept layer keeps its attention kind (global or sliding window). The outputs are those of the
kept blocks run in order. `load_pruned` rebuilds such a model from the original indices recorded in
the config's pruning map (`layers_kept`); see `loads_natively` for when `from_pretrained` can.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from distill import DistillError
from distill.models.families import family_of, keep_layers_in_config, layer_kinds, set_submodule, submodule
from distill.pruning.structure import PRUNING_KEY, kept_layers, sync_pruning_config, transformer_blocks


def remove_layers(model: nn.Module, keep: Sequence[int]) -> nn.Module:
    """Keep only the layers at `keep` (current indices, in any order: the kept ones keep theirs) and
    drop the others whole, in place. The config gets the new layer count and attention kinds, the
    pruning map the original indices of the kept layers (so removing twice composes). Remove heads
    and FFN neurons first when their plans use the current indices. Returns the model."""
    family = family_of(model, "pruning")
    blocks = transformer_blocks(model)
    indices = [int(i) for i in keep]
    if not indices:
        raise DistillError("layers to keep: the list is empty; a model keeps at least one layer")
    if bad := [i for i in indices if not 0 <= i < len(blocks)]:
        raise DistillError(f"layers to keep: layer {bad[0]} out of range; the model has layers 0..{len(blocks) - 1}")
    if len(set(indices)) != len(indices):
        raise DistillError(f"layers to keep: {sorted({i for i in indices if indices.count(i) > 1})} listed twice")
    if 0 not in indices and (after := _after_first_block(model, family)):
        raise DistillError(f"layers to keep: must include layer 0: {after[0]} runs on its output")
    indices.sort()
    original = kept_layers(model)
    config = model.config
    if family.layer_types_key:  # transformers 4.x derives the kinds from the index: write down the ones the blocks have
        setattr(config, family.layer_types_key, layer_kinds(config))
    set_submodule(model.base_model, family.blocks, nn.ModuleList([blocks[i] for i in indices]))
    keep_layers_in_config(config, indices)
    setattr(config, PRUNING_KEY, {**(getattr(config, PRUNING_KEY, None) or {}), "layers_kept": [original[i] for i in indices]})
    sync_pruning_config(model)
    return model


def layers_that_must_stay(model: nn.Module) -> list[int]:
    """The layers `remove_layers` refuses to drop: layer 0 where a module runs on its output."""
    return [0] if _after_first_block(model, family_of(model, "pruning")) else []


def _after_first_block(model: nn.Module, family) -> list[str]:
    return [p for p in family.follows_first_block if submodule(model.base_model, p) is not None]

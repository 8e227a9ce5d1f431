"""The architecture layer: one small module per encoder family says where its blocks are and which
Linear layer plays which role (see `base.Family`). Everything that edits or walks a model's
layers (student layer copy, pruning, factorization, LoRA targets, QAT, bitsandbytes skips) asks
here. Adding a family is one module plus one row of the test matrix. Written by hand: neither
transformers nor peft describes block roles (peft's LoRA target table lacks DistilBERT and ModernBERT).

    family = family_of(model)                     # or a config, or config.json as a dict
    prefix, blocks = transformer_blocks(model)    # "bert.encoder.layer", the ModuleList
    linear = submodule(blocks[0], family.query)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from distill import DistillError
from distill.models.families import bert, deberta_v2, distilbert, modernbert
from distill.models.families.base import Family

if TYPE_CHECKING:  # torch is imported where modules are walked: `distill validate` reads this layer without it
    from torch import nn

FAMILIES: tuple[Family, ...] = (bert.FAMILY, distilbert.FAMILY, deberta_v2.FAMILY, modernbert.FAMILY)
BY_MODEL_TYPE = {model_type: family for family in FAMILIES for model_type in family.model_types}

# Model types whose layout cannot take the per-layer techniques, with the reason.
UNSUPPORTED = {
    "albert": "ALBERT shares one set of layer weights across its depth, so layers cannot be copied, "
    "pruned or factorized one by one",
    "mpnet": "MPNet's relative-position bias is one table per head shared by every layer, so heads "
    "cannot be removed layer by layer",
}

# The tokenizers.json model types distill can trim, by the names the recipe reference uses.
TOKENIZER_KINDS = {"WordPiece": "wordpiece", "BPE": "bpe", "Unigram": "unigram"}

__all__ = ["BY_MODEL_TYPE", "FAMILIES", "TOKENIZER_KINDS", "Family", "config_value", "family_of", "keep_layers_in_config",
           "layer_kinds", "model_type_of", "periodic_layer_kinds", "set_submodule", "submodule", "tokenizer_kind",
           "transformer_blocks"]


def config_value(model_or_config, key: str):
    """A config field of a model, a config or a config.json dict; None when it has none."""
    config = getattr(model_or_config, "config", model_or_config)
    return config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)


def model_type_of(model_or_config) -> str | None:
    return config_value(model_or_config, "model_type")


def family_of(model_or_config, what: str = "this stage") -> Family:
    """The family of a model, a config or a config.json dict; a one-line refusal naming `what`
    needs it when the model type has no entry."""
    model_type = model_type_of(model_or_config)
    if model_type in BY_MODEL_TYPE:
        return BY_MODEL_TYPE[model_type]
    known = ", ".join(sorted(BY_MODEL_TYPE))
    reason = UNSUPPORTED.get(model_type, f"distill's architecture layer knows {known}")
    raise DistillError(f"{what}: model type {model_type!r} is not supported: {reason}")


def transformer_blocks(model: nn.Module, what: str = "this stage") -> tuple[str, nn.ModuleList]:
    """(dotted path of the block list in the model, the blocks)."""
    from torch import nn

    family = family_of(model, what)
    base = model.base_model
    prefix = getattr(model, "base_model_prefix", "")
    path = f"{prefix}.{family.blocks}" if base is not model and prefix else family.blocks
    blocks = submodule(base, family.blocks)
    if not isinstance(blocks, nn.ModuleList):
        raise DistillError(f"{type(model).__name__}: {path} is not a list of transformer blocks")
    return path, blocks


def periodic_layer_kinds(model_or_config) -> list[str] | None:
    """The attention kind transformers 4.x gives each layer from its index (see `Family.periodic_kinds`);
    None for a family without kinds."""
    family = family_of(model_or_config)
    period = config_value(model_or_config, family.layer_period_key) if family.layer_period_key else None
    if not period:
        return None
    first, other = family.periodic_kinds
    return [first if i % period == 0 else other for i in range(config_value(model_or_config, family.layer_count_key))]


def layer_kinds(model_or_config) -> list[str] | None:
    """Each layer's attention kind: the config's list (transformers 5's `layer_types`), else the one
    its index gives; None for a family without kinds."""
    family = family_of(model_or_config)
    listed = config_value(model_or_config, family.layer_types_key) if family.layer_types_key else None
    return list(listed) if listed else periodic_layer_kinds(model_or_config)


def keep_layers_in_config(config, layers: Sequence[int]) -> None:
    """Make a config describe only `layers` (indices of its current layers, in that order), in place:
    the family's layer count and, where the config lists them, the layers' attention kinds."""
    family = family_of(config)
    listed = config_value(config, family.layer_types_key) if family.layer_types_key else None
    setattr(config, family.layer_count_key, len(layers))
    if listed:
        setattr(config, family.layer_types_key, [listed[i] for i in layers])


def submodule(module: nn.Module, path: str) -> nn.Module | None:
    """The module at a dotted path, or None when it has none there (an optional projection)."""
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def set_submodule(module: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(submodule(module, parent) if parent else module, name, new)


def tokenizer_kind(folder: str | Path) -> str | None:
    """wordpiece, bpe or unigram from a saved fast tokenizer's tokenizer.json (another model type by
    its own name); None without one (a slow-only tokenizer)."""
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        return None
    kind = json.loads(path.read_text(encoding="utf-8")).get("model", {}).get("type")
    return TOKENIZER_KINDS.get(kind, kind)

"""Reloading pruned models from the map in their config, without transformers' native pruning.

transformers 4.x's `from_pretrained` re-applies `config.pruned_heads` itself, but it cannot run a
layer left with no heads, cannot build per-layer FFN sizes, and 5.x dropped `pruned_heads`
altogether. `load_pruned` rebuilds the shapes from our `distill_pruning` key instead: it builds
the unpruned architecture from the config (as deep as the original, when layers were removed: a
block's position-dependent parts come from its original index), removes the layers with our own
`remove_layers`, prunes to the recorded shapes with `prune_heads`/`prune_ffn`, then loads the saved
weights strictly (every key, every shape).
"""

from __future__ import annotations

import copy
from pathlib import Path

from safetensors.torch import load_file
from transformers import AutoConfig, PreTrainedModel

from distill import DistillError
from distill.models.architectures import saved_model_class
from distill.models.compat import load_sharded_checkpoint
from distill.models.families import config_value, family_of
from distill.pruning.layers import remove_layers
from distill.pruning.structure import PRUNING_KEY, prune_ffn, prune_heads


def load_pruned(path: str | Path, **config_kwargs) -> PreTrainedModel:
    """Load a saved model, re-applying its pruning map; an unpruned folder loads as usual.
    Safetensors only; `config_kwargs` override config fields (e.g. `attn_implementation`)."""
    folder = Path(path)
    attn = config_kwargs.pop("attn_implementation", None)
    config = AutoConfig.from_pretrained(folder, **config_kwargs)
    cls = saved_model_class(config)
    spec = getattr(config, PRUNING_KEY, None)
    extra = {"attn_implementation": attn} if attn else {}
    if not spec:
        return cls.from_pretrained(folder, config=config, use_safetensors=True, **extra).eval()
    lists = [spec["heads_kept"], spec["intermediate_sizes"], spec.get("layers_kept", spec["heads_kept"])]
    if any(len(per_layer) != config.num_hidden_layers for per_layer in lists):
        raise DistillError(f"{folder}/config.json: {PRUNING_KEY} lists {'/'.join(str(len(p)) for p in lists)} layers, "
                           f"the config has {config.num_hidden_layers}")
    model = pruned_skeleton(config, cls, **extra)
    _load_weights_strictly(model, folder)
    return model.eval()  # its config: the saved one, with the map rewritten by the pruning calls


def pruned_skeleton(config, cls, **extra) -> PreTrainedModel:
    """The architecture with the pruned shapes of the config's map, weights not loaded: the unpruned
    model built from the config, then its layers removed and the rest pruned to the recorded shapes."""
    spec = getattr(config, PRUNING_KEY)
    layers = spec.get("layers_kept")  # absent from folders saved before layers could be removed
    skeleton = copy.deepcopy(config)
    skeleton.pruned_heads = {}  # shapes come from our map, not from transformers' own pruning
    setattr(skeleton, family_of(config, "pruning").intermediate_size_key, max(spec["intermediate_sizes"]))
    if layers is not None:
        _place_layers_at_original_indices(skeleton, layers)
    model = cls._from_config(skeleton, **extra)
    if layers is not None:
        remove_layers(model, layers)
    total = config.num_attention_heads
    prune_heads(model, {i: [h for h in range(total) if h not in kept] for i, kept in enumerate(spec["heads_kept"])})
    prune_ffn(model, [list(range(size)) for size in spec["intermediate_sizes"]])
    return model  # its config: the saved one, with the map rewritten by the pruning calls


def _place_layers_at_original_indices(config, layers: list[int]) -> None:
    """Make a layer-removed model's config describe a model with its layers back at their original
    indices (the others, to be removed again, as deep as the last kept one), in place."""
    family = family_of(config, "pruning")
    kinds = config_value(config, family.layer_types_key) if family.layer_types_key else None
    setattr(config, family.layer_count_key, max(layers) + 1)
    if kinds:  # each kept layer's kind at its index; the others, removed again, take any listed kind
        at = dict(zip(layers, kinds))
        setattr(config, family.layer_types_key, [at.get(i, kinds[0]) for i in range(max(layers) + 1)])
    setattr(config, PRUNING_KEY, {k: v for k, v in getattr(config, PRUNING_KEY).items() if k != "layers_kept"})


def _load_weights_strictly(model: PreTrainedModel, folder: Path) -> None:
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    try:
        if single.is_file():
            model.load_state_dict(load_file(single), strict=True)
        elif index.is_file():
            load_sharded_checkpoint(model, folder, strict=True, prefer_safe=True)
        else:
            raise DistillError(f"{folder}: no safetensors weights (model.safetensors) to load")
    except RuntimeError as err:
        raise DistillError(f"{folder}: the weights do not match the pruning map in config.json ({str(err).splitlines()[0]})") from None

"""Reloading pruned models from the map in their config, without transformers' native pruning.

transformers 4.x's `from_pretrained` re-applies `config.pruned_heads` itself, but it cannot run a
layer left with no heads, cannot build per-layer FFN sizes, and 5.x dropped `pruned_heads`
altogether. `load_pruned` rebuilds the shapes from our `distill_pruning` key instead: it builds
the unpruned architecture from the config, prunes it to the recorded shapes with our own
`prune_heads`/`prune_ffn`, then loads the saved weights strictly (every key, every shape).
"""

from __future__ import annotations

import copy
from pathlib import Path

from safetensors.torch import load_file
from transformers import AutoConfig, PreTrainedModel

from distill import DistillError
from distill.models.architectures import saved_model_class
from distill.models.compat import load_sharded_checkpoint
from distill.models.families import family_of
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
    if len(spec["heads_kept"]) != config.num_hidden_layers or len(spec["intermediate_sizes"]) != config.num_hidden_layers:
        raise DistillError(f"{folder}/config.json: {PRUNING_KEY} lists {len(spec['heads_kept'])} layers, "
                           f"the config has {config.num_hidden_layers}")
    model = pruned_skeleton(config, cls, **extra)
    _load_weights_strictly(model, folder)
    return model.eval()  # its config: the saved one, with the map rewritten by the pruning calls


def pruned_skeleton(config, cls, **extra) -> PreTrainedModel:
    """The architecture with the pruned shapes of the config's map, weights not loaded: the unpruned
    model built from the config, then pruned to the recorded shapes."""
    spec = getattr(config, PRUNING_KEY)
    skeleton = copy.deepcopy(config)
    skeleton.pruned_heads = {}  # shapes come from our map, not from transformers' own pruning
    setattr(skeleton, family_of(config, "pruning").intermediate_size_key, max(spec["intermediate_sizes"]))
    model = cls._from_config(skeleton, **extra)
    total = config.num_attention_heads
    prune_heads(model, {i: [h for h in range(total) if h not in kept] for i, kept in enumerate(spec["heads_kept"])})
    prune_ffn(model, [list(range(size)) for size in spec["intermediate_sizes"]])
    return model  # its config: the saved one, with the map rewritten by the pruning calls


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

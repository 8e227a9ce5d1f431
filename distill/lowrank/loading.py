"""Reloading factorized models: `load_factorized(folder)`.

Plain `from_pretrained` cannot build a factorized layer (it fails on the shape of its `weight`,
see distill/lowrank/svd.py). `load_factorized` builds the architecture from config.json, applies
the pruning map first if there is one (`distill_pruning`), replaces every module listed in
`distill_factorization.ranks` by an (untrained) factorized module of that rank, then loads the
saved safetensors weights strictly: every key, every shape.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, PreTrainedModel

from distill import DistillError
from distill.lowrank.factorize import FACTORIZATION_KEY, FORMAT_VERSION, replace_module
from distill.lowrank.svd import FactorizedEmbedding, FactorizedLinear
from distill.models.architectures import saved_model_class
from distill.models.compat import load_sharded_checkpoint
from distill.pruning.loading import pruned_skeleton
from distill.pruning.structure import PRUNING_KEY


def load_factorized(path: str | Path, **config_kwargs) -> PreTrainedModel:
    """A saved factorized (and maybe pruned) classifier, outputs identical to the saved one.
    Safetensors only; `config_kwargs` override config fields (e.g. `attn_implementation`)."""
    folder = Path(path)
    attn = config_kwargs.pop("attn_implementation", None)
    config = AutoConfig.from_pretrained(folder, **config_kwargs)
    spec = getattr(config, FACTORIZATION_KEY, None)
    if not spec or spec.get("format") != FORMAT_VERSION or not isinstance(spec.get("ranks"), dict):
        raise DistillError(f"{folder}/config.json: no {FACTORIZATION_KEY} map (format {FORMAT_VERSION}) with per-module ranks")
    model = _skeleton(config, attn)
    for module_path, rank in spec["ranks"].items():
        try:
            module = model.get_submodule(module_path)
        except AttributeError:
            raise DistillError(f"{folder}/config.json: {FACTORIZATION_KEY} names {module_path!r}, which the model does not have") from None
        replace_module(model, module_path, _empty_factorized(module, int(rank), module_path, folder))
    _load_weights_strictly(model, folder)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or torch.float32
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    return model.to(dtype).eval()


def _skeleton(config, attn: str | None) -> PreTrainedModel:
    """The unfactorized architecture, with pruned shapes if the config has a pruning map."""
    extra = {"attn_implementation": attn} if attn else {}
    pruning = getattr(config, PRUNING_KEY, None)
    if not pruning:
        return saved_model_class(config)._from_config(config, **extra)
    # As distill.pruning.load_pruned builds it, but weights are loaded later: our factorized
    # modules must be in place first.
    return pruned_skeleton(config, saved_model_class(config), **extra)


def _empty_factorized(module: nn.Module, rank: int, path: str, folder: Path) -> nn.Module:
    if type(module) is nn.Linear:
        return FactorizedLinear(module.in_features, module.out_features, rank, bias=module.bias is not None)
    if type(module) is nn.Embedding:
        return FactorizedEmbedding(module.num_embeddings, module.embedding_dim, rank, module.padding_idx)
    raise DistillError(f"{folder}/config.json: {FACTORIZATION_KEY} names {path!r}, a {type(module).__name__}, not a linear or embedding layer")


def _load_weights_strictly(model: nn.Module, folder: Path) -> None:
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    try:
        if single.is_file():
            model.load_state_dict(load_file(single), strict=True)
        elif index.is_file():
            load_sharded_checkpoint(model, folder, strict=True, prefer_safe=True)
        else:
            raise DistillError(f"{folder}: no safetensors weights (model.safetensors) to load")
    except RuntimeError as err:
        raise DistillError(f"{folder}: the weights do not match the factorization map in config.json ({str(err).splitlines()[0]})") from None

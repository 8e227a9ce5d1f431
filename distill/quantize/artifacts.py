"""Any stage artifact, whatever its backend: what it is (`describe_artifact`) and how to load it
for inference (`load_artifact`). The folder's files say which backend wrote it:
`*.onnx` -> ONNX Runtime; a bitsandbytes `quantization_config` in config.json -> bitsandbytes;
otherwise torch safetensors in the saved dtype."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from distill import DistillError

TORCH_DTYPE_NAMES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


@dataclass(frozen=True)
class ArtifactKind:
    backend: str  # torch | onnxruntime | bitsandbytes
    precision: str  # fp32 | fp16 | bf16 | int8 | nf4 | fp4

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}"


def describe_artifact(folder: str | Path) -> ArtifactKind:
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise DistillError(f"{folder}: not a model folder (no config.json)")
    config = json.loads(config_file.read_text())
    if any(folder.glob("*.onnx")):
        from distill.quantize.ort_session import is_quantized

        return ArtifactKind("onnxruntime", "int8" if is_quantized(folder) else "fp32")
    quantization = config.get("quantization_config") or {}
    if quantization.get("quant_method") == "bitsandbytes":
        if quantization.get("load_in_4bit"):
            return ArtifactKind("bitsandbytes", quantization.get("bnb_4bit_quant_type", "nf4"))
        return ArtifactKind("bitsandbytes", "int8")
    if quantization:
        raise DistillError(f"{folder}: quantization method {quantization.get('quant_method')!r} is not supported")
    dtype = config.get("dtype") or config.get("torch_dtype") or "float32"
    return ArtifactKind("torch", TORCH_DTYPE_NAMES.get(str(dtype), str(dtype)))


def load_artifact(folder: str | Path, *, threads: int | None = None):
    """(model, kind): an inference-ready classifier whose call returns an output with `.logits`.
    `threads` fixes ONNX Runtime's intra-op threads (torch's are process-wide: the caller sets them)."""
    kind = describe_artifact(folder)
    if kind.backend == "onnxruntime":
        from distill.quantize.ort_session import load_onnx_classifier

        return load_onnx_classifier(folder, threads), kind
    if kind.backend == "bitsandbytes":
        from distill.quantize.bnb import load_bnb_classifier

        return load_bnb_classifier(folder), kind
    return load_torch_classifier(folder), kind


def own_loader(config: dict):
    """Our loader for the shapes transformers cannot rebuild from this config.json: low-rank layers
    (distill/lowrank, maybe pruned too) or pruned ones (distill/pruning); None for a native model."""
    from distill.lowrank import FACTORIZATION_KEY, load_factorized
    from distill.pruning import PRUNING_KEY, load_pruned

    return load_factorized if config.get(FACTORIZATION_KEY) else load_pruned if config.get(PRUNING_KEY) else None


def load_torch_classifier(folder: str | Path):
    """A torch artifact in its saved dtype; factorized and pruned ones through our loaders (low-rank
    layers, a layer without heads or per-layer FFN sizes do not load natively)."""
    import torch

    from distill.models.sources import check_weights_format
    from distill.quantize.cast import load_cast_classifier

    check_weights_format(str(folder), allow_pickle=False)  # artifacts load from safetensors only
    config = json.loads((Path(folder) / "config.json").read_text())
    loader = own_loader(config)
    if loader is None:
        return load_cast_classifier(folder)
    dtype = config.get("dtype") or config.get("torch_dtype") or "float32"
    return loader(folder).to(getattr(torch, str(dtype)))  # a factorized model loads in it already


def load_task_model(source: str, task, **kwargs):
    """A classifier for `task` from a torch source: our factorized and pruned artifacts through their
    own loaders, any other model through `distill.models.loading.load_classifier` (same keyword
    arguments)."""
    from distill.models.loading import load_classifier
    from distill.models.sources import check_weights_format, resolve_model_path

    path = resolve_model_path(source)
    check_weights_format(path, kwargs.get("allow_pickle", False))
    config_file = Path(path) / "config.json"
    loader = own_loader(json.loads(config_file.read_text()) if config_file.is_file() else {})
    if loader is None:
        return load_classifier(source, task, **kwargs)
    attn_implementation = kwargs.get("attn_implementation")
    return loader(config_file.parent, **({"attn_implementation": attn_implementation} if attn_implementation else {}))


def require_torch_artifact(folder: str | Path, field: str) -> ArtifactKind:
    """Quantization starts from a torch model: say so when the input is already quantized."""
    kind = describe_artifact(folder)
    if kind.backend != "torch":
        raise DistillError(f"{field}: needs a torch model to start from, but {folder} is a {kind.label} artifact")
    return kind


def loads_with_from_pretrained(folder: str | Path) -> bool:
    """Whether transformers' own `from_pretrained` rebuilds the model (bitsandbytes quantizes
    while loading that way): not for factorized layers or pruning this stack cannot express."""
    from distill.lowrank import FACTORIZATION_KEY
    from distill.pruning import loads_natively

    config = json.loads((Path(folder) / "config.json").read_text())
    return not config.get(FACTORIZATION_KEY) and loads_natively(config)



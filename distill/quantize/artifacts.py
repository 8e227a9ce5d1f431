"""Any stage artifact, whatever its backend: what it is (`describe_artifact`) and how to load it
for inference (`load_artifact`). The folder's files say which backend wrote it:
`*.onnx` -> ONNX Runtime; a bitsandbytes `quantization_config` in config.json -> bitsandbytes;
otherwise torch safetensors in the saved dtype."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from distill.errors import DistillError

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


def load_torch_classifier(folder: str | Path):
    """A torch artifact in its saved dtype; factorized and pruned ones through the maps in their
    config (low-rank layers, a layer without heads or per-layer FFN sizes do not load natively)."""
    import torch

    from distill.lowrank import FACTORIZATION_KEY, load_factorized
    from distill.models import check_weights_format
    from distill.pruning import PRUNING_KEY, load_pruned
    from distill.quantize.cast import load_cast_classifier

    check_weights_format(str(folder), allow_pickle=False)  # artifacts load from safetensors only
    config = json.loads((Path(folder) / "config.json").read_text())
    if config.get(FACTORIZATION_KEY):
        return load_factorized(folder)  # in its saved dtype
    if config.get(PRUNING_KEY):
        dtype = config.get("dtype") or config.get("torch_dtype") or "float32"
        return load_pruned(folder).to(getattr(torch, str(dtype)))
    return load_cast_classifier(folder)


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


# Module names: every Linear at or under a module of that name (a whole run of path components:
# "pooler" and "bert.pooler" both cover bert.pooler.dense) stays unquantized (bnb, QAT).
DEFAULT_SKIP_MODULES = ("classifier", "pooler")


def skipped_linear_paths(model, names: Sequence[str] | None, field: str = "skip_modules") -> list[str]:
    """The full dotted paths of the model's Linear layers that `names` cover; None: those of
    DEFAULT_SKIP_MODULES the model has. A name given that covers no layer is an error."""
    from torch import nn

    linears = [path for path, module in model.named_modules() if isinstance(module, nn.Linear)]
    if names is None:
        names = [name for name in DEFAULT_SKIP_MODULES if any(f".{name}." in f".{path}." for path in linears)]
    for name in names:
        if not any(f".{name}." in f".{path}." for path in linears):
            raise DistillError(f"{field}: '{name}' names no Linear layer of {type(model).__name__}")
    return [path for path in linears if any(f".{name}." in f".{path}." for name in names)]

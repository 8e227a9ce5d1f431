"""bitsandbytes weights through transformers' `BitsAndBytesConfig`: LLM.int8 (8-bit) or 4-bit
nf4/fp4 (optionally double-quantized), loaded from a saved classifier folder, saved and reloaded
with `from_pretrained` (the quantization config travels in config.json).

On CPU this saves memory, not time (shared/PLATFORM.md). Traps handled here:
- the task head stays unquantized (`skip_modules`, default classifier and BERT's pooler);
- a 4-bit model that ran inference on an AVX512-BF16 CPU repacks its weights in place and then
  saves corrupted: `disable_cpu_weight_repacking` turns that off on every Linear4bit;
- int8 logs a cast warning on every matmul: the `bitsandbytes` logger is raised to ERROR.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, BitsAndBytesConfig

from distill.errors import DistillError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
QUANT_TYPES = ("nf4", "fp4")
DEFAULT_SKIP_MODULES = ("classifier", "pooler")


def quiet_bitsandbytes() -> None:
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def bnb_config(
    bits: int,
    *,
    quant_type: str = "nf4",
    double_quant: bool = True,
    compute_dtype: str = "fp32",
    skip_modules: tuple[str, ...] | list[str] = DEFAULT_SKIP_MODULES,
) -> BitsAndBytesConfig:
    if bits not in (4, 8):
        raise DistillError(f"bits: must be 4 or 8, got {bits!r}")
    if quant_type not in QUANT_TYPES:
        raise DistillError(f"quant_type: must be one of {', '.join(QUANT_TYPES)}, got {quant_type!r}")
    if compute_dtype not in DTYPES:
        raise DistillError(f"compute_dtype: must be one of {', '.join(DTYPES)}, got {compute_dtype!r}")
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(skip_modules))
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_type,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=DTYPES[compute_dtype],
        llm_int8_skip_modules=list(skip_modules),
    )


def _device_map() -> dict[str, str]:
    return {"": "cuda:0" if torch.cuda.is_available() else "cpu"}


def quantize_bnb(src_dir: str | Path, config: BitsAndBytesConfig, dtype: str = "fp32"):
    """Load a saved classifier with its Linear weights quantized by bitsandbytes. `dtype` is the
    precision of what stays unquantized (embeddings, LayerNorm, head): fp32 by default, as fp16
    is emulated and slow on CPUs."""
    quiet_bitsandbytes()
    if dtype not in DTYPES:
        raise DistillError(f"dtype: must be one of {', '.join(DTYPES)}, got {dtype!r}")
    model = AutoModelForSequenceClassification.from_pretrained(
        src_dir, quantization_config=config, dtype=DTYPES[dtype], device_map=_device_map(), use_safetensors=True
    )
    disable_cpu_weight_repacking(model)
    return model.eval()


def disable_cpu_weight_repacking(model) -> int:
    """Keep 4-bit weights in their saved layout during CPU inference (see module docstring)."""
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def load_bnb_classifier(folder: str | Path):
    """A saved bitsandbytes classifier (config.json carries its quantization_config)."""
    quiet_bitsandbytes()
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype="auto", device_map=_device_map(), use_safetensors=True)
    disable_cpu_weight_repacking(model)
    return model.eval()


def parameter_count(model) -> int:
    """Parameters of the model before packing: a 4-bit weight is stored as half as many bytes,
    its quant_state keeps the real shape."""
    total = 0
    for param in model.parameters():
        state = getattr(param, "quant_state", None)
        total += state.shape.numel() if state is not None else param.numel()
    return total


def quantized_linear_count(model) -> int:
    import bitsandbytes as bnb

    return sum(isinstance(m, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)) for m in model.modules())

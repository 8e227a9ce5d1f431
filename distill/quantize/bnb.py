"""bitsandbytes weights through transformers' `BitsAndBytesConfig`: LLM.int8 (8-bit) or 4-bit
nf4/fp4 (optionally double-quantized), loaded from a saved classifier folder, saved and reloaded
with `from_pretrained` (the quantization config travels in config.json).

On CPU this saves memory, not time (shared/PLATFORM.md). Traps handled here:
- the task head stays unquantized (`skip_modules`, default classifier and BERT's pooler, where
  the model has one: a token classifier has none). The
  names are resolved to the full paths of the Linear layers they cover before loading, because
  transformers matches `llm_int8_skip_modules` differently by release (4.57: "name." anywhere in
  a path; 5.x: a path prefix or suffix, so "pooler" no longer covers bert.pooler.dense). Full
  paths mean the same to both, also when a saved artifact is reloaded on the other stack;
- a 4-bit model that ran inference on an AVX512-BF16 CPU repacks its weights in place and then
  saves corrupted: `disable_cpu_weight_repacking` turns that off on every Linear4bit;
- int8 logs a cast warning on every matmul: the `bitsandbytes` logger is raised to ERROR.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from transformers import AutoConfig, BitsAndBytesConfig

from distill import DistillError
from distill.models.architectures import saved_model_class
from distill.quantize.skip_modules import skipped_linear_paths

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
QUANT_TYPES = ("nf4", "fp4")


def quiet_bitsandbytes() -> None:
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def bnb_config(
    bits: int,
    *,
    quant_type: str = "nf4",
    double_quant: bool = True,
    compute_dtype: str = "fp32",
    skip_modules: tuple[str, ...] | list[str] | None = None,
) -> BitsAndBytesConfig:
    """None for skip_modules: the task head's names that the model has (skip_modules.default_skip_modules),
    resolved when the model is loaded."""
    if bits not in (4, 8):
        raise DistillError(f"bits: must be 4 or 8, got {bits!r}")
    if quant_type not in QUANT_TYPES:
        raise DistillError(f"quant_type: must be one of {', '.join(QUANT_TYPES)}, got {quant_type!r}")
    if compute_dtype not in DTYPES:
        raise DistillError(f"compute_dtype: must be one of {', '.join(DTYPES)}, got {compute_dtype!r}")
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=_names(skip_modules))
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_type,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=DTYPES[compute_dtype],
        llm_int8_skip_modules=_names(skip_modules),
    )


def _names(skip_modules) -> list[str] | None:
    return None if skip_modules is None else list(skip_modules)


def _with_full_skip_paths(src_dir: str | Path, config: BitsAndBytesConfig, field: str) -> BitsAndBytesConfig:
    """A copy of `config` whose skip list is the full paths of the layers it covers in this model."""
    with torch.device("meta"):  # the module tree only, no weights
        config_of_model = AutoConfig.from_pretrained(src_dir)
        cls = saved_model_class(config_of_model)
        skeleton = cls.from_config(config_of_model) if hasattr(cls, "from_config") else cls._from_config(config_of_model)
    config = copy.deepcopy(config)
    config.llm_int8_skip_modules = skipped_linear_paths(skeleton, config.llm_int8_skip_modules, field)
    return config


def _saved_class(folder: str | Path) -> type:
    return saved_model_class(AutoConfig.from_pretrained(folder))


def _device_map() -> dict[str, str]:
    return {"": "cuda:0" if torch.cuda.is_available() else "cpu"}


def quantize_bnb(src_dir: str | Path, config: BitsAndBytesConfig, dtype: str = "fp32", *, skip_field: str = "skip_modules"):
    """Load a saved classifier with its Linear weights quantized by bitsandbytes. `dtype` is the
    precision of what stays unquantized (embeddings, LayerNorm, head): fp32 by default, as fp16
    is emulated and slow on CPUs. `skip_field` names the skip list in errors (a recipe field)."""
    quiet_bitsandbytes()
    if dtype not in DTYPES:
        raise DistillError(f"dtype: must be one of {', '.join(DTYPES)}, got {dtype!r}")
    model = _saved_class(src_dir).from_pretrained(
        src_dir, quantization_config=_with_full_skip_paths(src_dir, config, skip_field), dtype=DTYPES[dtype], device_map=_device_map(),
        use_safetensors=True,
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
    model = _saved_class(folder).from_pretrained(folder, dtype="auto", device_map=_device_map(), use_safetensors=True)
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

"""Half-precision copies of a torch classifier (fp16 or bf16), saved as safetensors in that dtype.

Halves the file and the memory. Whether it is faster depends on the hardware: CPUs without
native fp16/bf16 (AVX2-only ones) emulate it and run slower than fp32.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig

from distill import DistillError
from distill.models.architectures import saved_model_class

CAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def cast_classifier(model, dtype: str):
    """The model with every floating-point weight in `dtype` (config.torch_dtype follows)."""
    if dtype not in CAST_DTYPES:
        raise DistillError(f"dtype: must be one of {', '.join(CAST_DTYPES)}, got {dtype!r}")
    return model.to(CAST_DTYPES[dtype])


def load_cast_classifier(folder: str | Path):
    """Load in the saved dtype (`from_pretrained` would otherwise upcast to fp32)."""
    return saved_model_class(AutoConfig.from_pretrained(folder)).from_pretrained(folder, dtype="auto", use_safetensors=True).eval()

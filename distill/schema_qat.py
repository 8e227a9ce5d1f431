"""Recipe schema of the `qat` stage (quantization-aware training, distill/quantize/qat.py).

distill.recipe imports this module to register the stage in its `Stage` union: import the class
from `distill.recipe` (importing this module before distill.recipe is a circular import).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from distill.recipe import LossConfig, Strict, TrainConfig

# A nearly trained model learns to live with int8 rounding: a short run at a small rate.
QAT_TRAIN_DEFAULTS = {"epochs": 1.0, "learning_rate": 2e-5, "warmup_ratio": 0.1}


class QatStage(Strict):
    """Fake-quantize a trained torch model (int8 weights per channel, uint8 activations per
    Linear input), train it with distillation, export the ONNX QDQ graph ONNX Runtime runs in int8."""

    kind: Literal["qat"]
    name: str = "qat"
    input: str | None = None  # the torch stage quantized; default: the previous stage
    # Who teaches: default the input model itself, in fp32; or an earlier stage (same vocabulary).
    teacher: str | None = None
    loss: LossConfig = LossConfig()  # soft targets + hard labels + hidden cosine, as the distill stage
    train: TrainConfig = TrainConfig(**QAT_TRAIN_DEFAULTS)
    seeds: list[int] | None = None
    calibration_examples: int = Field(256, gt=0)  # training examples whose min / max start the ranges
    # "ema": ranges follow the batches during training (exponential moving average); "frozen": kept
    # at their calibrated values.
    activation_ranges: Literal["ema", "frozen"] = "ema"
    momentum: float = Field(0.01, gt=0, le=1)
    # Linear layers left in fp32; None: the task head (classifier, and the pooler where there is one).
    keep_fp32: list[str] | None = None
    # Embedding tables in uint8 (one range per table, as PTQ stores them) or left in fp32.
    quantize_embeddings: bool = True
    # 7-bit weights, for CPUs without VNNI (AVX2), whose u8 x s8 pair sums can saturate. None: on
    # when the artifact is built on such a CPU.
    reduce_range: bool | None = None
    max_metric_drop: float | None = Field(None, ge=0)  # fail when the metric falls more than this below the input's

    @field_validator("train", mode="before")
    @classmethod
    def _train_defaults(cls, train):
        return {**QAT_TRAIN_DEFAULTS, **train} if isinstance(train, dict) else train

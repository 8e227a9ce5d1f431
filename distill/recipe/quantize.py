"""Recipe schema of the quantization stages: `onnx` (export, graph optimisation, int8 with ONNX
Runtime), `bnb`, `cast` (new backend or precision, re-evaluated) and `qat` (quantization-aware
training, distill/quantize/qat.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from distill import DistillError
from distill.recipe.base import Strict
from distill.recipe.training import LossConfig, TrainConfig


class OnnxStage(Strict):
    """Export to ONNX (torch.onnx), optionally optimize the graph and quantize to int8 with ONNX Runtime."""

    kind: Literal["onnx"]  # picks this stage type
    name: str = "onnx"  # its folder <output_dir>/<recipe name>/<name>/ and what later stages call it; unique
    input: str | None = None  # the stage whose torch model is exported; default: the previous stage
    quantization: Literal["none", "dynamic", "static"] = "dynamic"  # static: activation ranges calibrated on train
    # Graph optimizations baked into the file: 0 none (ONNX Runtime still applies its own at load
    # time), 1 basic, 2 plus the transformer fusions (attention, SkipLayerNorm, BiasGelu), 99 all
    # (hardware-specific). int8: 0-2 dynamic, 0-1 static (it calibrates the unfused graph).
    optimization_level: Literal[0, 1, 2, 99] = 0
    per_channel: bool = True  # one int8 scale per output channel: slower to build, closer to fp32
    isa: Literal["auto", "avx2", "avx512", "avx512_vnni", "arm64"] = "auto"  # auto: from this CPU's flags
    calibration_examples: int = Field(128, gt=0)  # static only: training examples used to calibrate
    # Static only: how ONNX Runtime sets each activation range from the calibration examples: the
    # observed min / max, the entropy (KL-divergence) optimum, or a percentile of the values (clips outliers).
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    # Operator types quantized (ONNX names, e.g. MatMul, Gemm, Gather, Attention); None: every one
    # the quantizer knows (dynamic), MatMul / Gemm / Gather (static).
    op_types: list[str] | None = Field(None, min_length=1)
    # torch modules left fp32 (dotted names: "classifier", "bert.encoder.layer.2.output.dense"),
    # every Linear at or under them; none by default.
    keep_fp32: list[str] | None = Field(None, min_length=1)
    # The activation x activation matmuls of attention (scores, scores x values): int8 as Optimum
    # does (None, the default: unset fields keep finished stages' fingerprints), or fp32 as a qat
    # stage leaves them (on an AVX2-only CPU 1.08x faster at batch 1, benchmarks/int8_attention_matmuls.json).
    attention_matmuls: Literal["int8", "fp32"] | None = None
    # Fail the run when the metric falls more than this below the input stage's, in the metric's own
    # units (0.02: 2 accuracy points); the evaluated artifact is still written. None: no check.
    max_metric_drop: float | None = Field(None, ge=0)

    @field_validator("optimization_level")
    @classmethod
    def _level_fits_quantization(cls, level: int, info) -> int:
        try:
            check_levels(level, info.data.get("quantization", "dynamic"))
        except DistillError as err:
            raise ValueError(str(err).removeprefix("optimization_level: ")) from None
        return level


class BnbStage(Strict):
    """bitsandbytes weights: LLM.int8 (bits 8) or 4-bit nf4/fp4. Saves memory, not CPU time."""

    kind: Literal["bnb"]  # picks this stage type
    name: str = "bnb"  # its folder <output_dir>/<recipe name>/<name>/ and what later stages call it; unique
    input: str | None = None  # the stage whose torch model is quantized; default: the previous stage
    bits: Literal[4, 8] = 8  # 8: LLM.int8 weights; 4: nf4 or fp4 weights (quant_type)
    quant_type: Literal["nf4", "fp4"] | None = None  # 4-bit only; default nf4
    double_quant: bool | None = None  # 4-bit only: quantize the scales too; default true
    compute_dtype: Literal["fp32", "fp16", "bf16"] | None = None  # 4-bit only: matmul dtype; default fp32
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"  # what stays unquantized (embeddings, LayerNorm, head)
    # Module names kept unquantized. None: the task head (classifier, and BERT's pooler where the model has one).
    skip_modules: list[str] | None = None
    # Fail the run when the metric falls more than this below the input stage's, in the metric's own
    # units (0.02: 2 accuracy points); the evaluated artifact is still written. None: no check.
    max_metric_drop: float | None = Field(None, ge=0)

    @field_validator("quant_type", "double_quant", "compute_dtype")
    @classmethod
    def _four_bit_only(cls, value, info):
        if value is not None and info.data.get("bits") == 8:
            raise ValueError("only applies to bits: 4")
        return value


class CastStage(Strict):
    """A half-precision copy (fp16 or bf16) of a torch model."""

    kind: Literal["cast"]  # picks this stage type
    name: str = "cast"  # its folder <output_dir>/<recipe name>/<name>/ and what later stages call it; unique
    input: str | None = None  # the stage whose torch model is cast; default: the previous stage
    dtype: Literal["fp16", "bf16"]  # every floating-point weight is converted to it and saved in it
    # Fail the run when the metric falls more than this below the input stage's, in the metric's own
    # units (0.02: 2 accuracy points); the evaluated artifact is still written. None: no check.
    max_metric_drop: float | None = Field(None, ge=0)


# A nearly trained model learns to live with int8 rounding: a short run at a small rate.
QAT_TRAIN_DEFAULTS = {"epochs": 1.0, "learning_rate": 2e-5, "warmup_ratio": 0.1}


class QatStage(Strict):
    """Fake-quantize a trained torch model (int8 weights per channel, uint8 activations per
    Linear input), train it with distillation, export the ONNX QDQ graph ONNX Runtime runs in int8."""

    kind: Literal["qat"]  # picks this stage type
    name: str = "qat"  # its folder <output_dir>/<recipe name>/<name>/ and what later stages call it; unique
    input: str | None = None  # the stage whose torch model is quantized; default: the previous stage
    # Who teaches: default the input model itself, in fp32; or an earlier stage (same vocabulary).
    teacher: str | None = None
    loss: LossConfig = LossConfig()  # soft targets + hard labels + hidden cosine, as the distill stage
    # The training loop (epochs, batch, learning rate, evaluation), run once per seed; keys left unset
    # take QAT_TRAIN_DEFAULTS (1 epoch at 2e-5, warmup 0.1), not TrainConfig's.
    train: TrainConfig = TrainConfig(**QAT_TRAIN_DEFAULTS)
    # One model per seed (None: the recipe's seed); the first seed's model is the artifact, and the
    # report gives the mean and spread over seeds.
    seeds: list[int] | None = None
    calibration_examples: int = Field(256, gt=0)  # training examples whose min / max start the ranges
    # "ema": ranges follow the batches during training (exponential moving average); "frozen": kept
    # at their calibrated values.
    activation_ranges: Literal["ema", "frozen"] = "ema"
    momentum: float = Field(0.01, gt=0, le=1)  # ema only: each batch's weight in the running min / max
    # Linear layers left in fp32; None: the task head (classifier, and the pooler where there is one).
    keep_fp32: list[str] | None = None
    # Embedding tables in uint8 (one range per table, as PTQ stores them) or left in fp32.
    quantize_embeddings: bool = True
    # 7-bit weights, for CPUs without VNNI (AVX2), whose u8 x s8 pair sums can saturate. None: on
    # when the artifact is built on such a CPU.
    reduce_range: bool | None = None
    # Fail the run when the metric falls more than this below the input stage's, in the metric's own
    # units (0.02: 2 accuracy points); the evaluated artifact is still written. None: no check.
    max_metric_drop: float | None = Field(None, ge=0)

    @field_validator("train", mode="before")
    @classmethod
    def _train_defaults(cls, train):
        return {**QAT_TRAIN_DEFAULTS, **train} if isinstance(train, dict) else train


def check_levels(optimization_level: int, quantization: str) -> None:
    """Which optimization levels the int8 quantizer can read: the schema checks recipes with it,
and distill/quantize/ort.py the arguments of a direct call."""
    if quantization != "none" and optimization_level == 99:
        raise DistillError("optimization_level: 99 bakes hardware-specific ops in; quantize with 0, 1 or 2")
    if quantization == "static" and optimization_level == 2:
        raise DistillError("optimization_level: static int8 calibrates the unfused graph (0 or 1); "
                           "dynamic int8 takes level 2's fused attention")

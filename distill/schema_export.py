"""Recipe schema of the stages that convert or ship a finished artifact: `onnx`, `bnb`, `cast`
(new backend or precision, re-evaluated) and `publish` (model card + Hub upload).

distill.recipe imports this module to register the stages in its `Stage` union: import these
classes from `distill.recipe` (importing this module before distill.recipe is a circular import).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from distill.errors import DistillError
from distill.recipe import Strict


HUB_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")  # ORG/NAME


class PublishStage(Strict):
    """Push an evaluated artifact of this run to the Hugging Face Hub with a generated model card."""

    kind: Literal["publish"]
    name: str = "publish"
    repo_id: str  # ORG/NAME on the Hub
    stage: str | None = None  # whose artifact is pushed; default: the last earlier stage holding a model
    private: bool = False  # applies when the repo is created; an existing repo keeps its visibility
    revision: str | None = None  # branch to push to (created when missing); default: main
    license: str = "apache-2.0"  # the card's license id
    include_logs: bool = False  # also upload training logs (train_log.jsonl)
    dry_run: bool = False  # write the exact upload folder to <run>/<name>/upload/ and push nothing

    @field_validator("repo_id")
    @classmethod
    def _repo_id_valid(cls, repo_id: str) -> str:
        if not HUB_REPO_ID.fullmatch(repo_id) or ".." in repo_id:
            raise ValueError("must be ORG/NAME (letters, digits, '-', '_', '.')")
        return repo_id


class OnnxStage(Strict):
    """Export to ONNX (torch.onnx), optionally optimize the graph and quantize to int8 with ONNX Runtime."""

    kind: Literal["onnx"]
    name: str = "onnx"
    input: str | None = None  # the torch stage exported; default: the previous stage
    quantization: Literal["none", "dynamic", "static"] = "dynamic"  # static: activation ranges calibrated on train
    # Graph optimizations baked into the file: 0 none (ONNX Runtime still applies its own at load
    # time), 1 basic, 2 plus the transformer fusions (attention, SkipLayerNorm, BiasGelu), 99 all
    # (hardware-specific). int8: 0-2 dynamic, 0-1 static (it calibrates the unfused graph).
    optimization_level: Literal[0, 1, 2, 99] = 0
    per_channel: bool = True  # one int8 scale per output channel: slower to build, closer to fp32
    isa: Literal["auto", "avx2", "avx512", "avx512_vnni", "arm64"] = "auto"  # auto: from this CPU's flags
    calibration_examples: int = Field(128, gt=0)  # static only: training examples used to calibrate
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
    max_metric_drop: float | None = Field(None, ge=0)  # fail when the metric falls more than this below the input's

    @field_validator("optimization_level")
    @classmethod
    def _level_fits_quantization(cls, level: int, info) -> int:
        from distill.quantize.ort import check_levels

        try:
            check_levels(level, info.data.get("quantization", "dynamic"))
        except DistillError as err:
            raise ValueError(str(err).removeprefix("optimization_level: ")) from None
        return level


class BnbStage(Strict):
    """bitsandbytes weights: LLM.int8 (bits 8) or 4-bit nf4/fp4. Saves memory, not CPU time."""

    kind: Literal["bnb"]
    name: str = "bnb"
    input: str | None = None
    bits: Literal[4, 8] = 8
    quant_type: Literal["nf4", "fp4"] | None = None  # 4-bit only; default nf4
    double_quant: bool | None = None  # 4-bit only: quantize the scales too; default true
    compute_dtype: Literal["fp32", "fp16", "bf16"] | None = None  # 4-bit only: matmul dtype; default fp32
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"  # what stays unquantized (embeddings, LayerNorm, head)
    # Module names kept unquantized. None: the task head (classifier, and BERT's pooler where the model has one).
    skip_modules: list[str] | None = None
    max_metric_drop: float | None = Field(None, ge=0)

    @field_validator("quant_type", "double_quant", "compute_dtype")
    @classmethod
    def _four_bit_only(cls, value, info):
        if value is not None and info.data.get("bits") == 8:
            raise ValueError("only applies to bits: 4")
        return value


class CastStage(Strict):
    """A half-precision copy (fp16 or bf16) of a torch model."""

    kind: Literal["cast"]
    name: str = "cast"
    input: str | None = None
    dtype: Literal["fp16", "bf16"]
    max_metric_drop: float | None = Field(None, ge=0)

"""The recipe schema: the single source of truth for what a run does.

A recipe is YAML validated by these pydantic models; each stage kind's schema lives in this package,
one module per technique (training, prune, lowrank, quantize, general, publish). Unknown keys are
errors, so a typo never passes silently.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from distill.recipe.base import Strict
from distill.recipe.data import DataConfig
from distill.recipe.distill import BaselineStage, DistillStage, TeacherStage
from distill.recipe.general import GeneralDistillStage, MlmHeadStage
from distill.recipe.lowrank import FactorizeStage, TrimVocabStage
from distill.recipe.prune import PruneStage
from distill.recipe.publish import PublishStage
from distill.recipe.quantize import BnbStage, CastStage, OnnxStage, QatStage
from distill.recipe.training import ModelSource


class BenchmarkConfig(Strict):
    """Latency and memory of every stage's artifact, measured at the end of `distill run`."""

    enabled: bool = False  # time every stage's task model at the end of `distill run` (masked LMs skipped)
    batch_sizes: list[int] = Field([1, 32], min_length=1)  # each timed on that many dev examples (the first ones)
    seq_length: int = Field(64, ge=2)  # dev sentences padded (or cut) to this many tokens
    warmup: int = Field(3, ge=0)  # untimed calls per model and batch size
    repeats: int = Field(20, ge=1)  # timed calls; the median is reported
    threads: int | None = Field(None, gt=0)  # torch and ONNX Runtime intra-op threads; None: torch's default
    memory: bool = True  # peak RSS of each artifact in a fresh subprocess

    @field_validator("batch_sizes")
    @classmethod
    def _positive_distinct(cls, sizes: list[int]) -> list[int]:
        if any(b < 1 for b in sizes) or len(set(sizes)) != len(sizes):
            raise ValueError("must be distinct positive integers")
        return sizes


DEFAULT_STAGE_NAMES = {"teacher": "teacher", "distill": "student", "baseline": "baseline", "publish": "publish", "prune": "pruned",
                       "onnx": "onnx", "bnb": "bnb", "cast": "cast", "factorize": "factorized", "trim_vocab": "trimmed",
                       "mlm_head": "mlm_teacher", "general_distill": "general_student", "qat": "qat"}

Stage = Annotated[Union[TeacherStage, DistillStage, BaselineStage, PruneStage, PublishStage,
                        OnnxStage, BnbStage, CastStage, FactorizeStage, TrimVocabStage, MlmHeadStage,
                        GeneralDistillStage, QatStage], Field(discriminator="kind")]


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # the run: its folder is <output_dir>/<name>/
    task: str  # a built-in task (cola, mrpc, qnli, rte, sst2, stsb, wnli, wnut17), else a custom task's name (see data)
    seed: int = 42  # the run's seed: data subsets and holdout, shuffling, initialisation, training (stages' `seeds` override)
    output_dir: str = "runs"  # runs go to <output_dir>/<name>/; cached teacher logits to <output_dir>/.teacher_cache/
    # One setting per run (Accelerate keeps one precision state per process). "auto": bf16 on a
    # GPU or a CPU with native bf16 (AVX512-BF16/AMX), else fp32: bf16 emulated on AVX2 is ~4x slower.
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    data: DataConfig = DataConfig()  # where the task's examples come from and how they are cut
    model: ModelSource = ModelSource()  # the starting model; its tokenizer is the run's
    stages: list[Stage] = Field(min_length=1)  # what the run does, in order; each stage's `kind` picks its schema
    benchmark: BenchmarkConfig = BenchmarkConfig()  # latency/memory at the end of a run (not part of stage hashes)

    @model_validator(mode="after")
    def _stage_names_unique(self) -> "Recipe":
        seen: set[str] = set()
        for i, stage in enumerate(self.stages):
            if stage.name in seen:
                raise ValueError(f"stages[{i}].name: duplicate stage name '{stage.name}'")
            transfer = getattr(stage, "transfer", None)
            augment = transfer.augment if transfer is not None else None
            target = getattr(stage, "target", None)
            refs = {"teacher": getattr(stage, "teacher", None), "input": getattr(stage, "input", None),
                    "stage": getattr(stage, "stage", None), "transfer.augment.mlm_stage": augment and augment.mlm_stage,
                    "target.against": target and target.against}
            for field_name, ref in refs.items():
                if ref is not None and ref not in seen:
                    raise ValueError(f"stages[{i}].{field_name}: no earlier stage named '{ref}'")
            seen.add(stage.name)
            if target is not None and target.measure_as is not None:
                later = [s for s in self.stages[i + 1:] if s.name == target.measure_as]
                if not later or later[0].kind != "onnx":
                    raise ValueError(f"stages[{i}].target.measure_as: no later onnx stage named '{target.measure_as}'")
        return self

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def hash(self) -> str:
        return fingerprint(self.to_dict())


def fingerprint(obj: Any) -> str:
    """Short stable hash of JSON-able data (recipes, stage configs)."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- loading and overrides



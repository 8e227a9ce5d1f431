"""Recipe schema of the stages that train a task model: `teacher` (fine-tune), `distill` (a
student on soft targets and hidden / attention terms) and `baseline` (the same student, hard labels)."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator, model_validator

from distill.recipe.base import Strict
from distill.recipe.data import TransferConfig
from distill.recipe.lowrank import LoraSettings
from distill.recipe.training import LossConfig, StudentConfig, TrainConfig


class TeacherStage(Strict):
    """Fine-tune the recipe's model on the task (or just evaluate it: `skip_training`)."""

    kind: Literal["teacher"]  # picks this stage type
    name: str = "teacher"  # its folder <output_dir>/<recipe name>/<name>/ and what later stages call it; unique
    skip_training: bool = False  # the model is already tuned on this task
    # Start from this earlier stage's artifact (e.g. a general_distill student; a fresh task head
    # when it has none) instead of the recipe's model.
    input: str | None = None
    train: TrainConfig = TrainConfig()  # the training loop (epochs, batch, learning rate, evaluation); unused with skip_training
    lora: LoraSettings | None = None  # train LoRA adapters (merged at the end) instead of all weights

    @field_validator("lora")
    @classmethod
    def _lora_needs_training(cls, lora, info):
        if lora is not None and info.data.get("skip_training"):
            raise ValueError("needs training, but skip_training is true")
        return lora


class DistillStage(Strict):
    """Train a student from a teacher with soft targets and optional hidden/attention terms."""

    kind: Literal["distill"]  # picks this stage type
    name: str = "student"  # its folder <output_dir>/<recipe name>/<name>/ and what later stages call it; unique
    teacher: str | None = None  # name of the stage whose model teaches; default: the last teacher stage
    student: StudentConfig = StudentConfig()  # how the student is built (default: every other teacher layer copied)
    loss: LossConfig = LossConfig()  # the distillation objective: term weights and temperature
    train: TrainConfig = TrainConfig()  # the training loop (epochs, batch, learning rate, evaluation), run once per seed
    # One model per seed (None: the recipe's seed); the first seed's model is the artifact, and the
    # report gives the mean and spread over seeds.
    seeds: list[int] | None = None
    lora: LoraSettings | None = None  # train LoRA adapters on the student (merged at the end)
    # Run the teacher once over the training set and reuse its logits (logits-only losses).
    cache_teacher_logits: bool = False
    # Extra teacher-labelled inputs (augmented copies, unlabelled text): distill/training/transfer.py.
    transfer: TransferConfig | None = None

    @model_validator(mode="after")
    def _cache_needs_logits_only(self) -> "DistillStage":
        if self.cache_teacher_logits and (self.loss.alpha_cos or self.loss.alpha_hidden or self.loss.alpha_attention):
            raise ValueError(
                "cache_teacher_logits: the cache holds logits only; set loss.alpha_cos, alpha_hidden and alpha_attention to 0"
            )
        return self


class BaselineStage(Strict):
    """The same student as a distill stage, trained on hard labels only: what KD is measured against."""

    kind: Literal["baseline"]  # picks this stage type
    name: str = "baseline"  # its folder <output_dir>/<recipe name>/<name>/ and what later stages call it; unique
    teacher: str | None = None  # the student is still built from this stage's model (same init as KD)
    student: StudentConfig = StudentConfig()  # how the student is built; give the distill stage's, so that only the loss differs
    train: TrainConfig = TrainConfig()  # the training loop (epochs, batch, learning rate, evaluation), run once per seed
    # One model per seed (None: the recipe's seed); the first seed's model is the artifact, and the
    # report gives the mean and spread over seeds.
    seeds: list[int] | None = None
    lora: LoraSettings | None = None  # train LoRA adapters on the student (merged at the end)

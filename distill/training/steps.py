"""The per-batch steps `train_model` runs: the hard-label objective (teacher, no-KD baseline)
and distillation (teacher forward without gradients, student forward, the weighted loss)."""

from __future__ import annotations

from typing import Any

import torch

from distill.recipe import LossConfig
from distill.training.losses import DistillationLoss, LossWeights, hard_label_loss


def model_inputs(batch: dict) -> tuple[dict, Any]:
    """Split a collated batch into model inputs and labels."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return inputs, batch["labels"]


def hard_label_step(is_regression: bool):
    """The plain fine-tuning objective (teacher stage, no-KD baseline)."""

    def step(model, batch):
        inputs, labels = model_inputs(batch)
        return hard_label_loss(model(**inputs).logits, labels, is_regression), {}

    return step


def distillation_loss(loss: LossConfig, task, student, teacher) -> DistillationLoss:
    """The recipe's loss config bound to a student/teacher pair (sizes and layer counts)."""
    return DistillationLoss(
        LossWeights(**loss.model_dump(exclude={"layer_map"})),
        is_regression=task.is_regression,
        layer_map=loss.layer_map,
        student_hidden_size=student.config.hidden_size,
        teacher_hidden_size=teacher.config.hidden_size,
        n_student_layers=student.config.num_hidden_layers,
        n_teacher_layers=teacher.config.num_hidden_layers,
    )


def distillation_step(teacher, loss_fn: DistillationLoss):
    """Teacher forward without gradients, student forward, weighted distillation loss."""
    hidden, attentions = loss_fn.needs_hidden_states, loss_fn.needs_attentions

    def step(student, batch):
        inputs, labels = model_inputs(batch)
        with torch.no_grad():
            teacher_out = teacher(**inputs, output_hidden_states=hidden, output_attentions=attentions)
        student_out = student(**inputs, output_hidden_states=hidden, output_attentions=attentions)
        total, values = loss_fn(student_out, teacher_out, labels, inputs.get("attention_mask"))
        return total, {k: v for k, v in values.items() if k != "loss"}

    return step

"""What every stage does the same way: the hard-label objective, saving an evaluated artifact,
and the report record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill.losses import hard_label_loss
from distill.models import count_parameters, save_model, weights_size_bytes
from distill.recipe import dump_recipe
from distill.train import TrainOutcome


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


def save_artifact(ctx, model, folder: Path) -> None:
    """A `from_pretrained`/`pipeline`-loadable folder: safetensors weights, config, tokenizer."""
    if ctx.accelerator.is_main_process:
        save_model(model, ctx.tokenizer, folder)
    ctx.accelerator.wait_for_everyone()


def stage_record(ctx, stage, model, metrics: dict[str, float], outcome: TrainOutcome | None, folder: Path) -> dict[str, Any]:
    primary = ctx.task.primary_metric
    return {
        "stage": stage.name,
        "kind": stage.kind,
        "metric": primary,
        "metric_value": metrics[primary],
        "metrics": metrics,
        "params": count_parameters(model),
        "size_bytes": weights_size_bytes(folder),
        "train_seconds": outcome.train_seconds if outcome else 0.0,
        "samples_per_second": outcome.samples_per_second if outcome else None,
        "train_steps": outcome.steps if outcome else 0,
        "best_step": outcome.best_step if outcome else None,
        "checkpoint_selected_on": _selection_name(ctx) if outcome and stage.train.keep_best else None,
    }


def _selection_name(ctx) -> str:
    return "train holdout" if ctx.recipe.data.holdout_size else "validation"


def write_stage_files(ctx, folder: Path, record: dict[str, Any], history: list[dict] | None = None) -> None:
    if not ctx.accelerator.is_main_process:
        return
    (folder / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    dump_recipe(ctx.recipe, folder / "recipe.yaml")

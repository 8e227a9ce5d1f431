"""What a stage reads from the stages before it: a torch input artifact with its record and
tokenizer, and training examples in that artifact's vocabulary (calibration, QAT)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from distill import DistillError
from distill.lowrank.vocab import token_id_map
from distill.models.loading import load_tokenizer
from distill.quantize.artifacts import (
    require_torch_artifact,
)
from distill.stages.context import RunContext


def stage_field(ctx: RunContext, stage, name: str) -> str:
    return f"stages[{ctx.recipe.stages.index(stage)}].{name}"


def input_artifact(ctx: RunContext, stage) -> tuple[Path, dict, Any]:
    """The input stage's folder (a torch model), its report record and its tokenizer (the run's,
    or its own after trim_vocab)."""
    source = ctx.input_dir(stage)
    require_torch_artifact(source, stage_field(ctx, stage, "input"))
    metrics_file = source / "metrics.json"
    record = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    if stage.max_metric_drop is not None and record.get("metric") != ctx.task.primary_metric:
        raise DistillError(f"{stage_field(ctx, stage, 'max_metric_drop')}: the input {source} has no recorded "
                           f"{ctx.task.primary_metric} (metrics.json) to compare with")
    return source, record, load_tokenizer(str(source))


def calibration_examples(ctx: RunContext, count: int, tokenizer):
    """Tokenized training examples (never the dev set the artifact is scored on), in the ids of
    the model's own vocabulary."""
    train = ctx.data.train.shuffle(seed=ctx.recipe.seed, keep_in_memory=True)
    return in_vocabulary(ctx, train.select(range(min(count, len(train))), keep_in_memory=True).remove_columns(["labels"]), tokenizer)


def in_vocabulary(ctx: RunContext, dataset, tokenizer):
    """The run's tokenized rows in the ids of `tokenizer`'s vocabulary (a trimmed vocabulary keeps
    every piece of the training text, so training rows map exactly)."""
    id_map = token_id_map(ctx.tokenizer, tokenizer)
    if torch.equal(id_map, torch.arange(len(id_map))):
        return dataset
    return dataset.map(lambda row: {"input_ids": id_map[row["input_ids"]].tolist()}, keep_in_memory=True)

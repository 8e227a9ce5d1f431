"""What every stage runner is handed (`RunContext`: the recipe, task, data, accelerator, earlier
stages' outputs) and how a stage folder is written: in `<stage>.partial/`, swapped into place
when complete, resumed when an interrupted run had the same fingerprint."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from accelerate import Accelerator

from distill import DistillError
from distill.data.splits import make_collator, tokenize_splits
from distill.data.tasks import TaskSpec
from distill.recipe import Recipe
from distill.training.evaluation import evaluate_model


@dataclass
class TaskData:
    """Tokenized splits: `train` to learn from, `selection` to pick checkpoints, `validation` to report."""

    train: datasets.Dataset
    selection: datasets.Dataset
    validation: datasets.Dataset
    collator: Any
    raw_validation: datasets.Dataset | None = None  # the text, for models with a vocabulary of their own
    max_length: int = 512


class StageOutputs(dict):
    """Stage name -> artifact folder. A stage left out of `distill run --stages` and not finished
    has none, and a stage that needs it says so instead of failing on a missing folder."""

    def __missing__(self, name: str) -> Path:
        raise DistillError(f"stage '{name}' is not finished: run it first (add it to --stages, or run without --stages)")


@dataclass
class RunContext:
    recipe: Recipe
    run_dir: Path
    task: TaskSpec
    tokenizer: Any
    data: TaskData
    accelerator: Accelerator
    command: str
    outputs: StageOutputs = field(default_factory=StageOutputs)  # stage name -> artifact folder
    stage_hashes: dict[str, str] = field(default_factory=dict)

    def input_name(self, stage) -> str:
        """The stage whose artifact a stage starts from: the one named by its `input` field, else
        the stage just before it."""
        name = getattr(stage, "input", None)
        if name is None:
            index = self.recipe.stages.index(stage)
            if index == 0:
                raise DistillError(f"stages[0] ({stage.name}): a {stage.kind} stage needs an earlier stage to start from")
            name = self.recipe.stages[index - 1].name
        return name

    def input_dir(self, stage) -> Path:
        """The artifact a stage starts from (a multi-seed stage's artifact is its first seed's model)."""
        return self.outputs[self.input_name(stage)]

    def evaluate(self, model, dataset=None, *, tokenizer=None) -> dict[str, float]:
        """The task metric on the dev split (or `dataset`). A model whose `tokenizer` has another
        vocabulary (a trimmed one) is scored on the dev text tokenized its own way, as users run it."""
        batch = max(s.train.eval_batch_size for s in self.recipe.stages if hasattr(s, "train"))
        collator = self.data.collator
        if dataset is None and tokenizer is not None and tokenizer.get_vocab() != self.tokenizer.get_vocab():
            dataset = tokenize_splits(datasets.DatasetDict(validation=self.data.raw_validation), tokenizer,
                                      self.task, self.data.max_length)["validation"]
            collator = make_collator(self.task, tokenizer)
        dataset = self.data.validation if dataset is None else dataset
        return evaluate_model(model, dataset, self.task, collator, batch, self.accelerator)


def finished_record(out_dir: Path, stage_hash: str) -> dict[str, Any] | None:
    """The record of a stage finished earlier with the same fingerprint, else None."""
    metrics = out_dir / "metrics.json"
    if not metrics.is_file():
        return None
    record = json.loads(metrics.read_text())
    return record if record.get("stage_hash") == stage_hash else None


def commit_stage_dir(ctx: RunContext, partial: Path, final: Path) -> None:
    """Swap a fully written stage folder into place, so a folder with metrics.json is never half-written."""
    ctx.accelerator.wait_for_everyone()
    if not ctx.accelerator.is_main_process:
        return
    (partial / "stage_hash").unlink(missing_ok=True)
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)


def resumable_partial_dir(ctx: RunContext, final: Path, stage_hash: str) -> Path:
    """The stage's work folder, kept from an interrupted run of the same stage (same hash) so its
    checkpoints and finished seeds are reused; started afresh otherwise."""
    partial = final.with_name(final.name + ".partial")
    marker = partial / "stage_hash"
    if ctx.accelerator.is_main_process:
        if not (marker.is_file() and marker.read_text() == stage_hash):
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            marker.write_text(stage_hash)
    ctx.accelerator.wait_for_everyone()
    return partial


def fresh_partial_dir(ctx: RunContext, final: Path) -> Path:
    partial = final.with_name(final.name + ".partial")
    if ctx.accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    ctx.accelerator.wait_for_everyone()
    return partial

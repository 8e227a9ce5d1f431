"""What every stage does the same way: the hard-label objective, saving an evaluated artifact,
and the report record."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from distill import DistillError
from distill.models.loading import count_parameters, load_tokenizer, save_model, weights_size_bytes
from distill.recipe import dump_recipe
from distill.stages.context import commit_stage_dir
from distill.training.loop import TrainOutcome


def save_artifact(ctx, model, folder: Path, tokenizer=None) -> None:
    """A `from_pretrained`/`pipeline`-loadable folder: safetensors weights, config, tokenizer (the
    run's, unless the model has its own, e.g. after trim_vocab)."""
    if ctx.accelerator.is_main_process:
        save_model(model, tokenizer or ctx.tokenizer, folder)
    ctx.accelerator.wait_for_everyone()


def require_run_vocabulary(ctx, folder: Path, field: str) -> None:
    """Training and pruning read the run's token ids; a trimmed vocabulary would take other ids."""
    if load_tokenizer(str(folder)).get_vocab() != ctx.tokenizer.get_vocab():
        raise DistillError(f"{field}: {folder} has a trimmed vocabulary and this stage trains or prunes on the run's "
                           "token ids; put trim_vocab after the stages that train or prune (factorize, onnx, bnb, "
                           "cast and publish accept it)")


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
        # The kept checkpoint's score where it was selected (a train holdout when there is one):
        # what settings may be compared on without reading the reported dev split.
        "selection_metric_value": (outcome.best_selection_metrics or {}).get(primary) if outcome else None,
    }


def _selection_name(ctx) -> str:
    return "train holdout" if ctx.recipe.data.holdout_size else "validation"


def write_stage_files(ctx, folder: Path, record: dict[str, Any], history: list[dict] | None = None) -> None:
    if not ctx.accelerator.is_main_process:
        return
    (folder / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    dump_recipe(ctx.recipe, folder / "recipe.yaml")


def finish_stage(ctx, partial: Path, out_dir: Path, record: dict[str, Any], *, stage_hash: str, started: float,
                 note: str | None = None) -> dict[str, Any]:
    """The end every stage shares: stamp the record, write metrics.json and the recipe, move the
    folder into place atomically, print one line."""
    record.update(stage_hash=stage_hash, wall_seconds=time.perf_counter() - started, seed=ctx.recipe.seed)
    write_stage_files(ctx, partial, record)
    commit_stage_dir(ctx, partial, out_dir)
    primary = ctx.task.primary_metric
    if primary in record.get("metrics", {}):
        ctx.accelerator.print(f"[{record['stage']}] {primary} = {record['metric_value']:.4f}" + (f" ({note})" if note else ""))
    return record



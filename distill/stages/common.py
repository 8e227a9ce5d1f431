"""What every stage does the same way: the hard-label objective, saving an evaluated artifact,
and the report record."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

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




def scored_in_training(ctx, outcome: TrainOutcome | None, *, computes_as_saved: bool) -> dict[str, float] | None:
    """The dev metrics of a stage's final weights when training already scored exactly them, so the
    stage does not score them twice: the selection split is the dev split (no holdout), the last
    evaluation scored the returned weights in full precision (TrainOutcome.final_metrics), and the
    saved model computes as the trained one did (`computes_as_saved`: same attention kernel, no
    LoRA merge). None otherwise: the caller scores the artifact."""
    if outcome is None or not computes_as_saved or ctx.data.selection is not ctx.data.validation:
        return None
    return outcome.final_metrics


RELOAD_TOLERANCE = 1e-5  # logits of a reloaded fp32 artifact against the in-memory model's
RELOAD_CHECK_ROWS = 64  # dev examples: enough to exercise every layer, a fraction of a full scoring


def check_reload(ctx, model, reloaded, folder: Path) -> None:
    """The saved folder reloads to the model that was trained: its logits on the first dev
    examples agree with the in-memory model's (a cheap check instead of scoring the split again)."""
    rows = ctx.data.validation.select(range(min(RELOAD_CHECK_ROWS, len(ctx.data.validation))), keep_in_memory=True)
    batch = ctx.data.collator([{k: v for k, v in row.items() if k != "labels"} for row in rows])
    batch = {k: v.to(ctx.accelerator.device) for k, v in batch.items()}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        difference = (model(**batch).logits.float() - reloaded(**batch).logits.float()).abs().max().item()
    model.train(was_training)
    if difference > RELOAD_TOLERANCE:
        raise DistillError(f"{folder}: the saved model does not reload to the trained one (logits differ by "
                           f"{difference:.2g} > {RELOAD_TOLERANCE}); please report this")

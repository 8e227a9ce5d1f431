"""Stages that train one model per seed (`seeds: [1, 2, 3]`): which seeds are left after an
interruption, each seed's record, and the stage's record over all of them (mean and spread)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from distill.stages.context import RunContext

SEED_RECORD = "seed_record.json"  # written when one seed's student is trained, evaluated and saved


def pending_seeds(partial: Path, seeds: list[int], runs: list[dict]):
    """(seed, folder) of every seed not finished before an interruption; finished seeds' records
    are appended to `runs` instead. The first seed's folder is the stage's artifact."""
    for i, seed in enumerate(seeds):
        folder = partial if i == 0 else partial / "seeds" / f"seed-{seed}"
        if (folder / SEED_RECORD).is_file():
            runs.append(json.loads((folder / SEED_RECORD).read_text()))
        else:
            yield seed, folder


def record_seed(ctx: RunContext, folder: Path, run: dict, runs: list[dict]) -> None:
    """Mark one seed finished (its record in its folder) and keep its record."""
    if ctx.accelerator.is_main_process:
        (folder / SEED_RECORD).write_text(json.dumps(run, indent=2))
    runs.append(run)


def aggregate_seeds(runs: list[dict]) -> dict:
    """One record per stage: the first seed's artifact, the mean metric over seeds and its spread."""
    record = dict(runs[0])
    values = [r["metric_value"] for r in runs]
    record["metric_value"] = statistics.fmean(values)
    record["train_seconds"] = statistics.fmean(r["train_seconds"] for r in runs)
    record["samples_per_second"] = statistics.fmean(r["samples_per_second"] for r in runs)
    if len(runs) > 1:
        record["metric_std"] = statistics.stdev(values)
        record["metric_min"], record["metric_max"] = min(values), max(values)
        record["seeds"] = [{"seed": r["seed"], "metric_value": r["metric_value"], "metrics": r["metrics"], "train_seconds": r["train_seconds"],
                            "selection_metric_value": r.get("selection_metric_value")} for r in runs]
        record.pop("seed")
        record["artifact_seed"] = runs[0]["seed"]
    return record

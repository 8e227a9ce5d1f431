"""Stage `publish`: push an evaluated artifact of this run (default: the last earlier stage with a
model) to the Hugging Face Hub with its model card, or, with `dry_run`, only write the folder
that would be uploaded to <run>/<stage name>/upload/."""

from __future__ import annotations

import json
import time
from pathlib import Path

from distill.publish.push import push_run
from distill.recipe import PublishStage
from distill.stages.common import write_stage_files
from distill.stages.context import RunContext, commit_stage_dir, fresh_partial_dir

# Copied from the published stage's record so the run's report table shows what went out.
SHOWN_KEYS = ("metric", "metric_value", "metrics", "params", "size_bytes")


def run_publish_stage(ctx: RunContext, stage: PublishStage, out_dir: Path, stage_hash: str) -> dict:
    started = time.perf_counter()
    partial = fresh_partial_dir(ctx, out_dir)
    record: dict = {}
    if ctx.accelerator.is_main_process:
        result = push_run(
            ctx.run_dir,
            stage.repo_id,
            stage=stage.stage,
            private=stage.private,
            revision=stage.revision,
            dry_run_dir=partial / "upload" if stage.dry_run else None,
            license=stage.license,
            include_logs=stage.include_logs,
            before=stage.name,
        )
        published = _published_record(ctx, result.stage)
        record = {
            "stage": stage.name,
            "kind": stage.kind,
            **{k: published[k] for k in SHOWN_KEYS if k in published},
            "train_seconds": 0.0,
            "samples_per_second": None,
            "published_stage": result.stage,
            "repo_id": stage.repo_id,
            "revision": stage.revision,
            "private": stage.private,
            "dry_run": stage.dry_run,
            "upload_folder": str(out_dir / "upload") if stage.dry_run else None,
            "commit_url": result.commit_url,
            "files": result.files,
            "stage_hash": stage_hash,
            "wall_seconds": time.perf_counter() - started,
        }
        write_stage_files(ctx, partial, record)
        where = f"dry run, upload folder {out_dir / 'upload'}" if stage.dry_run else result.commit_url
        ctx.accelerator.print(f"[{stage.name}] published {result.stage} as {stage.repo_id} ({where})")
    commit_stage_dir(ctx, partial, out_dir)
    return record


def _published_record(ctx: RunContext, name: str) -> dict:
    return json.loads((ctx.run_dir / name / "metrics.json").read_text(encoding="utf-8"))

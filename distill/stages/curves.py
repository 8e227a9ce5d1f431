"""What the compression-curve scripts (scripts/bench_pruning.py, scripts/bench_lowrank.py) share:
run a list of single-input stages on one saved student, reuse points already computed, time every
point's model (distill.reporting.bench's method), and write the list of records after each point.

A point is a stage of a generated recipe whose `student` (and optional `teacher`) are existing
folders, so each point is exactly what that stage does inside `distill run`."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from pydantic import ValidationError

from distill import DistillError
from distill.models.loading import load_tokenizer
from distill.recipe import BenchmarkConfig, validate_recipe
from distill.reporting.bench import benchmark_folders, dev_texts
from distill.reporting.report import measured_on
from distill.stages.context import RunContext, finished_record
from distill.stages.pipeline import prepare_data, stage_fingerprint, task_of
from distill.training.loop import resolve_mixed_precision


def add_common_args(parser: argparse.ArgumentParser, work_dir: str) -> None:
    parser.add_argument("--model", required=True, help="trained student folder (a stage artifact)")
    parser.add_argument("--task", required=True, help="GLUE task name, e.g. sst2")
    parser.add_argument("--out", required=True, help="JSON file for the list of records")
    parser.add_argument("--teacher", help="folder of the model recovery distils from (default: the student itself)")
    parser.add_argument("--data-dir", help="GLUE folder (default: $DISTILL_DATA_DIR)")
    parser.add_argument("--work-dir", default=work_dir, help="where each point's model is written")
    parser.add_argument("--no-plain", action="store_true", help="skip the points without recovery")
    parser.add_argument("--no-recovery", action="store_true", help="skip the points with recovery distillation")
    parser.add_argument("--recovery-epochs", type=float, default=1.0)
    parser.add_argument("--recovery-steps", type=int, help="optimizer steps per recovery (overrides epochs)")
    parser.add_argument("--recovery-eval-every", type=int,
                        help="score recovery checkpoints on the holdout every this many steps (default: at its end)")
    # The chain's recovery adds hidden-state terms to the soft targets (recipes/sst2_chain.yaml).
    parser.add_argument("--recovery-alpha-hidden", type=float, default=0.0, help="weight of recovery's hidden-state MSE (default 0)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--train-limit", type=int)
    parser.add_argument("--eval-limit", type=int)
    parser.add_argument("--holdout-size", type=int, help="train examples that pick recovery checkpoints (default: validation)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "bf16", "fp16"])
    parser.add_argument("--latency-batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seq-length", type=int, default=64, help="dev sentences padded/cut to this many tokens for timing")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, help="torch intra-op threads while timing (default: torch's)")


def variants(args: argparse.Namespace) -> list[bool]:
    """Whether each point is run without and/or with recovery."""
    return ([False] if not args.no_plain else []) + ([True] if not args.no_recovery else [])


def recovery_block(args: argparse.Namespace) -> dict:
    train = {"epochs": args.recovery_epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate}
    # `is not None`: a 0 goes to the recipe schema, which refuses it before any point runs.
    if args.recovery_steps is not None:
        train["max_steps"] = args.recovery_steps
    if args.recovery_eval_every is not None:
        train["eval_every"] = args.recovery_eval_every
    return {"train": train, "distill": True, "loss": {"alpha_hidden": args.recovery_alpha_hidden}}


def curve_recipe(name: str, args: argparse.Namespace, point_stages: list[dict]) -> dict:
    """A recipe whose first stages stand for the given folders, followed by the points."""
    stages: list[dict] = [{"kind": "teacher", "name": "student", "skip_training": True}]
    if args.teacher:
        stages.append({"kind": "teacher", "name": "teacher", "skip_training": True})
        for stage in point_stages:
            if "recovery" in stage:
                stage["teacher"] = "teacher"
    data = {"max_length": args.max_length, "train_limit": args.train_limit, "eval_limit": args.eval_limit, "dir": args.data_dir,
            "holdout_size": args.holdout_size}
    return {
        "name": name,
        "task": args.task,
        "seed": args.seed,
        "mixed_precision": args.mixed_precision,
        "data": {k: v for k, v in data.items() if v is not None},
        "model": {"model": args.model},
        "stages": stages + point_stages,
    }


def run_curve(script: str, args: argparse.Namespace, raw_recipe: dict, kind: str, run_stage: Callable,
              describe: Callable[[object], dict], argv: list[str] | None) -> int:
    """Run every `kind` stage of the recipe (reusing finished points), add `describe(stage)` and
    provenance to each record, time the points' models, and write the list to --out."""
    command = " ".join(["python", script, *(sys.argv[1:] if argv is None else argv)])
    try:
        for flag, folder in (("--model", args.model), ("--teacher", args.teacher)):
            if not folder:
                continue
            if not (Path(folder) / "config.json").is_file():
                raise DistillError(f"{flag} {folder}: not a saved model folder (no config.json)")
            architectures = json.loads((Path(folder) / "config.json").read_text()).get("architectures") or []
            if not any(a.endswith(("ForSequenceClassification", "ForTokenClassification")) for a in architectures):
                raise DistillError(f"{flag} {folder}: not a sequence or token classifier ({architectures}); give a teacher or distill stage's folder")
        timing = timing_config(args)  # checked before hours of points, used after them
        recipe = validate_recipe(raw_recipe, source=Path(script).stem)
        task = task_of(recipe)
        accelerator = Accelerator(mixed_precision=resolve_mixed_precision(recipe.mixed_precision), cpu=not torch.cuda.is_available())
        tokenizer = load_tokenizer(args.model)
        data = prepare_data(recipe, task, tokenizer, args.data_dir)
        texts = dev_texts(task, args.data_dir, max(args.latency_batch_sizes))
    except DistillError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    work_dir = Path(args.work_dir)
    ctx = RunContext(recipe, work_dir, task, tokenizer, data, accelerator, command)
    ctx.outputs["student"] = Path(args.model)
    if args.teacher:
        ctx.outputs["teacher"] = Path(args.teacher)

    records, folders, out = [], {}, Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    provenance = {"model": args.model, "task": task.name, "command": command, **measured_on()}
    for index, stage in enumerate(recipe.stages):
        if stage.kind != kind:
            continue
        stage_hash = stage_fingerprint(recipe, index, {"model": str(Path(args.model).resolve()), "teacher": args.teacher})
        out_dir = work_dir / stage.name
        record = finished_record(out_dir, stage_hash) or run_stage(ctx, stage, out_dir, stage_hash)
        # `recovery` says whether the point recovered; the stage's holdout checks (kept or not) stay beside it.
        record.update(describe(stage), **provenance, recovery=stage.recovery is not None, recovery_checks=record.get("recovery"),
                      date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        records.append(record)
        folders[stage.name] = out_dir
        out.write_text(json.dumps(records, indent=2) + "\n")  # after every point: a long run keeps what it did
        print(f"{stage.name}: {task.primary_metric} {record['metric_value']:.4f}, params {record['params']:,}", flush=True)

    latencies, settings = benchmark_folders(folders, texts, timing)
    for record in records:
        record.update(latencies[record["stage"]], latency_settings=settings)
    out.write_text(json.dumps(records, indent=2) + "\n")
    for record in records:
        timing = ", ".join(f"bs{b} {record[f'latency_ms_bs{b}']:.1f} ms" for b in args.latency_batch_sizes)
        print(f"{record['stage']}: {timing}")
    return 0


def timing_config(args: argparse.Namespace) -> BenchmarkConfig:
    """distill.reporting.bench's timing settings from the flags (as `distill run` times every artifact; no
    peak-memory processes here); a bad value names its flag."""
    try:
        return BenchmarkConfig(batch_sizes=args.latency_batch_sizes, seq_length=args.seq_length, warmup=args.warmup,
                               repeats=args.repeats, threads=args.threads, memory=False)
    except ValidationError as err:
        first = err.errors()[0]
        field = str(first["loc"][0])
        flag = "--latency-batch-sizes" if field == "batch_sizes" else "--" + field.replace("_", "-")
        raise DistillError(f"{flag}: {first['msg']}") from None

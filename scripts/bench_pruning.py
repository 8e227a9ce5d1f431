"""Accuracy vs share of attention heads (and FFN neurons) pruned, with and without recovery
distillation, for a trained student. Each point is one `prune` stage run on the student; the
JSON file is the list of those stages' report records (plus `curve`, `share`, `recovery`).

    python scripts/bench_pruning.py --model runs/sst2/student --teacher runs/sst2/teacher \\
        --task sst2 --out benchmarks/sst2_pruning.json --recovery-epochs 1

Quick check (seconds to minutes): add --train-limit 256 --eval-limit 128 --importance-batches 4
--recovery-steps 10. Points already computed under --work-dir with the same settings are reused.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

from distill.errors import DistillError
from distill.models import load_tokenizer
from distill.pipeline import RunContext, prepare_data, stage_fingerprint, task_of
from distill.recipe import validate_recipe
from distill.report import machine_info
from distill.stages.prune import run_prune_stage
from distill.train import resolve_mixed_precision


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="trained student folder (a stage artifact)")
    parser.add_argument("--task", required=True, help="GLUE task name, e.g. sst2")
    parser.add_argument("--out", required=True, help="JSON file for the list of records")
    parser.add_argument("--teacher", help="folder of the model recovery distils from (default: the unpruned student)")
    parser.add_argument("--data-dir", help="GLUE folder (default: $DISTILL_DATA_DIR)")
    parser.add_argument("--work-dir", default="runs/bench_pruning", help="where each point's pruned model is written")
    parser.add_argument("--head-shares", type=float, nargs="*", default=[0.0, 0.25, 0.5, 0.75])
    parser.add_argument("--ffn-shares", type=float, nargs="*", default=[0.0, 0.25, 0.5, 0.75])
    parser.add_argument("--no-plain", action="store_true", help="skip the points without recovery")
    parser.add_argument("--no-recovery", action="store_true", help="skip the points with recovery distillation")
    parser.add_argument("--head-scope", choices=["global", "layer"], default="global")
    parser.add_argument("--min-heads-per-layer", type=int, default=1)
    parser.add_argument("--ffn-scope", choices=["layer", "global"], default="layer")
    parser.add_argument("--ffn-method", choices=["taylor", "magnitude"], default="taylor")
    parser.add_argument("--iterations", type=int, default=1, help="pruning steps (recovery after each)")
    parser.add_argument("--importance-batches", type=int, default=64)
    parser.add_argument("--importance-batch-size", type=int, default=32)
    parser.add_argument("--recovery-epochs", type=float, default=1.0)
    parser.add_argument("--recovery-steps", type=int, help="optimizer steps per recovery (overrides epochs)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--train-limit", type=int)
    parser.add_argument("--eval-limit", type=int)
    parser.add_argument("--holdout-size", type=int, help="train examples that pick recovery checkpoints (default: validation)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "bf16", "fp16"])
    return parser.parse_args(argv)


def bench_recipe(args: argparse.Namespace) -> dict:
    """A recipe whose first stages stand for the given folders and whose prune stages are the points."""
    stages: list[dict] = [{"kind": "teacher", "name": "student", "skip_training": True}]
    if args.teacher:
        stages.append({"kind": "teacher", "name": "teacher", "skip_training": True})
    recovery_train = {"epochs": args.recovery_epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate}
    if args.recovery_steps:
        recovery_train["max_steps"] = args.recovery_steps
    variants = ([False] if not args.no_plain else []) + ([True] if not args.no_recovery else [])
    for curve, shares in (("heads", args.head_shares), ("ffn", args.ffn_shares)):
        for share in shares:
            for recovered in variants:
                what = (
                    {"heads": {"share": share, "scope": args.head_scope, "min_per_layer": args.min_heads_per_layer}}
                    if curve == "heads"
                    else {"ffn": {"share": share, "scope": args.ffn_scope, "method": args.ffn_method}}
                )
                stage = {
                    "kind": "prune",
                    "name": f"{curve}-{round(share * 100)}{'-recovered' if recovered else ''}",
                    "input": "student",
                    "iterations": args.iterations,
                    "importance": {"batches": args.importance_batches, "batch_size": args.importance_batch_size},
                    **what,
                }
                if recovered:
                    stage["recovery"] = {"train": recovery_train, "distill": True}
                    if args.teacher:
                        stage["teacher"] = "teacher"
                stages.append(stage)
    data = {"max_length": args.max_length, "train_limit": args.train_limit, "eval_limit": args.eval_limit, "dir": args.data_dir,
            "holdout_size": args.holdout_size}
    return {
        "name": "bench-pruning",
        "task": args.task,
        "seed": args.seed,
        "mixed_precision": args.mixed_precision,
        "data": {k: v for k, v in data.items() if v is not None},
        "model": {"model": args.model},
        "stages": stages,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join(["python", "scripts/bench_pruning.py", *(sys.argv[1:] if argv is None else argv)])
    try:
        for flag, folder in (("--model", args.model), ("--teacher", args.teacher)):
            if folder and not (Path(folder) / "config.json").is_file():
                raise DistillError(f"{flag} {folder}: not a saved model folder (no config.json)")
        recipe = validate_recipe(bench_recipe(args), source="bench_pruning")
        task = task_of(recipe)
        accelerator = Accelerator(mixed_precision=resolve_mixed_precision(recipe.mixed_precision), cpu=not torch.cuda.is_available())
        tokenizer = load_tokenizer(args.model)
        data = prepare_data(recipe, task, tokenizer, args.data_dir)
    except DistillError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    work_dir = Path(args.work_dir)
    ctx = RunContext(recipe, work_dir, task, tokenizer, data, accelerator, command)
    ctx.outputs["student"] = Path(args.model)
    if args.teacher:
        ctx.outputs["teacher"] = Path(args.teacher)

    records, out = [], Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for index, stage in enumerate(recipe.stages):
        if stage.kind != "prune":
            continue
        stage_hash = stage_fingerprint(recipe, index, {"model": str(Path(args.model).resolve()), "teacher": args.teacher})
        out_dir = work_dir / stage.name
        record = _finished(out_dir, stage_hash) or run_prune_stage(ctx, stage, out_dir, stage_hash)
        record.update(
            curve="heads" if stage.heads is not None else "ffn",
            share=stage.heads.share if stage.heads is not None else stage.ffn.share,
            recovery=stage.recovery is not None,
            model=args.model,
            task=task.name,
            command=command,
            machine=machine_info(),
            date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        )
        records.append(record)
        out.write_text(json.dumps(records, indent=2) + "\n")  # after every point: a long run keeps what it did
        print(f"{stage.name}: {task.primary_metric} {record['metric_value']:.4f}, params {record['params']:,}", flush=True)
    return 0


def _finished(out_dir: Path, stage_hash: str) -> dict | None:
    metrics = out_dir / "metrics.json"
    if metrics.is_file():
        record = json.loads(metrics.read_text())
        if record.get("stage_hash") == stage_hash:
            return record
    return None


if __name__ == "__main__":
    sys.exit(main())

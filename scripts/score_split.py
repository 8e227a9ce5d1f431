"""A finished run's report, with every stage artifact (and every seed's) also scored on another
labelled split, e.g. WNUT-17's test set, written as one benchmark JSON.

    python scripts/score_split.py runs/wnut17_chain --split test --data-dir ../shared/data \
        --out benchmarks/wnut17_chain.json

The run's own report (dev metrics, sizes, latencies of `benchmark:`) is kept as it is; each stage
gains `<split>_metrics` (and a multi-seed stage `<split>_metric_mean` / `_std` over its seeds).
Artifacts load as `distill eval` loads them: torch folders through distill's loaders, ONNX ones
through onnxruntime. The run's settings are never chosen on this split: it is only read here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
from pathlib import Path

import yaml

from distill import DistillError
from distill.data.tasks import get_task


def score_folder(folder: Path, task, split, max_length: int, batch_size: int) -> dict[str, float]:
    from distill.reporting.bench import evaluate_folder

    return evaluate_folder(folder, task, split, batch_size, max_length)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, help="score a random subset of this many examples (quick checks only)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    command = " ".join(["python", "scripts/score_split.py", *(sys.argv[1:] if argv is None else argv)])
    from distill.cli import _quiet_libraries
    from distill.reporting.report import measured_on

    _quiet_libraries()  # the loaders' progress bars and notes, as under `distill`
    try:
        from distill.data.splits import load_task_splits, resolve_data_dir, take_subset

        report_path = args.run_dir / "report.json"
        if not report_path.is_file():
            raise DistillError(f"{args.run_dir}: no report.json (not a finished run folder)")
        report = json.loads(report_path.read_text())
        recipe = yaml.safe_load((args.run_dir / "recipe.yaml").read_text())
        task = get_task(report["task"])
        split = load_task_splits(task, resolve_data_dir(args.data_dir), splits=(args.split,))[args.split]
        split = take_subset(split, args.limit, seed=0)
        max_length = recipe["data"]["max_length"]
        for stage in report["stages"]:
            folder = args.run_dir / stage["stage"]
            if not (folder / "config.json").is_file():
                continue  # publish and other stages without a model of their own
            stage[f"{args.split}_metrics"] = score_folder(folder, task, split, max_length, args.batch_size)
            if stage.get("seeds"):
                values = []
                for seed in stage["seeds"]:
                    seed_folder = folder if seed["seed"] == stage["artifact_seed"] else folder / "seeds" / f"seed-{seed['seed']}"
                    seed[f"{args.split}_metrics"] = score_folder(seed_folder, task, split, max_length, args.batch_size)
                    values.append(seed[f"{args.split}_metrics"][task.primary_metric])
                stage[f"{args.split}_metric_mean"] = statistics.fmean(values)
                stage[f"{args.split}_metric_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            print(f"{stage['stage']}: {args.split} {task.primary_metric} {stage[f'{args.split}_metrics'][task.primary_metric]:.4f}",
                  flush=True)
    except DistillError as err:
        print(f"score_split: error: {err}", file=sys.stderr)
        return 2
    report[f"{args.split}_scoring"] = {
        "command": command, **measured_on(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

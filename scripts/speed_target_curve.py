"""Accuracy against the speed-up asked for (issue 30): one `distill run` of a recipe with a
speed-target prune stage per target, the same speed-up at every batch size of the target. The
stages before the prune stage are trained once and reused (same run folder, same fingerprints).
Each point records what the stage measured (shipped form against the reference, same process),
the shape it kept, and the dev metric of the pruned model and of the shipped artifact.

    python scripts/speed_target_curve.py recipes/speed_target.yaml --speedups 4 6 8 10 \\
        --data-dir ../shared/data --out benchmarks/speed_target_curve.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--speedups", type=float, nargs="+", required=True)
    parser.add_argument("--stage", default=None, help="the prune stage with the target (default: the first one)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output-dir", default="runs/speed_target_curve")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def target_stage(recipe: dict, name: str | None, path: Path) -> tuple[dict, dict]:
    """(the prune stage with a target, the onnx stage it is measured as)."""
    stages = recipe.get("stages", [])
    targeted = [s for s in stages if s.get("kind") == "prune" and s.get("target") and (name is None or s.get("name") == name)]
    if not targeted:
        sys.exit(f"speed_target_curve: {path}: no prune stage with a target{f' named {name}' if name else ''}")
    stage = targeted[0]
    shipped = next((s for s in stages if s.get("name") == stage["target"].get("measure_as")), None)
    return stage, shipped


def run_point(args: argparse.Namespace, stage: dict, shipped: dict | None, speedup: float, batches: list[int]) -> dict:
    names = [stage["name"]] + ([shipped["name"]] if shipped else [])
    budget = "{" + ", ".join(f"{b}: {speedup:g}" for b in batches) + "}"
    command = [sys.executable, "-m", "distill", "run", str(args.recipe), "--output-dir", args.output_dir,
               f"stages.{stage['name']}.target.speedup={budget}", "benchmark.enabled=false"]
    command += ["--data-dir", args.data_dir] if args.data_dir else []
    # Only the stages up to the shipped artifact: the others (a hand-picked comparison) are not points.
    recipe = yaml.safe_load(args.recipe.read_text())
    last = max(i for i, s in enumerate(recipe["stages"]) if s.get("name") in names)
    command += ["--stages", ",".join(s.get("name", s["kind"]) for s in recipe["stages"][: last + 1])]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"speedup_target": speedup, "error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    report = json.loads((Path(args.output_dir) / recipe["name"] / "report.json").read_text())
    records = {r["stage"]: r for r in report["stages"]}
    pruned = records[stage["name"]]
    entry = pruned["speed_target"]
    chosen = next(c for c in entry["candidates"] if c["chosen"])
    reference = records[entry["against"]]
    point = {
        "speedup_target": speedup, "met": entry["met"], "speedup_measured": entry["speedup"], "measured_ms": entry["measured_ms"],
        "reference_ms": entry["reference_ms"], "shape": {k: chosen[k] for k in ("layers_kept", "heads_per_layer", "neurons_per_layer")},
        "candidates": len(entry["candidates"]), "latency_models": entry["latency_models"],
        "metric": report["metric"], "reference_metric": reference["metric_value"],
        "pruned_metric": pruned["metric_value"], "params": pruned["params"],
    }
    if shipped:
        point["shipped_metric"] = records[shipped["name"]]["metric_value"]
        point["shipped_share_of_reference"] = point["shipped_metric"] / reference["metric_value"]
    return point


def main(argv: list[str] | None = None) -> None:
    from distill.reporting.report import measured_on

    args = parse_args(argv)
    recipe = yaml.safe_load(args.recipe.read_text())
    stage, shipped = target_stage(recipe, args.stage, args.recipe)
    target = stage["target"]
    batches = sorted(int(b) for b in (target.get("speedup") or target.get("latency_ms")))
    points = []
    for speedup in args.speedups:
        point = run_point(args, stage, shipped, speedup, batches)
        print(json.dumps(point), flush=True)
        points.append(point)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": " ".join(["python", "scripts/speed_target_curve.py", *(argv or sys.argv[1:])]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **measured_on(), "recipe": str(args.recipe), "stage": stage["name"], "batch_sizes": batches, "points": points,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()

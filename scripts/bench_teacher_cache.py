"""Run recipes/bench_teacher_cache.yaml and write benchmarks/teacher_cache.json.

    python scripts/bench_teacher_cache.py [--data-dir ../shared/data] [--out benchmarks/teacher_cache.json]

Times come from the one run's report (training loop only, evaluation excluded); the cached
figure includes building the cache, so it is what a user pays on a first run.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from distill.cli import main as distill_main
from distill.recipe import load_recipe

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "bench_teacher_cache.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--output-dir", default="runs")
    parser.add_argument("--out", default="benchmarks/teacher_cache.json")
    args = parser.parse_args()
    run_dir = Path(args.output_dir) / "bench_teacher_cache"
    shutil.rmtree(run_dir, ignore_errors=True)  # timings must come from this run, not reused stages
    shutil.rmtree(Path(args.output_dir) / ".teacher_cache", ignore_errors=True)
    cli = ["run", str(RECIPE), f"output_dir={args.output_dir}"] + (["--data-dir", args.data_dir] if args.data_dir else [])
    if distill_main(cli) != 0:
        return 1
    report = json.loads((run_dir / "report.json").read_text())
    recipe = load_recipe(RECIPE)
    assert len({s.train.epochs for s in recipe.stages[1:]}) == 1, "the three variants must train alike"
    stages = {s["stage"]: s for s in report["stages"]}
    plain, live, cached = stages["plain_finetune"], stages["distill_live"], stages["distill_cached"]
    cached_total = cached["train_seconds"] + cached["teacher_cache_seconds"]
    result = {
        "plain_finetune_seconds": plain["train_seconds"],
        "distill_seconds": live["train_seconds"],
        "distill_cached_seconds": cached_total,
        "distill_cached_train_loop_seconds": cached["train_seconds"],
        "cache_build_seconds": cached["teacher_cache_seconds"],
        "distill_vs_plain": live["train_seconds"] / plain["train_seconds"],
        "distill_cached_vs_plain": cached_total / plain["train_seconds"],
        # The cache is keyed by teacher + data + tokenizer, so seeds and reruns after the first pay only the loop.
        "distill_cached_train_loop_vs_plain": cached["train_seconds"] / plain["train_seconds"],
        "accuracy": {name: s["metric_value"] for name, s in stages.items()},
        "epochs": recipe.stages[1].train.epochs,
        "examples": recipe.data.train_limit,
        "command": "python " + " ".join(sys.argv),
        "machine": report["machine"],
        "date": report["date"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

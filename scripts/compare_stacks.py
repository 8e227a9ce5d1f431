"""One recipe's run on each supported stack, side by side: per-stage dev metric and size from each
run's own report.json, and the latency of every listed artifact of both runs timed in ONE process
(models interleaved round by round), so the ratios between stacks are taken in the same run.

    python scripts/compare_stacks.py --run current=runs/stacks/current/sst2_chain \
        --run legacy=runs/stacks/legacy/sst2_chain --python legacy=.venv-legacy/bin/python \
        --out benchmarks/sst2_chain_stacks.json

Each run is `distill run recipes/sst2_chain.yaml` made in that stack's venv (`make install
STACK=...`). The artifacts are all loaded here, in this (the current stack's) environment:
torch folders through distill's loaders, ONNX folders through onnxruntime, whichever exporter
wrote them. `--python STACK=PATH` names the interpreter whose package versions a run used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from distill import machine
from distill.data.tasks import get_task
from distill.recipe import BenchmarkConfig
from distill.reporting.bench import benchmark_folders, dev_texts
from distill.reporting.report import machine_info

DEFAULT_STAGES = ("teacher", "student", "pruned", "trimmed", "int8")


def versions_of(python: str | None) -> dict[str, str]:
    """The key packages' versions in this environment or another interpreter's. distill/machine.py
    runs as a plain script (standard library only), so that venv needs no distill of this version."""
    if python is None:
        return machine.package_versions()
    out = subprocess.run([python, machine.__file__], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def pairs(parser: argparse.ArgumentParser, items: list[str], flag: str) -> dict[str, str]:
    result = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"{flag} {item}: expected NAME=VALUE")
        result[name] = value
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, metavar="STACK=RUN_DIR")
    parser.add_argument("--python", action="append", default=[], metavar="STACK=PYTHON")
    parser.add_argument("--stages", nargs="+", default=list(DEFAULT_STAGES))
    parser.add_argument("--data-dir")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    runs = {name: Path(d) for name, d in pairs(parser, args.run, "--run").items()}
    pythons = pairs(parser, args.python, "--python")
    if missing := [str(run / "report.json") for run in runs.values() if not (run / "report.json").is_file()]:
        parser.error(f"--run: no report.json in {', '.join(missing)} (a finished `distill run` folder)")
    reports = {name: json.loads((run / "report.json").read_text()) for name, run in runs.items()}
    tasks = {r["task"] for r in reports.values()}
    if len(tasks) != 1:
        parser.error(f"--run: the runs are of different tasks: {sorted(tasks)}")
    task = get_task(tasks.pop())

    folders = {f"{name}/{stage}": run / stage for name, run in runs.items() for stage in args.stages if (run / stage).is_dir()}
    cfg = BenchmarkConfig(enabled=True, batch_sizes=[1, 32], seq_length=64, warmup=5, repeats=args.repeats,
                          threads=args.threads, memory=False)
    latency, settings = benchmark_folders(folders, dev_texts(task, args.data_dir, 32), cfg)

    stacks = {}
    for name, report in reports.items():
        records = {r["stage"]: r for r in report["stages"]}
        stacks[name] = {
            "run": str(runs[name]),
            "run_command": report["command"],
            "run_date": report["date"],
            "run_machine": report["machine"],
            "packages": versions_of(pythons.get(name)),
            "stages": {stage: {"metric_value": records[stage]["metric_value"], "size_bytes": records[stage].get("size_bytes"),
                               "params": records[stage].get("params"), **latency.get(f"{name}/{stage}", {})}
                       for stage in args.stages if stage in records},
        }
    first, *others = list(runs)
    ratios = {}
    for other in others:
        for stage in args.stages:
            a, b = stacks[first]["stages"].get(stage), stacks[other]["stages"].get(stage)
            if a and b and "latency_ms_bs1" in a and "latency_ms_bs1" in b:
                ratios[f"{stage}: {first} speed / {other} speed"] = {
                    f"bs{bs}": b[f"latency_ms_bs{bs}"] / a[f"latency_ms_bs{bs}"] for bs in cfg.batch_sizes}
                ratios[f"{stage}: {first} - {other} metric"] = a["metric_value"] - b["metric_value"]
    result = {
        "command": "python scripts/compare_stacks.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or None,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "task": task.name,
        "metric": task.primary_metric,
        "benchmark": settings,
        "stacks": stacks,
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in ratios.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fixed costs, measured as whole processes: `distill validate`, the quickstart, and a small
distillation job run by distill and by TextBrewer side by side (issue 31), written as one JSON.

The job: 2,000 SST-2 training sentences (a seeded sample of train), the quickstart's tuned teacher,
a student of its layers 0, 2, 4, temperature 2, soft-target weight 0.5 (hard labels 0.5), 1 epoch,
batch 32, max_length 128, scored once on SST-2 dev. TextBrewer runs it through
scripts/textbrewer_job.py in .venv-textbrewer (transformers 4.57; set-up in that script's header).
Runs alternate (distill, TextBrewer, distill, ...), each a fresh process and output folder; medians.

    python scripts/bench_overhead.py --data-dir ../shared/data --before-code /tmp/before \
        --out benchmarks/overhead.json

--before-code is a checkout of the code before a change (git worktree add /tmp/before REV): its
quickstart and validate are timed in the same run, alternating with this checkout's.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
JOB_SENTENCES = 2000


def timed(command: list[str], *, code: Path, env: dict | None = None) -> tuple[float, str]:
    """Wall seconds and stdout of one process (its stderr shown only when it fails)."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=code, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1", **(env or {})})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"bench_overhead: {' '.join(command)} failed in {code}:\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def distill_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "distill", *args]


def job_files(data_dir: Path, work: Path, seed: int) -> tuple[Path, Path]:
    """The job's training TSV (a seeded sample of SST-2 train) and SST-2 dev, both `sentence<TAB>label`."""
    with open(data_dir / "sst2" / "train.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    train = work / "train.tsv"
    with open(train, "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in random.Random(seed).sample(rows, JOB_SENTENCES)))
    return train, data_dir / "sst2" / "dev.tsv"


def distill_job(teacher: Path, train: Path, data_dir: Path, out: Path) -> dict:
    recipe = {
        "name": "overhead_job", "task": "sst2", "output_dir": str(out),
        "data": {"train_file": str(train), "max_length": 128},
        "model": {"model": str(teacher)},
        "stages": [{"kind": "teacher", "skip_training": True},
                   {"kind": "distill", "student": {"layers": [0, 2, 4]},
                    "loss": {"temperature": 2.0, "alpha_kd": 0.5, "alpha_hard": 0.5, "alpha_cos": 0.0},
                    "train": {"epochs": 1, "batch_size": 32, "learning_rate": 5e-5}}],
    }
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(recipe))
    seconds, _ = timed(distill_command("run", str(path), "--data-dir", str(data_dir)), code=REPO)
    student = json.loads((out / "overhead_job" / "report.json").read_text())["stages"][1]
    return {"whole_process_s": seconds, "loop_s": student["train_seconds"], "accuracy": student["metric_value"]}


def textbrewer_job(venv: Path, teacher: Path, train: Path, dev: Path, out: Path) -> dict:
    seconds, stdout = timed([str(venv / "bin" / "python"), str(REPO / "scripts" / "textbrewer_job.py"), "--teacher", str(teacher),
                             "--train", str(train), "--dev", str(dev), "--layers", "0,2,4", "--temperature", "2",
                             "--alpha", "0.5", "--epochs", "1", "--batch-size", "32", "--max-length", "128",
                             "--lr", "5e-5", "--threads", str(os.cpu_count()), "--out", str(out)], code=REPO)
    result = json.loads(stdout.strip().splitlines()[-1])
    return {"whole_process_s": seconds, "loop_s": result["loop_seconds"], "accuracy": result["accuracy"],
            "versions": result["versions"]}


def summary(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if isinstance(runs[0][k], float)]
    return {**{f"median_{k}": statistics.median(r[k] for r in runs) for k in keys}, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--before-code", type=Path, help="a checkout of the code before the change, timed alongside")
    parser.add_argument("--textbrewer-venv", type=Path, default=REPO / ".venv-textbrewer")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the job per tool (after one untimed warm-up each)")
    parser.add_argument("--validate-repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if not (args.data_dir / "sst2" / "train.tsv").is_file():
        parser.error(f"--data-dir: {args.data_dir / 'sst2' / 'train.tsv'} not found")
    if not (args.textbrewer_venv / "bin" / "python").is_file():
        parser.error(f"--textbrewer-venv: {args.textbrewer_venv} has no python (see scripts/textbrewer_job.py)")
    if args.before_code and not (args.before_code / "distill" / "__init__.py").is_file():
        parser.error(f"--before-code: {args.before_code} is not a checkout of distill (git worktree add DIR REV)")
    sys.path.insert(0, str(REPO))
    from distill.reporting.report import measured_on

    codes = {"after": REPO, **({"before": args.before_code.resolve()} if args.before_code else {})}
    env = {"DISTILL_DATA_DIR": str(args.data_dir.resolve())}
    result: dict = {"command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
                    "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **measured_on()}
    with tempfile.TemporaryDirectory(prefix="bench_overhead_") as tmp:
        work = Path(tmp)
        # distill validate on the quickstart recipe: startup and imports only.
        validate = {name: [] for name in codes}
        for i in range(args.validate_repeats + 1):
            for name, code in codes.items():
                seconds, _ = timed(distill_command("validate", "recipes/quickstart.yaml"), code=code, env=env)
                if i:  # the first round warms the file cache
                    validate[name].append(seconds)
        result["validate_s"] = {name: statistics.median(times) for name, times in validate.items()}
        # The quickstart, once per code tree, each into a fresh folder; the job's teacher comes from it.
        quickstart, metrics = {}, {}
        for name, code in codes.items():
            out = work / f"quickstart_{name}"
            quickstart[name], _ = timed(distill_command("run", "recipes/quickstart.yaml", f"output_dir={out}"), code=code, env=env)
            stages = json.loads((out / "quickstart" / "report.json").read_text())["stages"]
            metrics[name] = {s["stage"]: s["metric_value"] for s in stages}  # a speed-up must not change these
        result["quickstart_s"], result["quickstart_metrics"] = quickstart, metrics
        if "before" in quickstart:
            result["quickstart_speedup"] = quickstart["before"] / quickstart["after"]
        teacher = work / "quickstart_after" / "quickstart" / "teacher"
        train, dev = job_files(args.data_dir, work, args.seed)
        runs: dict[str, list[dict]] = {"distill": [], "textbrewer": []}
        for i in range(args.repeats + 1):
            ours = distill_job(teacher, train, args.data_dir, work / f"job_distill_{i}")
            theirs = textbrewer_job(args.textbrewer_venv, teacher, train, dev, work / f"job_textbrewer_{i}")
            if i:  # the first pair warms the file cache
                runs["distill"].append(ours)
                runs["textbrewer"].append(theirs)
    result["job"] = {"train_sentences": JOB_SENTENCES, "layers": [0, 2, 4], "temperature": 2.0, "alpha_kd": 0.5,
                     "epochs": 1, "batch_size": 32, "max_length": 128, "learning_rate": 5e-5,
                     "note": "TextBrewer's soft-target term is cross-entropy without the T^2 factor distill's KL has"}
    result["distill"], result["textbrewer"] = summary(runs["distill"]), summary(runs["textbrewer"])
    result["whole_process_speedup"] = result["textbrewer"]["median_whole_process_s"] / result["distill"]["median_whole_process_s"]
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("validate_s", "quickstart_s", "whole_process_speedup")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

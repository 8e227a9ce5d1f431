"""What does int8 in attention's activation x activation matmuls (scores, scores x values) buy?

From one fp32 torch artifact of a run, builds ONNX Runtime int8 artifacts with those two matmuls
per layer in int8 (Optimum's choice, our default) and in fp32 (the graph a `qat` stage exports),
each by dynamic and by static (min/max) quantization, with `attention_matmuls` of the onnx stage.
Then scores and times them with `distill bench` (interleaved with the reference, e.g. the
teacher) and profiles which operators take the batch-1 time.

  python scripts/bench_attention_matmuls.py runs/glue_sst2 --input trimmed --reference teacher \\
      --task sst2 --data-dir ../shared/data --out benchmarks/int8_attention_matmuls.json

Writes the artifacts under <run>/attention_matmuls/. One thread, warm-up first, medians.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import sys
from pathlib import Path

VARIANTS = {  # folder name: (quantization, attention_matmuls)
    "dynamic_attention_int8": ("dynamic", "int8"),
    "dynamic_attention_fp32": ("dynamic", "fp32"),
    "static_attention_int8": ("static", "int8"),
    "static_attention_fp32": ("static", "fp32"),
}


def calibration_rows(folder: Path, task, data_dir: str | None, count: int, max_length: int, seed: int = 42):
    """Training rows (never dev) tokenized by the artifact's own tokenizer, as the onnx stage uses
    (its `calibration_examples` reads them from a run context, which a script has not)."""
    import datasets

    from distill.data.splits import load_task_splits, resolve_data_dir, tokenize_splits
    from distill.models.loading import load_tokenizer

    train = load_task_splits(task, resolve_data_dir(data_dir), splits=("train",))["train"].shuffle(seed=seed)
    rows = train.select(range(min(count, len(train))))
    tokenized = tokenize_splits(datasets.DatasetDict(train=rows), load_tokenizer(str(folder)), task, max_length)["train"]
    return tokenized.remove_columns(["labels"])


def operator_times_ms(folder: Path, seq_length: int, calls: int = 50) -> dict[str, float]:
    """Mean milliseconds per batch-1 call spent in each operator type (ONNX Runtime's profiler)."""
    import numpy as np

    from distill.quantize.ort_session import ONNX_FILE, onnx_session, ort_session_options

    options = ort_session_options(1)
    options.enable_profiling = True
    options.profile_file_prefix = str(folder / "profile")
    session = onnx_session(folder / ONNX_FILE, options=options)  # the session every stage and benchmark opens
    ids = np.random.default_rng(0).integers(1000, 5000, (1, seq_length))
    feed = {i.name: ids if i.name == "input_ids" else np.ones_like(ids) if i.name == "attention_mask" else np.zeros_like(ids)
            for i in session.get_inputs()}
    for _ in range(calls):
        session.run(None, feed)
    trace = Path(session.end_profiling())
    per_op: collections.Counter = collections.Counter()
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    trace.unlink()
    return {op: round(us / calls / 1000, 4) for op, us in per_op.most_common()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--input", required=True, help="the run's fp32 torch stage quantized")
    parser.add_argument("--reference", default="teacher", help="the run's stage ratios are taken against")
    parser.add_argument("--task", required=True)
    parser.add_argument("--data-dir")
    parser.add_argument("--calibration-examples", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    run = Path(args.run_dir)
    if missing := [str(run / name) for name in (args.input, args.reference) if not (run / name / "config.json").is_file()]:
        print(f"bench_attention_matmuls: not a model folder (no config.json): {', '.join(missing)}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from distill import DistillError

    try:
        return measure(args, run, " ".join(["python", "scripts/bench_attention_matmuls.py", *(argv or sys.argv[1:])]))
    except DistillError as err:
        print(f"bench_attention_matmuls: {err}", file=sys.stderr)
        return 2


def measure(args, run: Path, command: str) -> int:
    from distill.data.tasks import get_task
    from distill.models.loading import load_tokenizer
    from distill.quantize.artifacts import load_torch_classifier
    from distill.quantize.ort import build_onnx_classifier
    from distill.recipe import BenchmarkConfig
    from distill.reporting.bench import bench_dirs
    from distill.reporting.report import measured_on

    task = get_task(args.task)
    source, out_dir = run / args.input, run / "attention_matmuls"
    model, tokenizer = load_torch_classifier(source), load_tokenizer(str(source))
    calibration = calibration_rows(source, task, args.data_dir, args.calibration_examples, args.max_length)
    built = {}
    for name, (quantization, matmuls) in VARIANTS.items():
        built[name] = build_onnx_classifier(model, tokenizer, out_dir / name, quantization=quantization, attention_matmuls=matmuls,
                                            calibration_dataset=calibration if quantization == "static" else None)
        print(f"{name}: {built[name]['kernels']}")
    cfg = BenchmarkConfig(enabled=True, threads=1, memory=False)
    report = bench_dirs([str(run / args.reference), str(source), *(str(out_dir / n) for n in VARIANTS)], task, data_dir=args.data_dir,
                        cfg=cfg, reference=str(run / args.reference), output_dir=out_dir / "bench", command=command,
                        max_length=args.max_length)
    result = {"command": command, **measured_on(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "task": args.task, "run": str(run), "input": args.input, "calibration_examples": args.calibration_examples,
              "benchmark": report.get("benchmark"),
              "models": [{k: r.get(k) for k in ("stage", "metric", "metric_value", "size_bytes", "latency_ms_bs1", "latency_ms_bs32",
                                                "speedup_vs_teacher_bs1", "speedup_vs_teacher_bs32")} for r in report["stages"]],
              "kernels": {name: details["kernels"] for name, details in built.items()},
              "operator_ms_bs1": {name: operator_times_ms(out_dir / name, cfg.seq_length) for name in VARIANTS}}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

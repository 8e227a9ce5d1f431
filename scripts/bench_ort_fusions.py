"""Is a load-time fusion of ONNX Runtime slower than the ops it replaces? Times one
SkipLayerNormalization (com.microsoft) against Add + LayerNormalization on the same inputs, each
in a one-node graph with every graph optimization off, and an int8 artifact with the fusion on
and off (the setting `distill.quantize.ort_session.DISABLED_FUSIONS` keeps).

  python scripts/bench_ort_fusions.py [--artifact runs/wnut17_chain/int8_full_vocab] --out benchmarks/ort_fusions.json

One thread, warm-up first, then the median of interleaved calls; ratios taken in the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def one_op_session(op: str, shape: tuple[int, ...]):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    hidden = shape[-1]
    rng = np.random.default_rng(0)
    params = [helper.make_tensor(name, TensorProto.FLOAT, [hidden], rng.random(hidden, dtype=np.float32)) for name in ("gamma", "beta")]
    if op == "SkipLayerNormalization":
        nodes = [helper.make_node(op, ["x", "skip", "gamma", "beta"], ["y"], domain="com.microsoft", epsilon=1e-12)]
    else:
        nodes = [helper.make_node("Add", ["x", "skip"], ["sum"]),
                 helper.make_node("LayerNormalization", ["sum", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-12)]
    graph = helper.make_graph(nodes, op, [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(shape)) for n in ("x", "skip")],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))], params)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def medians(calls: dict, warmup: int, repeats: int) -> dict[str, float]:
    for call in calls.values():
        for _ in range(warmup):
            call()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", help="an int8 ONNX artifact folder to time with the fusion on and off")
    parser.add_argument("--seq-length", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import onnxruntime as ort

    from distill.quantize.ort_session import ort_session_options
    from distill.reporting.report import measured_on

    rng = np.random.default_rng(0)
    ops = {}
    for batch in (1, 32):
        shape = (batch, args.seq_length, args.hidden)
        feed = {"x": rng.random(shape, dtype=np.float32), "skip": rng.random(shape, dtype=np.float32)}
        sessions = {op: one_op_session(op, shape) for op in ("SkipLayerNormalization", "Add+LayerNormalization")}
        outputs = [s.run(None, feed)[0] for s in sessions.values()]
        ms = medians({op: (lambda s=s: s.run(None, feed)) for op, s in sessions.items()}, warmup=20, repeats=200)
        ops[f"batch_{batch}"] = {"shape": list(shape), "ms": ms, "fused_over_unfused": ms["SkipLayerNormalization"] / ms["Add+LayerNormalization"],
                                 "max_abs_difference": float(np.abs(outputs[0] - outputs[1]).max())}
        print(f"{shape}: SkipLayerNormalization {ms['SkipLayerNormalization']:.3f} ms, Add+LayerNormalization "
              f"{ms['Add+LayerNormalization']:.3f} ms")
    artifact = None
    if args.artifact:
        path = str(Path(args.artifact) / "model.onnx")
        sessions = {"fusion on": ort.InferenceSession(path, ort_session_options(1), providers=["CPUExecutionProvider"]),
                    "fusion off": ort.InferenceSession(path, ort_session_options(1), providers=["CPUExecutionProvider"],
                                                       disabled_optimizers=["SkipLayerNormFusion"])}
        names = [i.name for i in sessions["fusion on"].get_inputs()]
        artifact = {"folder": args.artifact}
        for batch in (1, 32):
            feed = {"input_ids": rng.integers(1000, 9000, (batch, args.seq_length)), "attention_mask": np.ones((batch, args.seq_length), np.int64),
                    "token_type_ids": np.zeros((batch, args.seq_length), np.int64)}
            feed = {n: feed[n] for n in names}
            ms = medians({k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()}, warmup=5, repeats=50)
            artifact[f"batch_{batch}"] = {"ms": ms, "speedup_without_fusion": ms["fusion on"] / ms["fusion off"]}
            print(f"{args.artifact} batch {batch}: fusion on {ms['fusion on']:.2f} ms, off {ms['fusion off']:.2f} ms")
    report = {"command": " ".join(["python", "scripts/bench_ort_fusions.py", *(argv if argv is not None else sys.argv[1:])]),
              **measured_on(), "onnxruntime": ort.__version__,
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "threads": 1,
              "timing": "median of interleaved calls after warm-up (200 per op, 50 per artifact)",
              "one_op": ops, "artifact": artifact}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

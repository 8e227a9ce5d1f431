"""Do int8 ONNX artifacts keep their accuracy on a CPU without VNNI (AVX2 only)?

Each artifact is scored with `distill eval` twice: natively, and under QEMU's user-mode emulation
of an AVX2-only CPU (`qemu-x86_64 -cpu Haswell`), where ONNX Runtime's CPUID dispatch picks its
AVX2 kernels. Those compute u8 x s8 products with vpmaddubsw, whose pair sums saturate at int16
(NNCF #1498 saw F1 fall to 8 on such CPUs). A probe graph shows which kernel ran: a MatMulInteger of
255s by 127s, exact natively on VNNI, saturated on the AVX2 path.

  python scripts/int8_on_avx2.py runs/glue_rte/student_int8 runs/glue_rte/pruned_qat --task rte \\
      --data-dir ../shared/data --out benchmarks/int8_avx2_check.json

Needs Debian's qemu-user (`apt-get install qemu-user`). Emulation is slow (minutes per artifact);
accuracy is what it measures, never speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

PROBE = """
import numpy as np, onnxruntime as ort
from onnx import TensorProto, helper
K = 64
weights = helper.make_tensor("B", TensorProto.INT8, [K, 1], np.full((K, 1), 127, np.int8).tobytes(), raw=True)
graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "probe",
                          [helper.make_tensor_value_info("A", TensorProto.UINT8, [1, K])],
                          [helper.make_tensor_value_info("Y", TensorProto.INT32, [1, 1])], [weights])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
print(int(session.run(None, {"A": np.full((1, K), 255, np.uint8)})[0][0, 0]) != 255 * 127 * K)
"""


def emulated(cpu: str | None) -> list[str]:
    return ["qemu-x86_64", "-cpu", cpu] if cpu else []


def saturates(cpu: str | None) -> bool:
    out = subprocess.run([*emulated(cpu), sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1] == "True"


def evaluate(folder: str, task: str, data_dir: str | None, cpu: str | None, max_length: int) -> dict:
    command = [*emulated(cpu), sys.executable, "-m", "distill", "eval", folder, "--task", task, "--max-length", str(max_length)]
    if data_dir:
        command += ["--data-dir", data_dir]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout[out.stdout.index("{"):])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="int8 ONNX artifact folders")
    parser.add_argument("--task", required=True)
    parser.add_argument("--data-dir")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--cpu", default="Haswell", help="QEMU CPU model without AVX-512/VNNI (default Haswell: AVX2)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if shutil.which("qemu-x86_64") is None:
        print("int8_on_avx2: qemu-x86_64 not found (apt-get install qemu-user)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from distill.machine import cpu_flags
    from distill.reporting.report import measured_on

    probe = {"native_saturates": saturates(None), "emulated_saturates": saturates(args.cpu)}
    results = []
    for folder in args.folders:
        native = evaluate(folder, args.task, args.data_dir, None, args.max_length)
        avx2 = evaluate(folder, args.task, args.data_dir, args.cpu, args.max_length)
        quantization = json.loads((Path(folder) / "ort_config.json").read_text()).get("quantization") or {}
        results.append({"artifact": folder, "built_for": quantization.get("isa"), "weights_dtype": quantization.get("weights_dtype"),
                        "mode": quantization.get("mode"), "native": native, "emulated_avx2": avx2})
        print(f"{folder}: native {native.get('accuracy', native)}; emulated {args.cpu} {avx2.get('accuracy', avx2)}")
    report = {"command": " ".join(["python", "scripts/int8_on_avx2.py", *(argv or sys.argv[1:])]),
              **measured_on(), "host_flags": sorted(cpu_flags() & {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}),
              "emulated_cpu": f"qemu-x86_64 -cpu {args.cpu} (TCG: no AVX-512, no VNNI)", "probe": probe,
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "task": args.task, "results": results}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

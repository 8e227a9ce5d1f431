"""Running ONNX Runtime artifacts: the session settings every stage and benchmark uses, a
classifier called like a transformers model, and what a saved graph holds (int8 kernels,
parameters). Below `ort.py`, which builds the artifacts: loading one never needs the exporter
or the quantizer."""

from __future__ import annotations

import io
import json
import tempfile
from collections import Counter
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import numpy as np

ONNX_FILE = "model.onnx"
ORT_CONFIG_FILE = "ort_config.json"


@contextmanager
def quiet_onnx_tools():
    """Keep exporter and quantizer chatter (TracerWarnings, per-channel axis warnings on
    LayerNorm weights, ORT's C++ warnings) off the user's screen."""
    import logging
    import warnings

    import onnxruntime

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime.quantization logs through the root logger
    onnxruntime.set_default_logger_severity(3)
    try:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):  # the calibrator print()s its progress
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
        onnxruntime.set_default_logger_severity(2)


def ort_session_options(threads: int | None):
    """A fixed intra-op thread count, and no spin-waiting after a run: spinning threads would
    steal the cores from whatever model is timed next."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


# Load-time fusions left off. ONNX Runtime's CPU SkipLayerNormalization kernel is several times
# slower than the Add + LayerNormalization it replaces (scripts/bench_ort_fusions.py,
# benchmarks/ort_fusions.json); it fuses around the int8 matmuls, not in fp32 graphs.
DISABLED_FUSIONS = ("SkipLayerNormFusion",)


def onnx_session(path: Path, threads: int | None = None, options=None):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), options or ort_session_options(threads), providers=["CPUExecutionProvider"],
                                        disabled_optimizers=list(DISABLED_FUSIONS))


class OnnxClassifier:
    """An ONNX Runtime classifier called like a transformers model: `model(**batch).logits`
    (torch tensors or numpy arrays in, a torch tensor out). Inputs the graph lacks are dropped;
    token_type_ids the graph needs default to zeros."""

    def __init__(self, folder: str | Path, threads: int | None = None):
        from transformers import AutoConfig

        self.folder = Path(folder)
        self.session = onnx_session(self.folder / ONNX_FILE, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.config = AutoConfig.from_pretrained(self.folder)

    def __call__(self, **inputs):
        import torch
        from transformers.modeling_outputs import SequenceClassifierOutput

        arrays = {k: np.asarray(v.cpu() if hasattr(v, "cpu") else v, dtype=np.int64) for k, v in inputs.items() if k in self.input_names}
        if "token_type_ids" in self.input_names and "token_type_ids" not in arrays:
            arrays["token_type_ids"] = np.zeros_like(arrays["input_ids"])
        logits = self.session.run(["logits"], arrays)[0]
        return SequenceClassifierOutput(logits=torch.from_numpy(logits))


# MatMul kernels in the graph ONNX Runtime actually runs (after its load-time fusions).
INT8_MATMUL_OPS = ("MatMulIntegerToFloat", "MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul", "QGemm", "QAttention")
FLOAT_MATMUL_OPS = ("MatMul", "Gemm", "FusedMatMul", "Attention")


def optimized_op_counts(path: Path) -> Counter:
    """The operators of the graph ONNX Runtime runs, by type: it optimizes the file as it would
    at load (our sessions' settings) and the optimized graph is counted."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        options = ort_session_options(1)
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        with quiet_onnx_tools():
            onnx_session(path, options=options)
        return Counter(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node)


def int8_kernel_report(path: Path) -> dict[str, int]:
    """How many matmuls of the graph ONNX Runtime runs in int8 and how many in float. A QDQ graph
    whose pairs were not fused would show float matmuls fed by DequantizeLinear."""
    ops = optimized_op_counts(path)
    return {"int8_matmuls": sum(ops[op] for op in INT8_MATMUL_OPS), "float_matmuls": sum(ops[op] for op in FLOAT_MATMUL_OPS),
            "dequantize_nodes": ops["DequantizeLinear"]}


def load_onnx_classifier(folder: Path, threads: int | None = None) -> OnnxClassifier:
    return OnnxClassifier(folder, threads)


def is_quantized(folder: Path) -> bool:
    """Whether the folder's ONNX model is int8: from its ort_config.json (ours, or Optimum's)."""
    ort_config = Path(folder) / ORT_CONFIG_FILE
    return ort_config.is_file() and bool(json.loads(ort_config.read_text()).get("quantization"))


def onnx_parameter_count(folder: Path) -> int:
    """Elements of the graph's weight tensors (int8 weights plus their scales and zero points)."""
    import onnx

    graph = onnx.load(str(Path(folder) / ONNX_FILE), load_external_data=False).graph
    return int(sum(np.prod(t.dims, dtype=np.int64) for t in graph.initializer))

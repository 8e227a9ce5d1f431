"""ONNX Runtime artifacts without Optimum: export a torch classifier with `torch.onnx`, optionally
optimize the graph with onnxruntime's transformer optimizer, and quantize it to int8 with
`onnxruntime.quantization` (dynamic, or static QDQ with ranges calibrated on task data).

One path on both transformers stacks (torch and onnxruntime are the same on both): optimum-onnx
only installs beside transformers < 4.58. The folder holds `model.onnx`, `config.json`,
`ort_config.json` (what was done) and the tokenizer, so it loads with a plain
`onnxruntime.InferenceSession`, with `ort_session.load_onnx_classifier`, and with optimum's
`ORTModelForSequenceClassification` wherever optimum-onnx is installed.
"""

from __future__ import annotations

import inspect
import json
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np

from distill import DistillError
from distill.machine import cpu_flags
from distill.quantize.ort_session import ONNX_FILE, ORT_CONFIG_FILE, int8_kernel_report, onnx_session, quiet_onnx_tools
from distill.recipe.quantize import check_levels

ISAS = ("avx2", "avx512", "avx512_vnni", "arm64")
OPTIMIZATION_LEVELS = (0, 1, 2, 99)
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
OPSET = 17
# Static int8 quantizes the weight-bearing ops (matmuls, the embedding lookups). Left out: the
# mask arithmetic (Add/Mul on a tensor that is constant for an unpadded batch, which entropy and
# percentile histograms cannot bin) and the residual adds, whose int8 rounding costs accuracy.
STATIC_OP_TYPES = ("MatMul", "Gemm", "Gather")
GRAPH_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
EXPORTER = "torch.onnx.export(dynamo=False), eager attention"
# Optimized graphs must give the exported graph's logits (a fusion that mis-reads a pruned
# layer's head count would not): max absolute difference allowed.
OPTIMIZATION_TOLERANCE = 1e-3


def detect_isa(flags: set[str] | None = None, machine: str | None = None) -> str:
    """The int8 preset for this CPU: arm64 on ARM, else the widest x86 vector ISA
    (AVX512-VNNI > AVX512 > AVX2; AVX2's u8/u8 preset is also the safe choice below AVX2)."""
    import platform

    machine = (machine or platform.machine()).lower()
    if machine in {"aarch64", "arm64"}:
        return "arm64"
    flags = cpu_flags() if flags is None else flags
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags and "avx512bw" in flags:
        return "avx512"
    return "avx2"


def weight_type_name(isa: str) -> str:
    """Weights u8 on AVX2 (its u8*s8 instructions can saturate), s8 elsewhere; activations are
    always u8, asymmetric. The same presets Optimum's AutoQuantizationConfig uses."""
    if isa not in ISAS:
        raise DistillError(f"isa: {isa!r} is not one of {', '.join(ISAS)}")
    return "QUInt8" if isa == "avx2" else "QInt8"


def graph_input_names(model) -> list[str]:
    """input_ids and attention_mask, plus token_type_ids where the model takes them (BERT does:
    pair tasks need them, and Optimum's BERT graphs have them too)."""
    accepted = inspect.signature(model.forward).parameters
    return [name for name in GRAPH_INPUTS if name in accepted]


def export_onnx(model, path: Path) -> Path:
    """fp32 ONNX of an in-memory classifier, dynamic batch and sequence. Exporting the loaded
    module (not a folder name) traces whatever its layers are, so pruned or factorized models
    export too. Legacy exporter with eager attention: onnxruntime's optimizer fuses that graph's
    attention; the dynamo export and the sdpa graph (IsNaN/Where masking) leave it unfused."""
    import torch

    model = model.eval()
    names = graph_input_names(model)
    vocab = model.config.vocab_size
    input_ids = torch.arange(2 * 8).reshape(2, 8) % vocab
    attention_mask = torch.ones(2, 8, dtype=torch.long)
    attention_mask[1, 5:] = 0  # a padded row, so the traced mask path is the general one
    dummy = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": torch.zeros(2, 8, dtype=torch.long)}
    with torch.no_grad():  # a tagger's logits have one row per token: their sequence axis is dynamic too
        per_token = model(**{n: dummy[n] for n in names}).logits.dim() == 3
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": {0: "batch", 1: "sequence"} if per_token else {0: "batch"}}
    previous = model.config._attn_implementation
    # Eager first; then the model's own attention: transformers 4.x DistilBERT fixes its attention
    # class when built, and its sdpa class cannot trace the eager path's integer mask.
    attempts = ["eager"] + ([previous] if previous != "eager" else [])
    for attempt, implementation in enumerate(attempts, 1):
        model.config._attn_implementation = implementation
        try:
            with torch.no_grad(), quiet_onnx_tools():
                torch.onnx.export(model, (), str(path), kwargs={n: dummy[n] for n in names}, input_names=names,
                                  output_names=["logits"], dynamic_axes=axes, opset_version=OPSET, dynamo=False)
            break
        except Exception as err:  # an op or architecture the exporter cannot trace
            if attempt == len(attempts):
                raise DistillError(f"ONNX export of {type(model).__name__} failed: {str(err).splitlines()[0]}") from None
        finally:
            model.config._attn_implementation = previous
    return path


def optimize_onnx(src: Path, dst: Path, level: int, model, fuse_attention: bool) -> dict:
    """Bake graph optimizations into the file. Level 1: onnxruntime's basic ones; 2: plus the
    transformer fusions (attention, SkipLayerNorm, BiasGelu, embeddings); 99: all (hardware
    specific). onnxruntime applies level 1-2 at load time anyway, except the fusions."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    config = model.config
    with quiet_onnx_tools():
        if level == 1:
            optimized = optimize_model(str(src), model_type="bert", opt_level=1, only_onnxruntime=True)
        else:
            options = FusionOptions("bert")
            options.enable_attention = fuse_attention
            optimized = optimize_model(str(src), model_type="bert", num_heads=config.num_attention_heads,
                                       hidden_size=config.hidden_size, opt_level=1 if level == 2 else 99,
                                       optimization_options=options)
        optimized.save_model_to_file(str(dst))
    fused = {op: n for op, n in optimized.get_fused_operator_statistics().items() if n} if level > 1 else {}
    return {"level": level, "fused_operators": fused}


def activation_matmul_nodes(path: Path) -> list[str]:
    """The MatMul nodes with no weight operand: attention's scores and scores x values. Excluded
    by name, since the quantizer's own switch (MatMulConstBOnly) is read by its dynamic path only."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {tensor.name for tensor in graph.initializer}
    return [node.name for node in graph.node if node.op_type == "MatMul" and not set(node.input) & weights]


def onnx_nodes_of_modules(path: Path, module_paths: list[str]) -> list[str]:
    """The nodes the exporter made for these torch modules (full dotted paths): the legacy
    exporter names a node by its module scope, "/bert/encoder/layer.2/output/dense/MatMul"."""
    import onnx

    names = [node.name for node in onnx.load(str(path), load_external_data=False).graph.node]
    nodes = []
    for module in module_paths:
        parts: list[str] = []
        for part in module.split("."):
            if part.isdigit() and parts:  # a ModuleList child keeps its index: "layer.2"
                parts[-1] += f".{part}"
            else:
                parts.append(part)
        scope = "/" + "/".join(parts) + "/"
        found = [name for name in names if name.startswith(scope)]
        if not found:
            raise DistillError(f"keep_fp32: module '{module}' has no node in the exported graph")
        nodes += found
    return nodes


def quantize_onnx(src: Path, dst: Path, *, mode: Literal["dynamic", "static"], isa: str, per_channel: bool,
                  calibration=None, calibration_method: str = "minmax", op_types: list[str] | None = None,
                  keep_fp32: list[str] = (), attention_matmuls: Literal["int8", "fp32"] = "int8") -> dict:
    """int8 weights; activations quantized per batch at run time (dynamic) or with ranges
    calibrated once on `calibration` (static, QDQ: rows of input_ids/attention_mask/...).
    `op_types`: the operator types quantized (default: all for dynamic, STATIC_OP_TYPES for
    static); `keep_fp32`: torch module paths whose nodes stay fp32; `attention_matmuls`: whether
    the activation x activation matmuls (attention scores, scores x values) are int8 too."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    weight_type = getattr(QuantType, weight_type_name(isa))
    if attention_matmuls not in ("int8", "fp32"):
        raise DistillError(f"attention_matmuls: must be int8 or fp32, got {attention_matmuls!r}")
    # Fused com.microsoft ops have no ONNX shape inference: tell the quantizer their outputs are float.
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT, "WeightSymmetric": True, "ActivationSymmetric": False}
    excluded = onnx_nodes_of_modules(src, list(keep_fp32)) if keep_fp32 else []
    if attention_matmuls == "fp32":
        excluded += activation_matmul_nodes(src)
    chosen = {"op_types_to_quantize": list(op_types)} if op_types else {}
    with quiet_onnx_tools():
        if mode == "dynamic":
            # The activation x activation matmuls too (unless excluded above), as Optimum's
            # quantizer does: quantize_dynamic alone keeps them fp32 (MatMulConstBOnly).
            quantize_dynamic(str(src), str(dst), per_channel=per_channel, weight_type=weight_type, nodes_to_exclude=excluded,
                             extra_options=extra | {"MatMulConstBOnly": False}, **chosen)
        else:
            if calibration is None or len(calibration) == 0:
                raise DistillError("static quantization needs calibration examples")
            if calibration_method not in CALIBRATION_METHODS:
                raise DistillError(f"calibration_method: {calibration_method!r} is not one of {', '.join(CALIBRATION_METHODS)}")
            method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                      "percentile": CalibrationMethod.Percentile}[calibration_method]
            with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".calibration-") as scratch:  # ORT's augmented model
                # Matmul outputs stay float: nearly all feed a float op (bias Add, GELU, softmax), so a
                # Q/DQ pair there only adds rounding and work; unquantized, ONNX Runtime runs DQ ->
                # MatMul as MatMulIntegerToFloat (SST-2 student: 38 -> 15 DequantizeLinear left).
                no_output_qdq = {"OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"]}
                quantize_static(str(src), str(dst), _CalibrationReader(src, calibration), quant_format=QuantFormat.QDQ,
                                per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=weight_type,
                                calibrate_method=method, extra_options=extra | no_output_qdq | {"CalibTensorRangeSymmetric": False},
                                op_types_to_quantize=list(op_types or STATIC_OP_TYPES), nodes_to_exclude=excluded,
                                calibration_providers=["CPUExecutionProvider"], **_scratch_kwarg(scratch))
    return {
        "mode": mode,
        "format": "QOperator" if mode == "dynamic" else "QDQ",
        "per_channel": per_channel,
        "isa": isa,
        "activations_dtype": "QUInt8",
        "weights_dtype": weight_type_name(isa),
        "weights_symmetric": True,
        "calibration_method": calibration_method if mode == "static" else None,
        "calibration_examples": len(calibration) if mode == "static" else None,
        "op_types": list(op_types) if op_types else ("all" if mode == "dynamic" else list(STATIC_OP_TYPES)),
        "kept_fp32": list(keep_fp32),
        "nodes_kept_fp32": len(excluded),
        "attention_matmuls": attention_matmuls,
    }


def _scratch_kwarg(folder: str) -> dict:
    """Where quantize_static writes its augmented model, for onnxruntime releases that ask."""
    from onnxruntime.quantization import quantize_static

    return {"calibration_data_reader_dir": folder} if "calibration_data_reader_dir" in inspect.signature(quantize_static).parameters else {}


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over tokenized rows, one example per step,
    right-padded to the longest (entropy and percentile histograms need one shape; batches are
    padded at inference too)."""

    def __init__(self, model_path: Path, rows):
        import onnx

        names = [i.name for i in onnx.load(str(model_path), load_external_data=False).graph.input]
        rows = list(rows)
        length = max(len(row["input_ids"]) for row in rows)

        def padded(row, name):
            values = row.get(name) or ([1] * len(row["input_ids"]) if name == "attention_mask" else [0] * len(row["input_ids"]))
            return np.asarray([list(values) + [0] * (length - len(values))], dtype=np.int64)

        self._rows = iter([{name: padded(row, name) for name in names} for row in rows])

    def get_next(self):
        return next(self._rows, None)


def build_onnx_classifier(
    model,
    tokenizer,
    out_dir: Path,
    *,
    optimization_level: int = 0,
    quantization: Literal["none", "dynamic", "static"] = "dynamic",
    per_channel: bool = True,
    isa: str = "auto",
    calibration_dataset=None,
    calibration_method: str = "minmax",
    op_types: list[str] | None = None,
    keep_fp32: list[str] = (),
    attention_matmuls: Literal["int8", "fp32"] = "int8",
) -> dict:
    """torch classifier -> ONNX Runtime folder in `out_dir`; returns what was done."""
    if optimization_level not in OPTIMIZATION_LEVELS:
        raise DistillError(f"optimization_level: must be one of {OPTIMIZATION_LEVELS}, got {optimization_level!r}")
    if quantization not in ("none", "dynamic", "static"):
        raise DistillError(f"quantization: must be none, dynamic or static, got {quantization!r}")
    check_levels(optimization_level, quantization)
    isa = detect_isa() if isa == "auto" else isa
    weight_type_name(isa)  # an unknown isa fails before the export
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    optimization = quantization_details = None
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".onnx-work-") as tmp:
        current = export_onnx(model, Path(tmp) / "exported.onnx")
        if optimization_level:
            # The attention fusion assumes every layer has the config's head count.
            optimized = Path(tmp) / "optimized.onnx"
            optimization = optimize_onnx(current, optimized, optimization_level, model, fuse_attention=_all_heads_kept(model))
            check_same_logits(current, optimized, model.config.vocab_size)
            current = optimized
        if quantization != "none":
            quantized = Path(tmp) / "quantized.onnx"
            quantization_details = quantize_onnx(current, quantized, mode=quantization, isa=isa, per_channel=per_channel,
                                                 calibration=calibration_dataset, calibration_method=calibration_method,
                                                 op_types=op_types, keep_fp32=keep_fp32, attention_matmuls=attention_matmuls)
            current = quantized
        shutil.copyfile(current, out_dir / ONNX_FILE)
    if quantization_details is not None:
        quantization_details["kernels"] = int8_kernel_report(out_dir / ONNX_FILE)
    model.config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    record = {"exporter": EXPORTER, "opset": OPSET, "optimization": optimization, "quantization": quantization_details}
    (out_dir / ORT_CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return {
        "optimization_level": optimization_level,
        "fused_operators": (optimization or {}).get("fused_operators"),
        "quantization": quantization,
        **{k: (quantization_details or {}).get(k) for k in ("per_channel", "isa", "calibration_examples", "calibration_method", "op_types",
                                                                 "kept_fp32", "attention_matmuls", "kernels")},
    }


def _all_heads_kept(model) -> bool:
    from distill.pruning import PRUNING_KEY

    spec = getattr(model.config, PRUNING_KEY, None) or {}
    return all(len(kept) == model.config.num_attention_heads for kept in spec.get("heads_kept", []))


def check_same_logits(reference: Path, candidate: Path, vocab_size: int) -> None:
    rng = np.random.default_rng(0)
    reference_session, candidate_session = (onnx_session(p) for p in (reference, candidate))
    names = [i.name for i in reference_session.get_inputs()]
    feed = {"input_ids": rng.integers(0, vocab_size, (3, 11)), "attention_mask": np.ones((3, 11), dtype=np.int64),
            "token_type_ids": np.zeros((3, 11), dtype=np.int64)}
    feed["attention_mask"][2, 7:] = 0
    feed = {n: feed[n].astype(np.int64) for n in names}
    diff = float(np.abs(reference_session.run(None, feed)[0] - candidate_session.run(None, feed)[0]).max())
    if diff > OPTIMIZATION_TOLERANCE:
        raise DistillError(f"optimization_level: the optimized graph's logits differ from the export's by {diff:.2g}; "
                           "use a lower optimization_level for this model")

"""ONNX Runtime artifacts through Optimum: export a torch classifier to ONNX, optionally optimize
the graph, and quantize it to int8 (dynamic, or static with calibration on task data).

The output folder holds one `model.onnx`, `config.json`, `ort_config.json` (what was done) and
the tokenizer, so `ORTModelForSequenceClassification.from_pretrained(folder)` and
`pipeline("text-classification", model=ort_model, tokenizer=tok)` load it.
"""

from __future__ import annotations

import platform
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from distill.errors import DistillError

ISAS = ("avx2", "avx512", "avx512_vnni", "arm64")
OPTIMIZATION_LEVELS = (0, 1, 2, 99)
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# Levels 2 and 99 fuse attention/LayerNorm into com.microsoft ops whose outputs ONNX shape
# inference cannot type; Optimum's quantizer then fails (optimum#1959), so with int8 only 0-1.
MAX_LEVEL_WITH_QUANTIZATION = 1
ONNX_FILE = "model.onnx"


def detect_isa(cpu_flags: set[str] | None = None, machine: str | None = None) -> str:
    """The Optimum int8 preset for this CPU: arm64 on ARM, else the widest x86 vector ISA
    (AVX512-VNNI > AVX512 > AVX2; AVX2's u8/u8 preset is also the safe choice below AVX2)."""
    machine = (machine or platform.machine()).lower()
    if machine in {"aarch64", "arm64"}:
        return "arm64"
    flags = cpu_flags if cpu_flags is not None else _cpu_flags()
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags and "avx512bw" in flags:
        return "avx512"
    return "avx2"


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def quantization_config(mode: Literal["dynamic", "static"], isa: str, per_channel: bool):
    """Optimum's preset for the instruction set (weights u8 on AVX2, s8 on AVX512/ARM)."""
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    if isa not in ISAS:
        raise DistillError(f"isa: {isa!r} is not one of {', '.join(ISAS)}")
    preset = getattr(AutoQuantizationConfig, isa)
    return preset(is_static=mode == "static", per_channel=per_channel)


def export_onnx(model, out_dir: Path) -> Path:
    """fp32 ONNX export of an in-memory classifier. Exporting the loaded module (not a folder
    name) traces whatever its layers are, so pruned or factorized models export too."""
    from optimum.exporters.onnx import onnx_export_from_model

    out_dir = Path(out_dir)
    try:
        onnx_export_from_model(model.eval(), out_dir, task="text-classification", do_validation=False)
    except (ValueError, KeyError) as err:  # architectures Optimum has no ONNX config for
        raise DistillError(f"ONNX export of {type(model).__name__} failed: {str(err).splitlines()[0]}") from None
    return out_dir / ONNX_FILE


def optimize_onnx(src_dir: Path, out_dir: Path, level: int, transformer_fusions: bool):
    """ONNX Runtime graph optimization written into the file (ONNX Runtime also optimizes at
    load time; offline fusions are what it cannot do by itself)."""
    from optimum.onnxruntime import ORTOptimizer
    from optimum.onnxruntime.configuration import OptimizationConfig

    config = OptimizationConfig(optimization_level=level, enable_transformers_specific_optimizations=transformer_fusions)
    try:
        ORTOptimizer.from_pretrained(src_dir).optimize(config, out_dir, file_suffix=None)
    except NotImplementedError as err:  # model type without ORT optimization support
        raise DistillError(f"optimization_level: {str(err).splitlines()[0]}") from None
    return config


def quantize_onnx(
    src_dir: Path,
    out_dir: Path,
    *,
    mode: Literal["dynamic", "static"],
    isa: str,
    per_channel: bool,
    calibration_dataset=None,
    calibration_method: str = "minmax",
    work_dir: Path | None = None,
):
    """int8 weights; activations quantized per batch at run time (dynamic) or with ranges
    calibrated once on `calibration_dataset` (static: tokenized examples, one per step)."""
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoCalibrationConfig

    config = quantization_config(mode, isa, per_channel)
    quantizer = ORTQuantizer.from_pretrained(src_dir)
    ranges = None
    if mode == "static":
        if calibration_dataset is None or len(calibration_dataset) == 0:
            raise DistillError("static quantization needs calibration examples")
        if calibration_method not in CALIBRATION_METHODS:
            raise DistillError(f"calibration_method: {calibration_method!r} is not one of {', '.join(CALIBRATION_METHODS)}")
        dataset = quantizer.clean_calibration_dataset(calibration_dataset)  # keeps the graph's inputs only
        calibration = getattr(AutoCalibrationConfig, calibration_method)(dataset)
        augmented = Path(work_dir or out_dir) / "augmented_model.onnx"  # Optimum's default lands in the cwd
        ranges = quantizer.fit(dataset, calibration, onnx_augmented_model_name=augmented,
                               operators_to_quantize=config.operators_to_quantize)
    quantizer.quantize(config, out_dir, file_suffix=None, calibration_tensors_range=ranges)
    return config


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
) -> dict:
    """torch classifier -> ONNX Runtime folder in `out_dir`; returns what was done."""
    if optimization_level not in OPTIMIZATION_LEVELS:
        raise DistillError(f"optimization_level: must be one of {OPTIMIZATION_LEVELS}, got {optimization_level!r}")
    if quantization not in ("none", "dynamic", "static"):
        raise DistillError(f"quantization: must be none, dynamic or static, got {quantization!r}")
    quantized = quantization != "none"
    if quantized and optimization_level > MAX_LEVEL_WITH_QUANTIZATION:
        raise DistillError(f"optimization_level: {optimization_level} cannot be combined with int8 quantization "
                           f"(use 0 or 1; ONNX Runtime still optimizes the graph when it loads it)")
    isa = detect_isa() if isa == "auto" else isa
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".onnx-work-") as tmp:
        work = Path(tmp)
        current = export_onnx(model, work / "exported").parent
        optimization = quantization_cfg = None
        if optimization_level:
            # Transformer fusions only without int8: the quantizer cannot read the fused graph.
            optimization = optimize_onnx(current, work / "optimized", optimization_level, transformer_fusions=not quantized)
            current = work / "optimized"
        if quantized:
            quantization_cfg = quantize_onnx(current, work / "quantized", mode=quantization, isa=isa, per_channel=per_channel,
                                             calibration_dataset=calibration_dataset,
                                             calibration_method=calibration_method, work_dir=work)
            current = work / "quantized"
        shutil.copyfile(current / ONNX_FILE, out_dir / ONNX_FILE)
        model.config.save_pretrained(out_dir)
    _save_ort_config(out_dir, optimization, quantization_cfg)
    tokenizer.save_pretrained(out_dir)
    return {
        "optimization_level": optimization_level,
        "quantization": quantization,
        "per_channel": per_channel if quantized else None,
        "isa": isa if quantized else None,
        "calibration_examples": len(calibration_dataset) if quantization == "static" else None,
        "calibration_method": calibration_method if quantization == "static" else None,
    }


def _save_ort_config(out_dir: Path, optimization, quantization) -> None:
    """One ort_config.json saying both what was optimized and how it was quantized."""
    from optimum.onnxruntime.configuration import ORTConfig

    ORTConfig(optimization=optimization, quantization=quantization).save_pretrained(out_dir)


def ort_session_options(threads: int | None):
    """A fixed intra-op thread count, and no spin-waiting after a run: spinning threads would
    steal the cores from whatever model is timed next."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def load_onnx_classifier(folder: Path, threads: int | None = None):
    from optimum.onnxruntime import ORTModelForSequenceClassification

    return ORTModelForSequenceClassification.from_pretrained(Path(folder), session_options=ort_session_options(threads))


def onnx_parameter_count(folder: Path) -> int:
    """Elements of the graph's weight tensors (int8 weights plus their scales and zero points)."""
    import numpy as np
    import onnx

    graph = onnx.load(str(Path(folder) / ONNX_FILE), load_external_data=False).graph
    return int(sum(np.prod(t.dims, dtype=np.int64) for t in graph.initializer))

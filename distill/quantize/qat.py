"""Quantization-aware training: int8 fake quantization in a trained torch model, trained on, and
exported as an ONNX QDQ graph that ONNX Runtime runs with int8 kernels.

- Weights: int8, symmetric, one scale per output channel, computed from the current weights at
  every step (so they follow training exactly).
- Activations: uint8, asymmetric, one range per Linear input. Ranges are calibrated (min / max)
  on task examples, then tracked during training as an exponential moving average of each batch's
  min / max (`momentum`), or kept frozen.
- Embedding tables (word, position, token type): uint8, asymmetric, one range per table, the way
  onnxruntime's quantizer stores a Gather's table (PTQ does the same); without them the word
  embeddings alone would keep most of the artifact in fp32.
- Gradients pass through the rounding (the straight-through estimator of torch's fake-quant ops).

Why by hand: torch's core ops `fake_quantize_per_tensor_affine` / `_per_channel_affine` export
to ONNX QuantizeLinear / DequantizeLinear pairs that ONNX Runtime fuses into int8 MatMuls
(MatMulIntegerToFloat); torchao's QAT targets int4 / ExecuTorch and exports no such graph, and
torch.ao.quantization's eager flow is deprecated and needs QuantStub rewrites of the model.
The attention's activation x activation matmuls stay fp32 (they sit inside transformers'
attention function, which has no module to wrap).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATION_QMIN, ACTIVATION_QMAX = 0, 255  # uint8: what ONNX Runtime's CPU int8 kernels take for activations
Mode = Literal["calibrate", "train", "frozen"]


def weight_qmax(reduce_range: bool) -> int:
    """127; 63 with reduce_range (7-bit weights: no saturation in u8 x s8 pair sums without VNNI)."""
    return 63 if reduce_range else 127


def weights_description(reduce_range: bool) -> str:
    """What a QAT record says about its weights: their bit width follows weight_qmax."""
    return f"int8, symmetric, per output channel, values within ±{weight_qmax(reduce_range)}" + (
        " (7 bits: reduce_range)" if reduce_range else "")


class FakeQuantLinear(nn.Module):
    """nn.Linear with fake-quantized input and weight. Keeps the wrapped layer's parameters under
    their own names (weight, bias), so state dicts and optimizers see the same tensors."""

    def __init__(self, linear: nn.Linear, *, momentum: float, reduce_range: bool = False):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.momentum = momentum
        self.qmax = weight_qmax(reduce_range)
        self.mode: Mode = "calibrate"
        self.register_buffer("input_min", torch.tensor(math.inf))
        self.register_buffer("input_max", torch.tensor(-math.inf))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, mode={self.mode}"

    def _observe(self, x: torch.Tensor) -> None:
        low, high = x.detach().min().float(), x.detach().max().float()
        if self.mode == "calibrate" or not torch.isfinite(self.input_min):
            self.input_min.copy_(torch.minimum(self.input_min, low))
            self.input_max.copy_(torch.maximum(self.input_max, high))
        else:  # tracked: an exponential moving average of the batches' ranges
            self.input_min.lerp_(low, self.momentum)
            self.input_max.lerp_(high, self.momentum)

    def input_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, zero point) of the uint8 input; the range always holds 0 (exact zero padding)."""
        low, high = torch.clamp(self.input_min, max=0.0), torch.clamp(self.input_max, min=0.0)
        scale = torch.clamp((high - low) / (ACTIVATION_QMAX - ACTIVATION_QMIN), min=1e-8)
        zero_point = torch.clamp(torch.round(ACTIVATION_QMIN - low / scale), ACTIVATION_QMIN, ACTIVATION_QMAX).to(torch.int32)
        return scale.reshape(()), zero_point.reshape(())

    def quantized_weight(self) -> torch.Tensor:
        scale = torch.clamp(self.weight.detach().abs().amax(dim=1).float() / self.qmax, min=1e-8)
        zero = torch.zeros_like(scale, dtype=torch.int32)
        # The int8 range, also for 7-bit weights: |w / scale| <= qmax already, so the values are the
        # same, and ONNX export accepts only (-128, 127) for int8 (not reduce_range's (-64, 63)).
        return torch.fake_quantize_per_channel_affine(self.weight.float(), scale, zero, 0, -128, 127)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fp32 inside, also under bf16 autocast: the fake-quant ops and the ranges are float32. The
        # output then takes autocast's dtype, as a plain Linear's would: models pick constants by
        # it (DeBERTa masks scores with finfo(query.dtype).min, which overflows bf16 if fp32).
        device = x.device.type
        output_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        output = self._fake_quant_linear(x)
        return output if output_dtype is None else output.to(output_dtype)

    def _fake_quant_linear(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            if self.mode == "calibrate" or (self.mode == "train" and self.training):
                self._observe(x)
            if self.mode == "calibrate":
                return F.linear(x, self.weight.float(), None if self.bias is None else self.bias.float())
            scale, zero_point = self.input_qparams()
            x = torch.fake_quantize_per_tensor_affine(x, scale, zero_point, ACTIVATION_QMIN, ACTIVATION_QMAX)
            return F.linear(x, self.quantized_weight(), None if self.bias is None else self.bias.float())


def table_qparams(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero point) of a uint8 table over its whole range, 0 included: what onnxruntime's
    quantizer computes for a Gather's initializer (asymmetric activation type, per tensor)."""
    low, high = torch.clamp(weight.detach().min().float(), max=0.0), torch.clamp(weight.detach().max().float(), min=0.0)
    scale = torch.clamp((high - low) / (ACTIVATION_QMAX - ACTIVATION_QMIN), min=1e-8)
    zero_point = torch.clamp(torch.round(ACTIVATION_QMIN - low / scale), ACTIVATION_QMIN, ACTIVATION_QMAX).to(torch.int32)
    return scale, zero_point


class FakeQuantEmbedding(nn.Module):
    """nn.Embedding whose table is fake-quantized to uint8 (one range, from the current weights
    at every step). Keeps the wrapped table under its own name (weight)."""

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        self.num_embeddings, self.embedding_dim = embedding.num_embeddings, embedding.embedding_dim
        self.padding_idx = embedding.padding_idx
        self.weight = embedding.weight

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, uint8 table"

    def quantized_weight(self) -> torch.Tensor:
        scale, zero_point = table_qparams(self.weight)
        return torch.fake_quantize_per_tensor_affine(self.weight.float(), scale, zero_point, ACTIVATION_QMIN, ACTIVATION_QMAX)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.quantized_weight(), self.padding_idx)


def insert_fake_quant(model: nn.Module, keep_fp32: list[str], *, momentum: float, reduce_range: bool = False,
                      embeddings: bool = True) -> list[str]:
    """Replace every nn.Linear not in `keep_fp32` (full dotted paths) by a FakeQuantLinear, and
    with `embeddings` every nn.Embedding by a FakeQuantEmbedding, in place; returns the paths
    replaced. Linear layers start in "calibrate" mode."""
    kept = set(keep_fp32)
    replaced = []
    for path, module in list(model.named_modules()):
        for name, child in list(module.named_children()):
            full = f"{path}.{name}" if path else name
            if isinstance(child, nn.Linear) and full not in kept:
                setattr(module, name, FakeQuantLinear(child, momentum=momentum, reduce_range=reduce_range))
                replaced.append(full)
            elif embeddings and isinstance(child, nn.Embedding) and full not in kept:
                setattr(module, name, FakeQuantEmbedding(child))
                replaced.append(full)
    return replaced


def fake_quant_layers(model: nn.Module) -> list[FakeQuantLinear]:
    return [m for m in model.modules() if isinstance(m, FakeQuantLinear)]


@contextmanager
def rounded_embedding_tables(model: nn.Module):
    """Each FakeQuantEmbedding as a plain nn.Embedding holding its rounded table, for the export:
    onnxruntime's quantizer then stores that table in uint8 with the same values (its range is
    the same), behind a Gather that reads 8-bit rows. A QDQ pair on the table instead would
    dequantize the whole vocabulary at every call."""
    swapped = []
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, FakeQuantEmbedding):
                plain = nn.Embedding(child.num_embeddings, child.embedding_dim, padding_idx=child.padding_idx)
                with torch.no_grad():
                    plain.weight.copy_(child.quantized_weight())
                setattr(module, name, plain)
                swapped.append((module, name, child))
    try:
        yield len(swapped)
    finally:
        for module, name, child in swapped:
            setattr(module, name, child)


def set_mode(model: nn.Module, mode: Mode) -> None:
    for layer in fake_quant_layers(model):
        layer.mode = mode


@torch.no_grad()
def calibrate(model: nn.Module, batches) -> int:
    """Min / max of every fake-quant layer's input over `batches` (dicts of model inputs); returns
    the number of examples seen. Leaves the model in "train" mode (ranges set, quantization on)."""
    set_mode(model, "calibrate")
    was_training = model.training
    model.eval()
    seen = 0
    for batch in batches:
        model(**batch)
        seen += batch["input_ids"].shape[0]
    model.train(was_training)
    unseen = [layer for layer in fake_quant_layers(model) if not torch.isfinite(layer.input_min)]
    if unseen:
        raise RuntimeError(f"{len(unseen)} quantized layers saw no input during calibration")
    set_mode(model, "train")
    return seen


def export_qat_onnx(model: nn.Module, tokenizer, out_dir, details: dict) -> dict:
    """The fake-quantized model as an ONNX Runtime folder (model.onnx in QDQ form, config,
    tokenizer, ort_config.json); returns `details` plus the kernel count of the graph ORT runs."""
    import json
    import tempfile
    from pathlib import Path

    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from distill.quantize.ort import EXPORTER, OPSET, export_onnx
    from distill.quantize.ort_session import ONNX_FILE, ORT_CONFIG_FILE, int8_kernel_report, ort_session_options, quiet_onnx_tools

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    set_mode(model, "frozen")
    model.eval()
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=".onnx-work-") as tmp:
        with rounded_embedding_tables(model) as tables:
            exported = export_onnx(model, Path(tmp) / "exported.onnx")
        if tables:  # only the Gathers: the matmuls are already in QDQ form
            with quiet_onnx_tools():
                quantize_dynamic(str(exported), str(Path(tmp) / "tables.onnx"), op_types_to_quantize=["Gather"],
                                 weight_type=QuantType.QInt8, extra_options={"ActivationSymmetric": False})
            exported = Path(tmp) / "tables.onnx"
        # ORT's basic (hardware-independent) optimizations fold each weight's QuantizeLinear into an
        # int8 initializer: a quarter of the size; the DequantizeLinear nodes stay for the int8 fusion.
        options = ort_session_options(1)
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(out_dir / ONNX_FILE)
        with quiet_onnx_tools():
            onnxruntime.InferenceSession(str(exported), options, providers=["CPUExecutionProvider"])
    model.config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    details = {**details, "kernels": int8_kernel_report(out_dir / ONNX_FILE)}
    record = {"exporter": EXPORTER, "opset": OPSET, "optimization": {"level": 1, "by": "onnxruntime (basic)"}, "quantization": details}
    (out_dir / ORT_CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return details

"""How much the task loss depends on each attention head and each FFN neuron.

Heads (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"): every head's context is
multiplied by a gate g_h = 1 before the attention output projection; the importance of a head is
the sum over batches of |dL/dg_h|, then normalised per layer by its L2 norm. FFN neurons: the same
gate on each intermediate activation a_i gives dL/dg_i = sum over tokens of a_i * dL/da_i, the
first-order Taylor estimate of the loss change when the neuron is removed (Molchanov et al. 2017).

The gates are our own forward hooks (transformers 5 has no `head_mask`), removed afterwards;
model weights get no gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from distill.models.families import family_of, submodule
from distill.pruning.structure import head_size, kept_heads, transformer_blocks

LossFn = Callable[[nn.Module, dict], torch.Tensor]


def _default_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """The model's own task loss (needs `labels` in the batch)."""
    return model(**batch).loss


def _head_gate_hook(gate: torch.Tensor, size: int):
    def hook(module, args):
        context = args[0]
        gated = context.unflatten(-1, (gate.numel(), size)) * gate.to(context.dtype)[:, None]
        return (gated.flatten(-2), *args[1:])

    return hook


def _neuron_gate_hook(gate: torch.Tensor):
    def hook(module, args):  # on ffn_out, whose input is the neurons' activations
        return (args[0] * gate.to(args[0].dtype), *args[1:])

    return hook


@contextmanager
def _frozen_eval(model: nn.Module):
    """Eval mode (no dropout: deterministic scores) and no weight gradients, restored afterwards."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def _sum_abs_gate_gradients(
    model: nn.Module, dataloader: Iterable[dict], gates: list[torch.Tensor], loss_fn: LossFn | None, max_batches: int | None
) -> list[torch.Tensor]:
    loss_fn = loss_fn or _default_loss
    device = next(model.parameters()).device
    totals = [torch.zeros_like(g) for g in gates]
    for i, batch in enumerate(dataloader):
        if max_batches is not None and i >= max_batches:
            break
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        grads = torch.autograd.grad(loss_fn(model, batch), gates, allow_unused=True)
        for total, grad in zip(totals, grads):
            if grad is not None:
                total += grad.abs()
    return totals


def head_importance(
    model: nn.Module,
    dataloader: Iterable[dict],
    *,
    max_batches: int | None = None,
    loss_fn: LossFn | None = None,
    normalize: bool = True,
) -> torch.Tensor:
    """Tensor[layers, heads] (original head indices): sum over batches of |dL/dgate|.

    Heads already removed are NaN. `normalize` divides each layer's scores by their L2 norm, as
    Michel et al. do before ranking heads across layers. `loss_fn(model, batch) -> scalar`
    defaults to the model's own loss on the batch's labels.
    """
    layers, family = transformer_blocks(model), family_of(model)
    kept, size = kept_heads(model), head_size(model)
    device = next(model.parameters()).device
    gates = [torch.ones(len(k), device=device, requires_grad=True) for k in kept]
    handles = [
        submodule(layer, family.attention_output).register_forward_pre_hook(_head_gate_hook(gate, size))
        for layer, gate in zip(layers, gates)
        if gate.numel()
    ]
    try:
        with _frozen_eval(model):
            sums = _sum_abs_gate_gradients(model, dataloader, gates, loss_fn, max_batches)
    finally:
        for handle in handles:
            handle.remove()
    scores = torch.full((len(layers), model.config.num_attention_heads), math.nan)
    for i, (heads, total) in enumerate(zip(kept, sums)):
        if heads:
            if normalize:
                total = total / (total.norm() + 1e-20)
            scores[i, heads] = total.detach().float().cpu()
    return scores


def ffn_importance(
    model: nn.Module,
    dataloader: Iterable[dict] | None = None,
    *,
    method: Literal["taylor", "magnitude"] = "taylor",
    max_batches: int | None = None,
    loss_fn: LossFn | None = None,
) -> list[torch.Tensor]:
    """Per layer, one score per current intermediate neuron (higher = keep).

    `taylor`: sum over batches of |sum over tokens of activation x gradient| (needs data).
    `magnitude`: the L2 norm of the neuron's input row times that of its output column (no data).
    """
    layers, family = transformer_blocks(model), family_of(model)
    ffn_out = [submodule(layer, family.ffn_out) for layer in layers]
    if method == "magnitude":
        return [_input_row_norms(submodule(layer, family.ffn_in), family.ffn_gated) * out.weight.norm(dim=0).detach().float().cpu()
                for layer, out in zip(layers, ffn_out)]
    if method != "taylor":
        raise ValueError(f"method: expected 'taylor' or 'magnitude', got {method!r}")
    if dataloader is None:
        raise ValueError("ffn_importance(method='taylor') needs a dataloader")
    device = next(model.parameters()).device
    gates = [torch.ones(out.in_features, device=device, requires_grad=True) for out in ffn_out]
    handles = [out.register_forward_pre_hook(_neuron_gate_hook(gate)) for out, gate in zip(ffn_out, gates)]
    try:
        with _frozen_eval(model):
            sums = _sum_abs_gate_gradients(model, dataloader, gates, loss_fn, max_batches)
    finally:
        for handle in handles:
            handle.remove()
    return [total.detach().float().cpu() for total in sums]


def _input_row_norms(ffn_in: nn.Linear, gated: bool) -> torch.Tensor:
    """Each neuron's input-weight norm; a gated neuron's up and gate rows count together."""
    rows = ffn_in.weight.detach().float()
    if gated:
        up, gate = rows.chunk(2, dim=0)
        return torch.cat([up, gate], dim=1).norm(dim=1).cpu()
    return rows.norm(dim=1).cpu()

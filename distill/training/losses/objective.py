"""`DistillationLoss`: the weighted sum of the terms a recipe's `loss:` asks for, bound to a
student / teacher pair (hidden sizes, layer counts, layer map)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
from torch import Tensor

from distill import DistillError
from distill.training.losses.logits import hard_label_loss, soft_target_kl, soft_target_mse
from distill.training.losses.masks import labelled_positions
from distill.training.losses.representations import attention_kl, default_layer_map, hidden_cosine, hidden_mse


@dataclass
class LossWeights:
    """Weights of the distillation terms and the softmax temperature.

    Defaults are DistilBERT's (Sanh et al. 2019, `train.py`): alpha_ce=5.0 -> ``alpha_kd``,
    alpha_mlm=2.0 -> ``alpha_hard`` (for task distillation the MLM term becomes the gold-label
    loss), alpha_cos=1.0, temperature=2.0. TinyBERT's hidden-state and MiniLM's attention terms
    are off by default.
    """

    temperature: float = 2.0
    alpha_kd: float = 5.0
    alpha_hard: float = 2.0
    alpha_cos: float = 1.0
    alpha_hidden: float = 0.0
    alpha_attention: float = 0.0

    def validate(self, prefix: str = "distill.loss") -> None:
        """Raise DistillError naming the offending field (``<prefix>.<field>``)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DistillError(f"{prefix}.{f.name}: must be a number, got {value!r}")
            if not math.isfinite(value):
                raise DistillError(f"{prefix}.{f.name}: must be finite, got {value}")
        if not self.temperature > 0:
            raise DistillError(f"{prefix}.temperature: must be > 0, got {self.temperature}")
        alphas = [f.name for f in fields(self) if f.name.startswith("alpha_")]
        for name in alphas:
            if getattr(self, name) < 0:
                raise DistillError(f"{prefix}.{name}: must be >= 0, got {getattr(self, name)}")
        if all(getattr(self, name) == 0 for name in alphas):
            raise DistillError(
                f"{prefix}: all loss weights ({', '.join(alphas)}) are 0; at least one must be > 0"
            )


def _get(output, name: str):
    if isinstance(output, dict):
        return output.get(name)
    return getattr(output, name, None)


def _device_type(output) -> str:
    for name in ("logits", "hidden_states", "attentions"):
        value = _get(output, name)
        if isinstance(value, (tuple, list)):
            value = value[-1] if value else None
        if isinstance(value, Tensor):
            return value.device.type
    return "cpu"


class DistillationLoss(nn.Module):
    """Weighted sum of the distillation terms.

    Args:
        weights: term weights and temperature (validated here; DistillError on bad values).
        is_regression: single-output regression task (STS-B): KD uses MSE, hard loss uses MSE.
        layer_map: see the module docstring; None = uniform last-to-last map.
        student_hidden_size / teacher_hidden_size: when they differ and alpha_hidden > 0 or
            alpha_cos > 0, learned ``nn.Linear(student, teacher)`` projections are created
            (trainable parameters of this module: give ``loss.parameters()`` to the optimizer).
        n_student_layers / n_teacher_layers: optional layer counts (``config.num_hidden_layers``).
            When given, ``layer_map`` is resolved and checked here, at construction. When not
            given, the map is resolved at the first forward from the length of the
            ``hidden_states`` tuples. Every forward checks the map against the actual tuples.
            The per-layer hidden projections (sizes differ and alpha_hidden > 0) must exist before
            the optimizer is built, so that case needs ``layer_map`` or ``n_student_layers``.

    Projections: ``hidden_projections[0]`` maps the student's embeddings, ``hidden_projections[i+1]``
    student layer i; ``cos_projection`` maps the student's last hidden state for the cosine term.
    """

    TERMS = ("kd", "hard", "cos", "hidden", "attention")

    def __init__(
        self,
        weights: LossWeights,
        *,
        is_regression: bool,
        layer_map: list[int] | None,
        student_hidden_size: int,
        teacher_hidden_size: int,
        n_student_layers: int | None = None,
        n_teacher_layers: int | None = None,
    ):
        super().__init__()
        weights.validate()
        self.weights = weights
        self.is_regression = bool(is_regression)
        self.student_hidden_size = int(student_hidden_size)
        self.teacher_hidden_size = int(teacher_hidden_size)
        self.n_student_layers = n_student_layers
        self.n_teacher_layers = n_teacher_layers

        if layer_map is not None:
            if isinstance(layer_map, (str, bytes)) or not isinstance(layer_map, Sequence) or not layer_map:
                raise DistillError(f"distill.loss.layer_map: must be a non-empty list of ints, got {layer_map!r}")
            for i, idx in enumerate(layer_map):
                if isinstance(idx, bool) or not isinstance(idx, int) or idx < 1:
                    raise DistillError(
                        f"distill.loss.layer_map[{i}]: must be an int >= 1 (a teacher layer; 0, the "
                        f"embeddings, is always paired implicitly), got {idx!r}"
                    )
            layer_map = list(layer_map)
            if n_student_layers is not None and len(layer_map) != n_student_layers:
                raise DistillError(
                    f"distill.loss.layer_map: has {len(layer_map)} entries but the student has "
                    f"{n_student_layers} layers"
                )
            if n_teacher_layers is not None and max(layer_map) > n_teacher_layers:
                raise DistillError(
                    f"distill.loss.layer_map: index {max(layer_map)} is beyond the teacher's "
                    f"{n_teacher_layers} layers"
                )
        elif n_student_layers is not None and n_teacher_layers is not None:
            layer_map = default_layer_map(n_student_layers, n_teacher_layers)
        self.layer_map: list[int] | None = layer_map

        differ = self.student_hidden_size != self.teacher_hidden_size
        self.cos_projection: nn.Linear | None = None
        self.hidden_projections: nn.ModuleList | None = None
        if differ and weights.alpha_cos > 0:
            self.cos_projection = nn.Linear(self.student_hidden_size, self.teacher_hidden_size)
        if differ and weights.alpha_hidden > 0:
            n_student = len(layer_map) if layer_map is not None else n_student_layers
            if n_student is None:
                raise DistillError(
                    "distill.loss.layer_map: hidden sizes differ "
                    f"({self.student_hidden_size} vs {self.teacher_hidden_size}) and alpha_hidden > 0, "
                    "so per-layer projections are needed before training starts: give layer_map "
                    "or n_student_layers"
                )
            self.hidden_projections = nn.ModuleList(
                nn.Linear(self.student_hidden_size, self.teacher_hidden_size) for _ in range(n_student + 1)
            )

    # ------------------------------------------------------------------ caller hints
    @property
    def needs_hidden_states(self) -> bool:
        return self.weights.alpha_cos > 0 or self.weights.alpha_hidden > 0

    @property
    def needs_attentions(self) -> bool:
        return self.weights.alpha_attention > 0

    def active_terms(self) -> list[str]:
        w = self.weights
        values = {"kd": w.alpha_kd, "hard": w.alpha_hard, "cos": w.alpha_cos, "hidden": w.alpha_hidden,
                  "attention": w.alpha_attention}
        return [name for name in self.TERMS if values[name] > 0]

    # ------------------------------------------------------------------ layer map
    def resolve_layer_map(self, n_student_layers: int, n_teacher_layers: int) -> list[int]:
        """The layer map for these layer counts, checked (DistillError on mismatch)."""
        if self.layer_map is None:
            self.layer_map = default_layer_map(n_student_layers, n_teacher_layers)
        if len(self.layer_map) != n_student_layers:
            raise DistillError(
                f"distill.loss.layer_map: has {len(self.layer_map)} entries but the student has "
                f"{n_student_layers} layers"
            )
        if max(self.layer_map) > n_teacher_layers:
            raise DistillError(
                f"distill.loss.layer_map: index {max(self.layer_map)} is beyond the teacher's "
                f"{n_teacher_layers} layers"
            )
        return self.layer_map

    # ------------------------------------------------------------------ forward
    def forward(self, student_out, teacher_out, labels: Tensor | None, attention_mask: Tensor | None):
        """Returns ``(total, values)``: ``values`` holds each computed term's unweighted value
        ("kd", "hard", "cos", "hidden", "attention" for weights > 0) and "loss" (the total) as
        python floats. Teacher tensors are detached."""
        # Losses in float32 even under (bf16) autocast: the projections too.
        with torch.autocast(device_type=_device_type(student_out), enabled=False):
            return self._forward(student_out, teacher_out, labels, attention_mask)

    def _forward(self, student_out, teacher_out, labels, attention_mask):
        w = self.weights
        terms: dict[str, Tensor] = {}

        if w.alpha_kd > 0 or w.alpha_hard > 0:
            s_logits = _get(student_out, "logits")
            if s_logits is None:
                raise DistillError("student output has no logits")
        if w.alpha_kd > 0:
            t_logits = _get(teacher_out, "logits")
            if t_logits is None:
                raise DistillError("teacher output has no logits (needed by distill.loss.alpha_kd)")
            t_logits = t_logits.detach()
            if s_logits.dim() == 3:  # token classification: soft targets at every labelled token
                scored = labelled_positions(s_logits, labels, attention_mask)
                s_kd, t_kd = s_logits[scored], t_logits[scored]
            else:
                s_kd, t_kd = s_logits, t_logits
            if s_kd.numel() == 0:  # no labelled token in this batch: nothing to match
                terms["kd"] = s_logits.float().sum() * 0.0
            elif self.is_regression:
                terms["kd"] = soft_target_mse(s_kd, t_kd)
            else:
                terms["kd"] = soft_target_kl(s_kd, t_kd, w.temperature)
        if w.alpha_hard > 0:
            if labels is None:
                raise DistillError(
                    "distill.loss.alpha_hard: is > 0 but the batch has no labels "
                    "(set alpha_hard=0 for unlabeled data)"
                )
            terms["hard"] = hard_label_loss(s_logits, labels, self.is_regression)

        if self.needs_hidden_states:
            s_hs = _get(student_out, "hidden_states")
            t_hs = _get(teacher_out, "hidden_states")
            if s_hs is None or t_hs is None:
                raise DistillError(
                    "hidden states missing: run student and teacher with output_hidden_states=True "
                    "(needed by distill.loss.alpha_cos / alpha_hidden)"
                )
            if w.alpha_cos > 0:
                s_last = s_hs[-1].float()
                if self.cos_projection is not None:
                    s_last = self.cos_projection(s_last)
                terms["cos"] = hidden_cosine(s_last, t_hs[-1].detach(), attention_mask)
            if w.alpha_hidden > 0:
                layer_map = self.resolve_layer_map(len(s_hs) - 1, len(t_hs) - 1)
                s_sel = [s_hs[0]] + [s_hs[i + 1] for i in range(len(layer_map))]
                t_sel = [t_hs[0].detach()] + [t_hs[j].detach() for j in layer_map]
                projections = list(self.hidden_projections) if self.hidden_projections is not None else None
                terms["hidden"] = hidden_mse(s_sel, t_sel, attention_mask, projections)

        if w.alpha_attention > 0:
            s_att = _get(student_out, "attentions")
            t_att = _get(teacher_out, "attentions")
            # 4.x gives None per layer without eager attention, 5.x an empty tuple (SDPA returns no maps)
            if not s_att or not t_att or any(a is None for a in (*s_att, *t_att)):
                raise DistillError(
                    "attentions missing: run student and teacher with output_attentions=True and "
                    'attn_implementation="eager" (needed by distill.loss.alpha_attention)'
                )
            layer_map = self.resolve_layer_map(len(s_att), len(t_att))
            s_sel = [s_att[i] for i in range(len(layer_map))]
            t_sel = [t_att[j - 1].detach() for j in layer_map]
            terms["attention"] = attention_kl(s_sel, t_sel, attention_mask)

        alpha = {"kd": w.alpha_kd, "hard": w.alpha_hard, "cos": w.alpha_cos, "hidden": w.alpha_hidden,
                 "attention": w.alpha_attention}
        total = None
        for name, value in terms.items():
            contribution = alpha[name] * value
            total = contribution if total is None else total + contribution
        values = {name: float(value.detach().item()) for name, value in terms.items()}
        values["loss"] = float(total.detach().item())
        return total, values

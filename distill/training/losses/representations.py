"""Terms on the encoder's inner representations: DistilBERT's hidden cosine, TinyBERT's hidden
MSE (with a projection when sizes differ) and MiniLM's attention KL; and the default layer map."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from distill import DistillError
from distill.training.losses.masks import token_mask, valid_count

# Smallest probability used inside log(): attention probabilities of masked keys are exactly 0.
_PROB_EPS = 1e-12


def hidden_cosine(student_hidden: Tensor, teacher_hidden: Tensor, attention_mask: Tensor | None) -> Tensor:
    """DistilBERT's cosine-embedding loss: mean over non-padded tokens of 1 - cos(s, t).

    ``student_hidden`` / ``teacher_hidden`` are [B, L, D] with the same D (project first when
    sizes differ); ``attention_mask`` is [B, L] with 1 for real tokens (None: all count).
    """
    if student_hidden.shape != teacher_hidden.shape:
        raise DistillError(
            f"hidden states: student shape {tuple(student_hidden.shape)} != teacher shape "
            f"{tuple(teacher_hidden.shape)} (hidden sizes must match after projection)"
        )
    b, length, _ = student_hidden.shape
    mask = token_mask(attention_mask, b, length, student_hidden.device)
    cos = F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1, eps=1e-8)
    return ((1.0 - cos) * mask).sum() / valid_count(mask)


def hidden_mse(
    student_hiddens: Sequence[Tensor],
    teacher_hiddens: Sequence[Tensor],
    attention_mask: Tensor | None,
    projections: Sequence[nn.Module | None] | None = None,
) -> Tensor:
    """TinyBERT's hidden-state loss: MSE between already-paired hidden states.

    For each pair (s [B, L, Ds], t [B, L, Dt]) the optional ``projections[k]`` maps s to Dt; the
    pair's loss is the mean squared error over the elements of non-padded tokens only
    (sum over real tokens and dims / (n_real_tokens * Dt)). The result is the mean over pairs.
    """
    if len(student_hiddens) != len(teacher_hiddens):
        raise DistillError(
            f"hidden_mse: {len(student_hiddens)} student hidden states vs "
            f"{len(teacher_hiddens)} teacher hidden states (pairs must align)"
        )
    if not student_hiddens:
        raise DistillError("hidden_mse: no hidden-state pairs given")
    if projections is not None and len(projections) != len(student_hiddens):
        raise DistillError(
            f"hidden_mse: {len(projections)} projections for {len(student_hiddens)} pairs"
        )
    total = None
    for k, (s, t) in enumerate(zip(student_hiddens, teacher_hiddens)):
        s = s.float()
        t = t.float()
        proj = projections[k] if projections is not None else None
        if proj is not None:
            s = proj(s).float()
        if s.shape != t.shape:
            raise DistillError(
                f"hidden states (pair {k}): student shape {tuple(s.shape)} != teacher shape "
                f"{tuple(t.shape)} (give a projection when hidden sizes differ)"
            )
        b, length, dim = t.shape
        mask = token_mask(attention_mask, b, length, t.device)
        sq = ((s - t) ** 2).sum(dim=-1)  # [B, L]
        pair_loss = (sq * mask).sum() / (valid_count(mask) * dim)
        total = pair_loss if total is None else total + pair_loss
    return total / len(student_hiddens)


def attention_kl(
    student_attentions: Sequence[Tensor],
    teacher_attentions: Sequence[Tensor],
    attention_mask: Tensor | None,
) -> Tensor:
    """MiniLM-style KL(teacher attention || student attention) per head and query row.

    Inputs are post-softmax attention probabilities [B, H, L, L], already paired (same-length
    sequences). Rows of padded queries are excluded; the result is the mean over
    (pairs, batch, heads, valid query rows). Probabilities are clamped before log() so that
    exact zeros (masked keys) do not produce inf/nan.
    """
    if len(student_attentions) != len(teacher_attentions):
        raise DistillError(
            f"attention_kl: {len(student_attentions)} student attention maps vs "
            f"{len(teacher_attentions)} teacher attention maps (pairs must align)"
        )
    if not student_attentions:
        raise DistillError("attention_kl: no attention pairs given")
    total = None
    for k, (s, t) in enumerate(zip(student_attentions, teacher_attentions)):
        if s is None or t is None:
            raise DistillError(
                "attention_kl: attention maps are None; run the models with output_attentions=True "
                'and attn_implementation="eager"'
            )
        if s.shape[1] != t.shape[1]:
            raise DistillError(
                f"distill.loss.alpha_attention: student has {s.shape[1]} attention heads but the "
                f"teacher has {t.shape[1]}; use alpha_attention=0 or a student with the same "
                f"head count"
            )
        if s.shape != t.shape:
            raise DistillError(
                f"attentions (pair {k}): student shape {tuple(s.shape)} != teacher shape "
                f"{tuple(t.shape)}"
            )
        s = s.float()
        t = t.float()
        b, h, length, _ = t.shape
        # KL per row: sum_j t_j * (log t_j - log s_j); t_j == 0 contributes 0.
        kl_rows = (t * (t.clamp(min=_PROB_EPS).log() - s.clamp(min=_PROB_EPS).log())).sum(dim=-1)  # [B, H, L]
        mask = token_mask(attention_mask, b, length, t.device)  # [B, L] over query positions
        row_mask = mask[:, None, :].expand(b, h, length)
        pair_loss = (kl_rows * row_mask).sum() / valid_count(row_mask)
        total = pair_loss if total is None else total + pair_loss
    return total / len(student_attentions)


def default_layer_map(n_student_layers: int, n_teacher_layers: int) -> list[int]:
    """Uniform, last-to-last map: student layer i -> teacher hidden_states index
    ``round((i + 1) * n_teacher / n_student)`` (at least 1). 3 of 6 -> [2, 4, 6]; 6 of 12 ->
    [2, 4, 6, 8, 10, 12]. Python's round() (half to even) is used."""
    if n_student_layers < 1 or n_teacher_layers < 1:
        raise DistillError(
            f"layer counts must be >= 1 (student {n_student_layers}, teacher {n_teacher_layers})"
        )
    return [
        min(n_teacher_layers, max(1, round((i + 1) * n_teacher_layers / n_student_layers)))
        for i in range(n_student_layers)
    ]

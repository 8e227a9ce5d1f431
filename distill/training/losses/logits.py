"""Terms on the output logits: soft targets (KL at temperature T, or MSE for regression) and
the hard-label loss."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from distill import DistillError
from distill.data.tasks import IGNORE_INDEX


def soft_target_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """KL(softmax(t/T) || softmax(s/T)) * T**2, averaged over the batch ("batchmean").

    Logits are [B, C] (or [..., C]: all leading dimensions count as the batch). The T**2 factor
    keeps the gradient scale independent of T (Hinton et al. 2015), as in DistilBERT.
    """
    if not temperature > 0:
        raise DistillError(f"distill.loss.temperature: must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise DistillError(
            f"logits: student shape {tuple(student_logits.shape)} != teacher shape "
            f"{tuple(teacher_logits.shape)} (do teacher and student have the same num_labels?)"
        )
    n_classes = student_logits.shape[-1]
    s = student_logits.float().reshape(-1, n_classes) / temperature
    t = teacher_logits.float().reshape(-1, n_classes) / temperature
    kl = F.kl_div(F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1), reduction="batchmean", log_target=True)
    return kl * (temperature**2)


def soft_target_mse(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Regression counterpart of `soft_target_kl` (e.g. STS-B): MSE between raw outputs."""
    if student_logits.shape != teacher_logits.shape:
        raise DistillError(
            f"logits: student shape {tuple(student_logits.shape)} != teacher shape "
            f"{tuple(teacher_logits.shape)}"
        )
    return F.mse_loss(student_logits.float(), teacher_logits.float())


def hard_label_loss(student_logits: Tensor, labels: Tensor, is_regression: bool) -> Tensor:
    """Cross-entropy against gold labels, or MSE on ``logits.squeeze(-1)`` for regression.
    Token classification ([B, L, C] logits, [B, L] labels): the mean over labelled tokens; -100
    marks the positions without a label (later sub-tokens, special tokens, padding). Inputs
    without a label (a transfer set's: -100, or NaN for regression) are left out of the mean."""
    if is_regression:
        predictions, targets = student_logits.float().squeeze(-1), labels.float().reshape(-1)
        known = ~targets.isnan()  # NaN: an input without a label (a transfer-set row)
        return F.mse_loss(predictions[known], targets[known]) if known.any() else predictions.sum() * 0.0
    if student_logits.dim() == 3:
        student_logits, labels = student_logits.flatten(0, 1), labels.reshape(-1)
    if not (labels != IGNORE_INDEX).any():  # no labelled input or token in the batch
        return student_logits.float().sum() * 0.0
    return F.cross_entropy(student_logits.float(), labels.long(), ignore_index=IGNORE_INDEX)

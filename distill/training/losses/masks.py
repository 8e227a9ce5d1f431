"""Which positions a loss term reads: real tokens (the attention mask), or labelled ones
(token classification)."""

from __future__ import annotations

import torch
from torch import Tensor

from distill import DistillError
from distill.data.tasks import IGNORE_INDEX


def token_mask(attention_mask: Tensor | None, batch: int, length: int, device) -> Tensor:
    """[B, L] float32 mask of real (non-padded) tokens; all ones when no mask is given."""
    if attention_mask is None:
        return torch.ones(batch, length, dtype=torch.float32, device=device)
    if tuple(attention_mask.shape) != (batch, length):
        raise DistillError(
            f"attention_mask: shape {tuple(attention_mask.shape)} does not match the "
            f"hidden states' [batch, length] = {(batch, length)}"
        )
    return (attention_mask.to(device) > 0).float()


def valid_count(mask: Tensor) -> Tensor:
    # A batch where every token is padding would divide by zero; clamp to 1 so the loss is 0.
    return mask.sum().clamp(min=1.0)


def labelled_positions(logits: Tensor, labels: Tensor | None, attention_mask: Tensor | None) -> Tensor:
    """[B, L] bool mask of the tokens a per-token soft target applies to: those with a label, or
    without labels every real token."""
    if labels is not None:
        return labels != IGNORE_INDEX
    batch, length = logits.shape[:2]
    return token_mask(attention_mask, batch, length, logits.device) > 0

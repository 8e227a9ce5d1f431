"""Dynamic masking (transformers' DataCollatorForLanguageModeling: 15 %, 80/10/10) and perplexity
on held-out blocks masked once with a fixed seed, so every model is measured on the same masks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers import DataCollatorForLanguageModeling

from distill.errors import DistillError
from distill.general.loss import mlm_forward


def mlm_collator(tokenizer, mlm_probability: float = 0.15, seed: int | None = None) -> DataCollatorForLanguageModeling:
    """Fresh masks every time a block is batched. seed=None draws from torch's global RNG (which
    set_seed and training checkpoints control); a seed gives the collator its own generator."""
    if tokenizer.mask_token is None:
        raise DistillError(f"tokenizer {type(tokenizer).__name__} has no mask token: it cannot be used for masked-LM training")
    return DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=mlm_probability,
                                           mask_replace_prob=0.8, random_replace_prob=0.1, seed=seed)


def fixed_mask_batches(blocks, tokenizer, *, mlm_probability: float, seed: int, batch_size: int) -> list[dict]:
    """The held-out blocks masked once, all together (so the masks depend on the blocks and the
    seed only, not on the batch size), then cut into batches."""
    collate = mlm_collator(tokenizer, mlm_probability, seed=seed)
    masked = collate([{"input_ids": ids} for ids in blocks["input_ids"]])
    n = masked["input_ids"].shape[0]
    return [{k: v[i : i + batch_size] for k, v in masked.items()} for i in range(0, n, batch_size)]


@torch.no_grad()
def masked_perplexity(model, batches: list[dict]) -> dict[str, float]:
    """exp(mean cross-entropy over the masked tokens of all batches)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in batches:
        labels = batch["labels"].to(device)
        inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        masked = labels != -100
        logits, _ = mlm_forward(model, inputs, masked)
        total += F.cross_entropy(logits.float(), labels[masked], reduction="sum").item()
        count += int(masked.sum())
    model.train(was_training)
    if count == 0:
        raise DistillError("corpus.holdout_blocks: no token of the held-out blocks was masked")
    mean = total / count
    return {"perplexity": math.exp(min(mean, 700.0)), "mlm_loss": mean, "masked_tokens": count}

"""Dynamic masking (transformers' DataCollatorForLanguageModeling: 15 %, 80/10/10), and held-out
blocks masked once with a fixed seed, so every model's perplexity is measured on the same masks
(distill.training.mlm.masked_perplexity)."""

from __future__ import annotations

from transformers import DataCollatorForLanguageModeling

from distill import DistillError


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



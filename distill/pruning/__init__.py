"""Structured pruning: remove whole attention heads and FFN neurons, physically.

    scores = head_importance(model, dataloader, max_batches=32)   # Michel et al. 2019 gates
    prune_heads(model, select_heads(scores, 0.5))                   # 50 % of all heads, globally
    prune_ffn(model, select_neurons(ffn_importance(model, dataloader), 0.25,
                                    original_size=model.config.intermediate_size))
    model.save_pretrained(folder)         # the pruning map travels in config.json
    model = load_pruned(folder)           # re-applies it (any transformers version)

What reloads where (transformers 4.57):
- Heads removed but every layer keeps one, and FFN sizes uniform (a standard, smaller
  `intermediate_size`): plain `from_pretrained` and `pipeline("text-classification", model=DIR)`
  rebuild it natively from `config.pruned_heads`. `load_pruned` too.
- A layer with no heads left, or per-layer FFN sizes: only `load_pruned` (native loading either
  fails on the shapes or builds a 0-head layer whose forward fails). Use
  `pipeline("text-classification", model=load_pruned(DIR), tokenizer=DIR)`.
  `loads_natively(model_or_config)` tells which case a model is.
- transformers 5 has no `pruned_heads`: only `load_pruned` rebuilds pruned heads there.
"""

from distill.pruning.importance import ffn_importance, head_importance
from distill.pruning.loading import load_pruned
from distill.pruning.selection import heads_from_lists, select_heads, select_neurons
from distill.pruning.structure import (
    PRUNING_KEY,
    kept_heads,
    intermediate_sizes,
    loads_natively,
    prune_ffn,
    prune_heads,
    pruning_counts,
)

__all__ = [
    "PRUNING_KEY",
    "ffn_importance",
    "head_importance",
    "heads_from_lists",
    "intermediate_sizes",
    "kept_heads",
    "load_pruned",
    "loads_natively",
    "prune_ffn",
    "prune_heads",
    "pruning_counts",
    "select_heads",
    "select_neurons",
]

"""Structured pruning: remove whole attention heads, FFN neurons and layers, physically.

    scores = head_importance(model, dataloader, max_batches=32)   # Michel et al. 2019 gates
    prune_heads(model, select_heads(scores, 0.5))                   # 50 % of all heads, globally
    prune_ffn(model, select_neurons(ffn_importance(model, dataloader), 0.25,
                                    original_size=original_intermediate_size(model)))
    remove_layers(model, [0, 2, 3])       # layers to keep; last: the plans above name current layers
    model.save_pretrained(folder)         # the pruning map travels in config.json
    model = load_pruned(folder)           # re-applies it (any transformers version)

What reloads where (`loads_natively(model_or_config)` tells, for the installed stack):
- FFN neurons removed uniformly (a standard, smaller `intermediate_size`), heads untouched:
  plain `from_pretrained` and `pipeline("text-classification", model=DIR)`, on 4.57 and 5.x.
- Heads removed but every layer keeps one, FFN sizes uniform: natively on 4.57 only (it rebuilds
  them from `config.pruned_heads`). transformers 5 has no `pruned_heads` and its head size is
  hidden_size / num_attention_heads, so there `from_pretrained` refuses the folder (size mismatch).
- A layer with no heads left, or per-layer FFN sizes: `load_pruned` only (native loading fails on
  the shapes or builds a 0-head layer whose forward fails).
- Layers removed: natively on both stacks as far as the rest allows, unless a kept block's
  position-dependent part differs from a native one's (ModernBERT: a first kept layer other than the
  original first keeps its attn_norm; on 4.57 also kinds that its index would not give).
Whenever native loading cannot, use `pipeline("text-classification", model=load_pruned(DIR), tokenizer=DIR)`.
"""

from distill.pruning.importance import ffn_importance, head_importance
from distill.pruning.layers import remove_layers
from distill.pruning.loading import load_pruned
from distill.pruning.selection import heads_from_lists, select_heads, select_neurons
from distill.pruning.structure import (
    PRUNING_KEY,
    intermediate_sizes,
    kept_heads,
    kept_layers,
    loads_natively,
    original_intermediate_size,
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
    "kept_layers",
    "load_pruned",
    "loads_natively",
    "original_intermediate_size",
    "prune_ffn",
    "prune_heads",
    "pruning_counts",
    "remove_layers",
    "select_heads",
    "select_neurons",
]

"""Which heads and neurons to remove, from importance scores and a target share.

Shares are cumulative and relative to the ORIGINAL model: asking for 50 % of heads on a model
that already lost 25 % removes the next 25 %. That is what an iterative schedule
(25 % -> 50 % with recovery in between) needs, and what the report's `*_pruned / *_total` shows.
"""

from __future__ import annotations

from typing import Literal

import torch

from distill import DistillError


def _check_share(share: float, name: str) -> None:
    if not 0 <= share < 1:
        raise DistillError(f"{name}: must be in [0, 1) (got {share})")


def select_heads(
    importance: torch.Tensor,
    share: float,
    *,
    scope: Literal["global", "layer"] = "global",
    min_per_layer: int = 0,
) -> dict[int, list[int]]:
    """Heads to remove so that `share` of all heads are gone: the lowest-scoring ones across
    all layers (`global`, Michel et al.) or `share` of each layer's heads (`layer`).

    `importance` is `head_importance`'s [layers, heads] tensor (NaN = already removed). Every
    layer keeps at least `min_per_layer` heads, which can leave fewer removed than asked.
    Returns {layer: [original head indices]} of heads to remove now (already removed ones excluded).
    """
    _check_share(share, "heads.share")
    n_layers, n_heads = importance.shape
    removed = torch.isnan(importance)
    alive = (~removed).sum(dim=1).tolist()
    plan: dict[int, list[int]] = {}

    def take(layer: int, head: int) -> None:
        plan.setdefault(layer, []).append(head)
        alive[layer] -= 1

    if scope == "layer":
        target = round(share * n_heads)
        for layer in range(n_layers):
            order = [h for h in importance[layer].argsort().tolist() if not removed[layer, h]]
            for head in order[: max(0, min(target - int(removed[layer].sum()), alive[layer] - min_per_layer))]:
                take(layer, head)
    elif scope == "global":
        needed = round(share * n_layers * n_heads) - int(removed.sum())
        candidates = sorted(
            ((importance[l, h].item(), l, h) for l in range(n_layers) for h in range(n_heads) if not removed[l, h]),
        )
        for _, layer, head in candidates:
            if needed <= 0:
                break
            if alive[layer] > min_per_layer:
                take(layer, head)
                needed -= 1
    else:
        raise DistillError(f"heads.scope: expected 'global' or 'layer', got {scope!r}")
    return {layer: sorted(heads) for layer, heads in plan.items()}


def select_neurons(
    importance: list[torch.Tensor],
    share: float,
    *,
    original_size: int,
    scope: Literal["layer", "global"] = "layer",
) -> list[list[int]]:
    """Per layer, the current neuron positions to KEEP so that `share` of the original
    `original_size` neurons per layer are gone: the same count from each layer (`layer`: a
    uniform size, so a standard config) or the lowest scores across layers (`global`: per-layer
    sizes). Every layer keeps at least one neuron."""
    _check_share(share, "ffn.share")
    sizes = [len(scores) for scores in importance]
    if scope == "layer":
        target = max(1, original_size - round(share * original_size))
        keep_counts = [min(size, target) for size in sizes]
    elif scope == "global":
        needed = round(share * original_size * len(sizes)) - (original_size * len(sizes) - sum(sizes))
        keep_counts = list(sizes)
        candidates = sorted((scores[i].item(), layer, i) for layer, scores in enumerate(importance) for i in range(len(scores)))
        for _, layer, _ in candidates:
            if needed <= 0:
                break
            if keep_counts[layer] > 1:
                keep_counts[layer] -= 1
                needed -= 1
    else:
        raise DistillError(f"ffn.scope: expected 'layer' or 'global', got {scope!r}")
    # Keep the highest-scoring neurons, in their original order.
    return [sorted(scores.argsort(descending=True)[:count].tolist()) for scores, count in zip(importance, keep_counts)]


def heads_from_lists(per_layer: dict[int, list[int]], n_layers: int, n_heads: int, field: str) -> dict[int, list[int]]:
    """Check an explicit {layer: [heads]} removal list against the model; errors name `field`."""
    for layer, heads in per_layer.items():
        if not 0 <= layer < n_layers:
            raise DistillError(f"{field}: layer {layer} out of range; the model has layers 0..{n_layers - 1}")
        bad = [h for h in heads if not 0 <= h < n_heads]
        if bad:
            raise DistillError(f"{field}[{layer}]: head {bad[0]} out of range; the model has heads 0..{n_heads - 1}")
    return {layer: sorted(set(heads)) for layer, heads in per_layer.items()}

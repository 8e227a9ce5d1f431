"""Search for the pruned shape that meets a latency budget while keeping the most importance.

    model = fit_latency_model(shapes, measured_ms)       # shapes from calibration_shapes(12, 12, 3072)
    budget = budget_from_target(teacher_ms, speedup=15)
    best = propose_shapes(head_importance(...), ffn_importance(...), model, budget)[0]
    prune_heads(student, heads_to_remove(best.shape, 12)); prune_ffn(student, neurons_to_keep(best.shape, scores))
    remove_layers(student, best.shape.layers)                # last: the plans above use the current indices

Pure functions: measuring latency belongs to the caller. Layer indices are the rows of the
importance scores (the model's current layers), heads their original indices, FFN neurons their
current positions (what `prune_ffn` takes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.optimize import nnls

from distill import DistillError

MIN_FIT_SHAPES = 4  # one per coefficient: intercept, per layer, per head, per neuron
KEEP_SHARES = tuple(round(1 - i / 20, 2) for i in range(21))  # 1.0, 0.95, ..., 0.0 (0 = the per-layer minimum)


@dataclass(frozen=True)
class Shape:
    """What a pruned model keeps: `layers` (indices, in order), per kept layer the original indices
    of its `heads` and the number of its FFN `neurons`."""

    layers: tuple[int, ...]
    heads: tuple[tuple[int, ...], ...]
    neurons: tuple[int, ...]

    def __post_init__(self):
        if not (len(self.layers) == len(self.heads) == len(self.neurons)):
            raise DistillError(f"Shape: {len(self.layers)} layers but {len(self.heads)} head lists and {len(self.neurons)} neuron counts")
        if list(self.layers) != sorted(set(self.layers)):
            raise DistillError(f"Shape: layers must be distinct and in order (got {list(self.layers)})")

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def total_heads(self) -> int:
        return sum(len(heads) for heads in self.heads)

    @property
    def total_neurons(self) -> int:
        return sum(self.neurons)

    def describe(self) -> dict:
        return {"layers_kept": list(self.layers), "heads_per_layer": [len(h) for h in self.heads],
                "neurons_per_layer": list(self.neurons)}


@dataclass(frozen=True)
class LatencyModel:
    """latency_ms ≈ intercept + per_layer·depth + per_head·heads + per_neuron·neurons, for one batch size.
    The errors are relative (|predicted − measured| / measured) on the points it was fitted on."""

    intercept_ms: float
    per_layer_ms: float
    per_head_ms: float
    per_neuron_ms: float
    batch_size: int | None = None
    points: int = 0
    max_relative_error: float = 0.0
    mean_relative_error: float = 0.0
    loo_max_relative_error: float | None = None  # leave-one-out: the error on a shape it has not seen

    def predict_counts(self, depth: int, heads: int, neurons: int) -> float:
        return self.intercept_ms + self.per_layer_ms * depth + self.per_head_ms * heads + self.per_neuron_ms * neurons

    def predict(self, shape: Shape) -> float:
        return self.predict_counts(shape.depth, shape.total_heads, shape.total_neurons)

    def to_dict(self) -> dict:
        return asdict(self)


def _fit_non_negative(features: np.ndarray, latencies: np.ndarray) -> np.ndarray:
    # Rows divided by the latency: least squares on RELATIVE errors, so the small shapes near the
    # budget are fitted as well as the full model. Columns scaled to 1: neurons count in thousands.
    rows = features / latencies[:, None]
    scale = np.abs(rows).max(axis=0)
    scale[scale == 0] = 1.0
    coefficients, _ = nnls(rows / scale, np.ones(len(latencies)))  # a negative cost per unit is not physical
    return coefficients / scale


def fit_latency_model(shapes: Sequence[Shape], latencies_ms: Sequence[float], *, batch_size: int | None = None) -> LatencyModel:
    """Least-squares fit, non-negative coefficients, of measured latencies (one per shape; a shape
    may repeat). Needs at least 4 distinct (depth, heads, neurons) points."""
    if len(shapes) != len(latencies_ms):
        raise DistillError(f"fit_latency_model: {len(shapes)} shapes but {len(latencies_ms)} latencies")
    latencies = np.asarray(latencies_ms, dtype=float)
    if not np.all(np.isfinite(latencies) & (latencies > 0)):
        raise DistillError(f"fit_latency_model: latencies must be positive numbers of ms (got {latencies.tolist()})")
    features = np.array([[1.0, s.depth, s.total_heads, s.total_neurons] for s in shapes], dtype=float).reshape(-1, 4)
    distinct = len({tuple(row) for row in features})
    if distinct < MIN_FIT_SHAPES:
        raise DistillError(f"fit_latency_model: {distinct} distinct measured shape(s); the latency model needs at least {MIN_FIT_SHAPES}")
    coefficients = _fit_non_negative(features, latencies)
    errors = np.abs(features @ coefficients - latencies) / latencies
    loo = None
    if len(shapes) >= 5:  # each point predicted by a fit on the others
        held_out = [features[i] @ _fit_non_negative(np.delete(features, i, 0), np.delete(latencies, i)) for i in range(len(shapes))]
        loo = float((np.abs(np.array(held_out) - latencies) / latencies).max())
    return LatencyModel(*(float(c) for c in coefficients), batch_size=batch_size, points=len(shapes),
                        max_relative_error=float(errors.max()), mean_relative_error=float(errors.mean()),
                        loo_max_relative_error=loo)


def calibration_shapes(n_layers: int, n_heads: int, n_neurons: int) -> list[Shape]:
    """A fixed design to measure before fitting: the full model, then heads, neurons and depth each
    reduced alone, and one point reducing all three (checks that their costs add up). Units kept
    are the first ones: for latency only their number matters."""
    def shape(depth: int, heads: int, neurons: int) -> Shape:
        depth, heads, neurons = max(1, depth), max(1, heads), max(1, neurons)
        return Shape(tuple(range(depth)), (tuple(range(heads)),) * depth, (neurons,) * depth)

    design = [
        shape(n_layers, n_heads, n_neurons),
        shape(n_layers, n_heads // 2, n_neurons),
        shape(n_layers, n_heads // 4, n_neurons),
        shape(n_layers, n_heads, n_neurons // 2),
        shape(n_layers, n_heads, n_neurons // 4),
        shape(n_layers // 2, n_heads, n_neurons),
        shape(-(-3 * n_layers // 4), n_heads // 2, n_neurons // 2),
    ]
    return list(dict.fromkeys(design))  # a tiny model collapses some points: keep each once, in order


@dataclass(frozen=True)
class Candidate:
    shape: Shape
    predicted_ms: float  # by the first latency model
    importance_kept: float  # in [0, 1]: 1 = the model as it is
    predicted_ms_each: tuple[float, ...] = ()  # by every latency model given (the first, then `also`), in order


class _GlobalKeep:
    """The top-scoring units across the given layers, each layer first keeping its own best
    `minimum` (what `select_heads` keeps in its global scope). NaN scores are never kept."""

    def __init__(self, scores: list[np.ndarray], values: list[np.ndarray], minimum: int):
        self.forced, pool_scores, pool_layers, pool_positions, pool_values = [], [], [], [], []
        for layer, (layer_scores, layer_values) in enumerate(zip(scores, values)):
            alive = np.flatnonzero(~np.isnan(layer_scores))
            order = alive[np.argsort(-layer_scores[alive], kind="stable")]
            self.forced.append(order[:minimum])
            rest = order[minimum:]
            pool_scores.append(layer_scores[rest])
            pool_layers.append(np.full(len(rest), layer))
            pool_positions.append(rest)
            pool_values.append(layer_values[rest])
        pooled_scores, pooled_layers, pooled_positions = (np.concatenate(a) for a in (pool_scores, pool_layers, pool_positions))
        order = np.lexsort((pooled_positions, pooled_layers, -pooled_scores))  # best score first; ties: earlier layer, position
        self.pool_layers, self.pool_positions = pooled_layers[order].astype(int), pooled_positions[order]
        self.pool_cumulative_value = np.concatenate([[0.0], np.cumsum(np.concatenate(pool_values)[order])])
        self.forced_counts = np.array([len(f) for f in self.forced])
        self.forced_value = float(sum(values[layer][f].sum() for layer, f in enumerate(self.forced)))
        self.alive = int(self.forced_counts.sum()) + len(order)

    def keep(self, share: float) -> tuple[int, np.ndarray, float]:
        """(how many pool units, per-layer counts, importance kept) for keeping `share` of the alive units."""
        extra = min(max(0, round(share * self.alive) - int(self.forced_counts.sum())), len(self.pool_positions))
        counts = self.forced_counts + np.bincount(self.pool_layers[:extra], minlength=len(self.forced_counts))
        return extra, counts, self.forced_value + float(self.pool_cumulative_value[extra])

    def positions(self, extra: int) -> tuple[tuple[int, ...], ...]:
        kept = [list(f) for f in self.forced]
        for layer, position in zip(self.pool_layers[:extra], self.pool_positions[:extra]):
            kept[layer].append(position)
        return tuple(tuple(sorted(int(p) for p in layer)) for layer in kept)


def _shares_of_total(scores: list[np.ndarray], name: str) -> list[np.ndarray]:
    """Scores as shares of the total over all layers (NaN = 0); all-zero scores count every unit the same."""
    if any(np.any(s < 0) for s in scores):
        raise DistillError(f"{name}: importance scores must be >= 0")
    values = [np.nan_to_num(s, nan=0.0) for s in scores]
    total = sum(v.sum() for v in values)
    if total <= 0:
        values, total = [(~np.isnan(s)).astype(float) for s in scores], sum(int((~np.isnan(s)).sum()) for s in scores)
    return [v / total for v in values]


def layer_values(head_scores: torch.Tensor, neuron_scores: Sequence[torch.Tensor], head_weight: float = 0.5) -> list[float]:
    """Each layer's value, what dropping it loses: its heads' share of all head scores times
    `head_weight`, plus its neurons' share of all neuron scores times the rest (NaN = a removed unit).
    The speed search weighs heads by their share of the latency; without a latency model, half."""
    return _layer_values(*_unit_values(*_as_arrays(head_scores, neuron_scores)), head_weight)


def _as_arrays(head_scores: torch.Tensor, neuron_scores: Sequence[torch.Tensor]) -> tuple[np.ndarray, list[np.ndarray]]:
    return head_scores.detach().double().cpu().numpy(), [s.detach().double().cpu().numpy().reshape(-1) for s in neuron_scores]


def _unit_values(heads: np.ndarray, neurons: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return _shares_of_total(list(heads), "head_scores"), _shares_of_total(neurons, "neuron_scores")


def _layer_values(head_values: list[np.ndarray], neuron_values: list[np.ndarray], head_weight: float) -> list[float]:
    return [float(head_weight * h.sum() + (1 - head_weight) * n.sum()) for h, n in zip(head_values, neuron_values)]


def most_valuable_layers(values: Sequence[float], count: int, always: Sequence[int] = ()) -> list[int]:
    """The indices of the `count` most valuable layers, in order; ties keep the earlier layer. The
    layers in `always` are kept first (as many as `count` allows, in the order given)."""
    kept = list(dict.fromkeys(always))[:count]
    by_value = sorted((i for i in range(len(values)) if i not in kept), key=lambda layer: -values[layer])  # stable
    return sorted(kept + by_value[: count - len(kept)])


def propose_shapes(
    head_scores: torch.Tensor,
    neuron_scores: Sequence[torch.Tensor],
    latency_model: LatencyModel,
    budget_ms: float,
    *,
    min_heads_per_layer: int = 1,
    min_neurons_per_layer: int = 1,
    allow_depth: bool = True,
    min_depth: int = 1,
    max_candidates: int = 5,
    one_per_depth: bool = False,
    edge_only: bool = False,
    always_keep: Sequence[int] = (),
    also: Sequence[tuple[LatencyModel, float]] = (),
    grid: Sequence[float] = KEEP_SHARES,
) -> list[Candidate]:
    """The `max_candidates` distinct shapes predicted within `budget_ms` that keep the most
    importance, best first. Searches depth (dropping the least important layers first, down to
    `min_depth`) and a global keep share of heads and of neurons from `grid` (shares of the alive
    units of the kept layers). `also`: more (latency model, budget) pairs every shape must meet,
    e.g. another batch size. `one_per_depth`: the best shape of each depth only, so that the
    candidates differ in kind (deep and narrow against shallow and wide), which importance alone
    does not rank reliably. `edge_only`: per depth and head count, only the shape keeping the most
    FFN neurons within the budgets (the edge of what they allow, from wide attention with a thin FFN
    to the reverse), for a caller that compares shapes by scoring them. `always_keep`: layers no
    shape drops (e.g. the last, whose output the task head was trained on). Raises DistillError when even the smallest allowed shape is predicted
    over budget."""
    heads, neurons = _as_arrays(head_scores, neuron_scores)
    if heads.ndim != 2 or heads.shape[0] != len(neurons) or not neurons:
        raise DistillError(f"propose_shapes: head scores {tuple(heads.shape)} need one row per layer of the {len(neurons)} neuron score lists")
    limits = [(latency_model, budget_ms), *also]
    if any(b <= 0 for _, b in limits) or max_candidates < 1 or min_heads_per_layer < 0 or min_neurons_per_layer < 1:
        raise DistillError("propose_shapes: needs budgets > 0, max_candidates >= 1, min_heads_per_layer >= 0, min_neurons_per_layer >= 1")
    if any(not 0 <= share <= 1 for share in grid):
        raise DistillError(f"propose_shapes: grid shares must be in [0, 1] (got {list(grid)})")
    unscored = [layer for layer, s in enumerate(neurons) if np.isnan(s).all()]
    if unscored:
        raise DistillError(f"propose_shapes: layer {unscored[0]} has no scored FFN neuron; every kept layer keeps one")
    n_layers = len(neurons)
    if not 1 <= min_depth <= n_layers:
        raise DistillError(f"propose_shapes: min_depth must be in 1..{n_layers} (got {min_depth})")
    head_values, neuron_values = _unit_values(heads, neurons)

    # Units are worth keeping in proportion to the time they cost: heads weigh the share of the
    # full model's variable latency they account for, neurons (with the per-layer cost) the rest.
    # A shape's score is then the importance it keeps, weighted so; a dropped layer loses all of its units'.
    all_heads, all_neurons = int((~np.isnan(heads)).sum()), sum(int((~np.isnan(s)).sum()) for s in neurons)
    head_cost = latency_model.per_head_ms * all_heads
    variable_cost = head_cost + latency_model.per_neuron_ms * all_neurons + latency_model.per_layer_ms * n_layers
    head_weight = head_cost / variable_cost if variable_cost > 0 else 0.5
    values = _layer_values(head_values, neuron_values, head_weight)

    shares = sorted(set(grid) | {0.0}, reverse=True)  # 0.0: the per-layer minimums, the smallest shape
    fitting, closest = {}, (float("inf"), 0.0, 0.0)  # (ratio to budget, ms, budget) of the shape nearest to fitting
    for depth in range(n_layers, min_depth - 1, -1) if allow_depth else [n_layers]:
        layers = most_valuable_layers(values, depth, always_keep)
        head_keep = _GlobalKeep([heads[i] for i in layers], [head_values[i] for i in layers], min_heads_per_layer)
        neuron_keep = _GlobalKeep([neurons[i] for i in layers], [neuron_values[i] for i in layers], min_neurons_per_layer)
        neuron_options = [neuron_keep.keep(share) for share in shares]
        for head_extra, head_counts, head_kept in (head_keep.keep(share) for share in shares):
            for neuron_extra, neuron_counts, neuron_kept in neuron_options:
                each = tuple(m.predict_counts(depth, int(head_counts.sum()), int(neuron_counts.sum())) for m, _ in limits)
                ratios = [ms / budget for ms, (_, budget) in zip(each, limits)]
                tightest = int(np.argmax(ratios))  # the limit this shape misses by most (or meets most narrowly)
                if ratios[tightest] < closest[0]:
                    closest = (ratios[tightest], each[tightest], limits[tightest][1])
                ms = each[0]
                if ratios[tightest] <= 1:
                    importance = head_weight * head_kept + (1 - head_weight) * neuron_kept
                    # More units kept break ties: a unit the latency model calls free still helps accuracy.
                    rank = (-importance, ms, -int(head_counts.sum()), -int(neuron_counts.sum()))
                    fitting[(depth, head_extra, neuron_extra)] = (rank, layers, head_keep, head_extra, neuron_counts, each, importance)
                    if edge_only:  # the neuron options run from the most neurons down
                        break
    if not fitting:
        raise DistillError(
            f"no allowed shape can meet the target: the smallest (depth {min_depth if allow_depth else n_layers}, "
            f"{min_heads_per_layer} head(s) and {min_neurons_per_layer} neuron(s) per layer) is predicted at "
            f"{closest[1]:.2f} ms, above the budget of {closest[2]:.2f} ms"
        )
    ranked = sorted(fitting.items(), key=lambda item: item[1][0])
    if one_per_depth:
        ranked = [item for i, item in enumerate(ranked) if item[0][0] not in {other[0][0] for other in ranked[:i]}]
    return [
        Candidate(Shape(tuple(layers), keep.positions(extra), tuple(int(c) for c in counts)), each[0], importance, each)
        for _, (_, layers, keep, extra, counts, each, importance) in ranked[:max_candidates]
    ]


def heads_to_remove(shape: Shape, n_heads: int) -> dict[int, list[int]]:
    """`prune_heads`'s input: per kept layer, the original head indices the shape does not keep.
    Dropped layers are left out (they go whole); apply this before removing layers, as indices shift."""
    plan = {layer: [h for h in range(n_heads) if h not in kept] for layer, kept in zip(shape.layers, shape.heads)}
    return {layer: removed for layer, removed in plan.items() if removed}


def neurons_to_keep(shape: Shape, neuron_scores: Sequence[torch.Tensor]) -> dict[int, list[int]]:
    """`prune_ffn`'s input: per kept layer, the positions of its top-scoring `shape.neurons` neurons,
    sorted (NaN scores last). A mapping, so dropped layers are left out."""
    plan = {}
    for layer, count in zip(shape.layers, shape.neurons):
        scores = torch.nan_to_num(neuron_scores[layer].detach().float().cpu(), nan=-float("inf"))
        if not 1 <= count <= int((scores > -float("inf")).sum()):
            raise DistillError(f"neurons_to_keep: layer {layer} keeps {count} neurons but has {int((scores > -float('inf')).sum())} scored")
        plan[layer] = sorted(scores.argsort(descending=True, stable=True)[:count].tolist())
    return plan


def budget_from_target(reference_ms: float | None, speedup: float | None = None, latency_ms: float | None = None) -> float:
    """The latency budget in ms: `reference_ms / speedup`, or `latency_ms` itself. Exactly one of the two."""
    if (speedup is None) == (latency_ms is None):
        raise DistillError("speed target: give exactly one of speedup and latency_ms")
    name, value = ("latency_ms", latency_ms) if latency_ms is not None else ("speedup", speedup)
    if not value > 0:
        raise DistillError(f"speed target: {name} must be > 0 (got {value})")
    if latency_ms is not None:
        return float(latency_ms)
    if reference_ms is None or not reference_ms > 0:
        raise DistillError(f"speed target: the reference latency must be > 0 ms (got {reference_ms})")
    return float(reference_ms) / float(speedup)

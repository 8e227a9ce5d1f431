"""Speed search: the latency model fits and states its error, proposed shapes meet the budget and
keep the most importance, impossible targets are refused, and the helpers feed prune_heads / prune_ffn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from distill import DistillError
from distill.pruning import intermediate_sizes, kept_heads, prune_ffn, prune_heads
from distill.pruning.speed_search import (
    LatencyModel,
    Shape,
    budget_from_target,
    calibration_shapes,
    fit_latency_model,
    heads_to_remove,
    neurons_to_keep,
    propose_shapes,
)

LAYERS, HEADS, NEURONS = 4, 6, 20
# Full model: 1 + 0.5·4 + 0.2·24 + 0.02·80 = 9.4 ms.
LATENCY = LatencyModel(intercept_ms=1.0, per_layer_ms=0.5, per_head_ms=0.2, per_neuron_ms=0.02)
FULL_MS = 9.4


def scores(seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(LAYERS, HEADS, generator=generator), [torch.rand(NEURONS, generator=generator) for _ in range(LAYERS)]


def synthetic_latencies(shapes: list[Shape], model: LatencyModel, noise: float = 0.0, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return [model.predict(shape) * (1 + noise * rng.standard_normal()) for shape in shapes]


def test_fit_recovers_known_coefficients_from_exact_data():
    truth = LatencyModel(intercept_ms=1.5, per_layer_ms=0.2, per_head_ms=0.05, per_neuron_ms=0.0004)
    shapes = calibration_shapes(12, 12, 3072)
    fitted = fit_latency_model(shapes, synthetic_latencies(shapes, truth), batch_size=1)
    for name in ("intercept_ms", "per_layer_ms", "per_head_ms", "per_neuron_ms"):
        assert getattr(fitted, name) == pytest.approx(getattr(truth, name), rel=1e-6)
    assert fitted.max_relative_error < 1e-9 and fitted.loo_max_relative_error < 1e-9
    assert fitted.to_dict()["batch_size"] == 1 and fitted.to_dict()["points"] == len(shapes)


def test_fit_reports_its_error_on_noisy_data():
    truth = LatencyModel(intercept_ms=1.5, per_layer_ms=0.2, per_head_ms=0.05, per_neuron_ms=0.0004)
    shapes = calibration_shapes(12, 12, 3072)
    fitted = fit_latency_model(shapes, synthetic_latencies(shapes, truth, noise=0.05))
    assert 0.001 < fitted.mean_relative_error <= fitted.max_relative_error < 0.2
    assert fitted.loo_max_relative_error >= fitted.max_relative_error * 0.99


def test_fit_coefficients_are_never_negative():
    shapes = calibration_shapes(12, 12, 3072)
    # More heads measured as faster: plain least squares would give heads a negative cost.
    latencies = [10.0 - 0.01 * shape.total_heads + 0.001 * shape.total_neurons for shape in shapes]
    fitted = fit_latency_model(shapes, latencies)
    assert min(fitted.intercept_ms, fitted.per_layer_ms, fitted.per_head_ms, fitted.per_neuron_ms) >= 0


def test_leave_one_out_error_needs_five_points():
    shapes = calibration_shapes(12, 12, 3072)[:4]
    assert fit_latency_model(shapes, synthetic_latencies(shapes, LATENCY)).loo_max_relative_error is None


def test_fit_refuses_fewer_than_four_distinct_shapes():
    shapes = calibration_shapes(12, 12, 3072)[:3] * 2  # repeats do not count
    with pytest.raises(DistillError, match="3 distinct measured shape.*at least 4"):
        fit_latency_model(shapes, synthetic_latencies(shapes, LATENCY))


def test_calibration_shapes_are_deterministic_distinct_and_well_posed():
    shapes = calibration_shapes(12, 12, 3072)
    assert shapes == calibration_shapes(12, 12, 3072) and 6 <= len(set(shapes)) == len(shapes) <= 8
    design = np.array([[1, s.depth, s.total_heads, s.total_neurons] for s in shapes])
    assert np.linalg.matrix_rank(design) == 4
    assert shapes[0].describe() == {"layers_kept": list(range(12)), "heads_per_layer": [12] * 12, "neurons_per_layer": [3072] * 12}


def test_every_proposed_shape_meets_the_budget():
    head_scores, neuron_scores = scores()
    candidates = propose_shapes(head_scores, neuron_scores, LATENCY, 5.0, max_candidates=20)
    assert len(candidates) == 20
    for candidate in candidates:
        assert candidate.predicted_ms == pytest.approx(LATENCY.predict(candidate.shape))
        assert candidate.predicted_ms <= 5.0


def test_candidates_are_distinct_and_ordered_by_importance_kept():
    head_scores, neuron_scores = scores()
    candidates = propose_shapes(head_scores, neuron_scores, LATENCY, 6.0, max_candidates=10)
    kept = [c.importance_kept for c in candidates]
    assert kept == sorted(kept, reverse=True) and 0 < kept[-1] <= kept[0] < 1
    assert len({c.shape for c in candidates}) == len(candidates)


def test_every_proposed_shape_meets_every_limit_given():
    head_scores, neuron_scores = scores()
    # A second batch size where heads cost relatively more: its budget binds on its own.
    batched = LatencyModel(intercept_ms=2.0, per_layer_ms=1.0, per_head_ms=1.0, per_neuron_ms=0.02)
    alone = propose_shapes(head_scores, neuron_scores, LATENCY, 5.0, max_candidates=20)
    assert any(batched.predict(c.shape) > 14.0 for c in alone)
    for candidate in propose_shapes(head_scores, neuron_scores, LATENCY, 5.0, also=[(batched, 14.0)], max_candidates=20):
        assert candidate.predicted_ms <= 5.0 and batched.predict(candidate.shape) <= 14.0
        assert candidate.predicted_ms_each == pytest.approx((LATENCY.predict(candidate.shape), batched.predict(candidate.shape)))


def test_the_refusal_names_the_limit_that_cannot_be_met():
    head_scores, neuron_scores = scores()
    batched = LatencyModel(intercept_ms=20.0, per_layer_ms=1.0, per_head_ms=1.0, per_neuron_ms=0.02)
    with pytest.raises(DistillError, match=r"budget of 14\.00 ms"):
        propose_shapes(head_scores, neuron_scores, LATENCY, 5.0, also=[(batched, 14.0)])


def test_no_shape_is_shallower_than_min_depth():
    head_scores, neuron_scores = scores()
    candidates = propose_shapes(head_scores, neuron_scores, LATENCY, 4.0, min_depth=3, max_candidates=20)
    assert candidates and min(c.shape.depth for c in candidates) == 3


def test_one_per_depth_gives_the_best_shape_of_each_depth():
    head_scores, neuron_scores = scores()
    every = propose_shapes(head_scores, neuron_scores, LATENCY, 5.0, max_candidates=500)
    distinct = propose_shapes(head_scores, neuron_scores, LATENCY, 5.0, one_per_depth=True, max_candidates=10)
    assert len({c.shape.depth for c in distinct}) == len(distinct) >= 2
    for candidate in distinct:
        assert candidate == next(c for c in every if c.shape.depth == candidate.shape.depth)


def test_generous_budget_puts_the_full_model_first():
    head_scores, neuron_scores = scores()
    best = propose_shapes(head_scores, neuron_scores, LATENCY, FULL_MS)[0]
    assert best.shape.describe() == {"layers_kept": [0, 1, 2, 3], "heads_per_layer": [HEADS] * 4, "neurons_per_layer": [NEURONS] * 4}
    assert best.importance_kept == pytest.approx(1.0) and best.predicted_ms == pytest.approx(FULL_MS)


def test_impossible_budget_is_refused_naming_the_smallest_predicted_latency():
    head_scores, neuron_scores = scores()
    # Smallest allowed: 1 layer, 1 head, 1 neuron = 1 + 0.5 + 0.2 + 0.02 = 1.72 ms.
    with pytest.raises(DistillError, match=r"no allowed shape can meet the target.*1\.72 ms.*budget of 1\.50 ms"):
        propose_shapes(head_scores, neuron_scores, LATENCY, 1.5)


def test_without_depth_search_every_layer_is_kept():
    head_scores, neuron_scores = scores()
    for candidate in propose_shapes(head_scores, neuron_scores, LATENCY, 5.0, allow_depth=False):
        assert candidate.shape.layers == tuple(range(LAYERS))
    with pytest.raises(DistillError, match=r"depth 4.*3\.88 ms"):  # 1 + 2 + 0.8 + 0.08
        propose_shapes(head_scores, neuron_scores, LATENCY, 3.5, allow_depth=False)


def test_the_least_important_layer_is_dropped_first():
    head_scores, neuron_scores = scores()
    head_scores[2] *= 1e-3
    neuron_scores[2] = neuron_scores[2] * 1e-3
    best = propose_shapes(head_scores, neuron_scores, LATENCY, FULL_MS - 0.5 - 0.2 * HEADS - 0.02 * NEURONS + 1e-9)[0]
    assert best.shape.layers == (0, 1, 3)
    assert best.shape.total_heads == 3 * HEADS and best.shape.total_neurons == 3 * NEURONS


def test_units_with_nan_scores_are_never_kept():
    head_scores, neuron_scores = scores()
    head_scores[0, :4] = math.nan
    head_scores[1, 5] = math.nan
    neuron_scores[3][:7] = math.nan
    for candidate in propose_shapes(head_scores, neuron_scores, LATENCY, FULL_MS, allow_depth=False, max_candidates=20):
        shape = candidate.shape
        assert not set(shape.heads[0]) & {0, 1, 2, 3} and 5 not in shape.heads[1]
        assert shape.neurons[3] <= NEURONS - 7
        assert not set(neurons_to_keep(shape, neuron_scores)[3]) & set(range(7))


def test_per_layer_minimums_hold():
    head_scores, neuron_scores = scores()
    head_scores[1] *= 1e-6  # globally, layer 1 would lose every head and neuron first
    neuron_scores[1] = neuron_scores[1] * 1e-6
    candidates = propose_shapes(head_scores, neuron_scores, LATENCY, 5.5, allow_depth=False, max_candidates=20,
                                min_heads_per_layer=2, min_neurons_per_layer=3)
    for candidate in candidates:
        assert all(len(heads) >= 2 for heads in candidate.shape.heads)
        assert all(count >= 3 for count in candidate.shape.neurons)
    assert any(len(c.shape.heads[1]) == 2 and c.shape.neurons[1] == 3 for c in candidates)


def test_helpers_produce_prune_heads_and_prune_ffn_inputs():
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=99)
    model = BertForSequenceClassification(config).eval()
    generator = torch.Generator().manual_seed(3)
    head_scores = torch.rand(2, 4, generator=generator)
    neuron_scores = [torch.rand(37, generator=generator) for _ in range(2)]
    latency = LatencyModel(intercept_ms=1.0, per_layer_ms=0.5, per_head_ms=0.2, per_neuron_ms=0.02)
    shape = propose_shapes(head_scores, neuron_scores, latency, 3.0, allow_depth=False)[0].shape
    assert shape.total_heads < 8 and shape.total_neurons < 74

    keep = neurons_to_keep(shape, neuron_scores)
    for layer, positions in keep.items():
        top = set(neuron_scores[layer].argsort(descending=True)[: len(positions)].tolist())
        assert positions == sorted(top)
    prune_heads(model, heads_to_remove(shape, 4))
    prune_ffn(model, keep)
    assert kept_heads(model) == [list(heads) for heads in shape.heads]
    assert intermediate_sizes(model) == list(shape.neurons)
    model(input_ids=torch.randint(1, 99, (2, 5)))  # still runs


def test_helpers_leave_dropped_layers_out():
    shape = Shape(layers=(0, 2), heads=((1, 3), (0,)), neurons=(5, 2))
    assert heads_to_remove(shape, 4) == {0: [0, 2], 2: [1, 2, 3]}
    _, neuron_scores = scores()
    assert set(neurons_to_keep(shape, neuron_scores)) == {0, 2}


@pytest.mark.parametrize(
    ("arguments", "budget"),
    [({"speedup": 15}, 6.0), ({"latency_ms": 4.0}, 4.0)],
)
def test_budget_from_speedup_or_latency(arguments, budget):
    assert budget_from_target(90.0, **arguments) == pytest.approx(budget)


@pytest.mark.parametrize(
    ("reference", "arguments", "message"),
    [
        (90.0, {}, "exactly one"),
        (90.0, {"speedup": 15, "latency_ms": 4.0}, "exactly one"),
        (90.0, {"speedup": 0}, "speedup must be > 0"),
        (90.0, {"latency_ms": -1.0}, "latency_ms must be > 0"),
        (0.0, {"speedup": 15}, "reference latency must be > 0"),
    ],
)
def test_budget_from_target_refuses_bad_targets(reference, arguments, message):
    with pytest.raises(DistillError, match=message):
        budget_from_target(reference, **arguments)


def test_edge_shapes_keep_the_most_neurons_each_head_count_allows():
    head_scores, neuron_scores = scores()
    edge = propose_shapes(head_scores, neuron_scores, LATENCY, 5.0, edge_only=True, max_candidates=500)
    every = propose_shapes(head_scores, neuron_scores, LATENCY, 5.0, max_candidates=5000)
    kinds = [(c.shape.depth, c.shape.total_heads) for c in edge]
    assert len(set(kinds)) == len(kinds) > 5
    for candidate in edge:
        same = [c for c in every if (c.shape.depth, c.shape.total_heads) == (candidate.shape.depth, candidate.shape.total_heads)]
        assert candidate.shape.total_neurons == max(c.shape.total_neurons for c in same)


def test_layers_kept_always_stay_in_every_shape():
    head_scores, neuron_scores = scores()
    head_scores[LAYERS - 1] *= 0.01  # the last layer is the least important by its scores
    neuron_scores[LAYERS - 1] = neuron_scores[LAYERS - 1] * 0.01
    shallow = [c for c in propose_shapes(head_scores, neuron_scores, LATENCY, 4.0, max_candidates=50) if c.shape.depth < LAYERS]
    assert shallow and all(LAYERS - 1 not in c.shape.layers for c in shallow)
    kept = propose_shapes(head_scores, neuron_scores, LATENCY, 4.0, always_keep=[LAYERS - 1], max_candidates=50)
    assert all(LAYERS - 1 in c.shape.layers for c in kept) and min(c.shape.depth for c in kept) < LAYERS

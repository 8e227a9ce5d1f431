"""A prune stage's speed target: the recipe says what it must meet, an impossible target stops the
run before anything trains, and the stage keeps the most accurate candidate that meets its
budgets as measured, saved so that it reloads as it was scored.

Timings are real here, so these tests assert how the stage decides and records, never a speed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from families import tiny_checkpoint

from distill import DistillError
from distill.pruning import load_pruned
from distill.pruning.structure import intermediate_sizes, kept_heads
from distill.recipe import validate_recipe
from distill.stages.pipeline import Pipeline
from distill.stages.speed_target import chosen_candidate

TEACHER_ONLY = {"kind": "teacher", "skip_training": True, "train": {"eval_batch_size": 16}}


def recipe_with(target: dict, *, extra_stages: tuple = (), **prune) -> dict:
    return {"name": "t", "task": "sst2",
            "stages": [TEACHER_ONLY, {"kind": "prune", "target": target, **prune}, *extra_stages]}


@pytest.mark.parametrize(
    "target, extra, message",
    [
        ({}, (), "stages[1].target: give either speedup or latency_ms"),
        ({"speedup": {1: 4}, "latency_ms": {1: 2.0}}, (), "stages[1].target: give either speedup or latency_ms"),
        ({"speedup": {0: 4}}, (), "stages[1].target.speedup: give {batch size >= 1: value > 0}"),
        ({"latency_ms": {1: -1}}, (), "stages[1].target.latency_ms: give {batch size >= 1: value > 0}"),
        ({"speedup": {1: 4}, "against": "nowhere"}, (), "stages[1].target.against: no earlier stage named 'nowhere'"),
        ({"speedup": {1: 4}, "measure_as": "teacher"}, (), "stages[1].target.measure_as: no later onnx stage named 'teacher'"),
        ({"speedup": {1: 4}, "candidates": 5, "screened": 4}, (), "stages[1].target: candidates (5) come from the screened shapes (4)"),
        ({"speedup": {1: 4}, "measure_as": "later"}, ({"kind": "cast", "name": "later", "dtype": "fp16"},),
         "stages[1].target.measure_as: no later onnx stage named 'later'"),
    ],
)
def test_bad_speed_targets_name_the_field(target, extra, message):
    with pytest.raises(DistillError) as err:
        validate_recipe(recipe_with(target, extra_stages=extra))
    assert message in str(err.value)


def test_a_speed_target_leaves_the_shares_to_the_stage():
    with pytest.raises(DistillError, match=r"stages\[1\]: target: the stage chooses what to prune; leave out heads, ffn"):
        validate_recipe(recipe_with({"speedup": {1: 4}}, heads={"share": 0.5}))


def rows(*measured_and_scores) -> list[dict]:
    return [{"measured_ms": ms, "score": score} for ms, score in measured_and_scores]


def test_the_most_accurate_candidate_that_meets_every_budget_is_chosen():
    budgets = {1: 2.0, 32: 20.0}
    candidates = rows(({1: 1.9, 32: 21.0}, 0.95), ({1: 1.8, 32: 19.0}, 0.90), ({1: 1.5, 32: 15.0}, 0.92))
    assert chosen_candidate(candidates, budgets, "score") == 2  # the first scores best but misses batch 32


def test_when_no_candidate_meets_the_budgets_the_nearest_is_chosen():
    candidates = rows(({1: 3.0}, 0.95), ({1: 2.2}, 0.80), ({1: 2.6}, 0.90))
    assert chosen_candidate(candidates, {1: 2.0}, "score") == 1


def run_recipe(tmp_path, glue_data_dir, target: dict, *, teacher_trains: bool = False, **prune) -> tuple[list[dict], object]:
    checkpoint = tiny_checkpoint("bert", tmp_path / "models")
    teacher = {"kind": "teacher", "train": {"max_steps": 2, "batch_size": 8, "eval_batch_size": 16}} if teacher_trains else TEACHER_ONLY
    recipe = validate_recipe({
        "name": "speed", "task": "sst2", "output_dir": str(tmp_path / "runs"), "mixed_precision": "no", "seed": 3,
        "data": {"dir": str(glue_data_dir), "max_length": 32, "train_limit": 64, "eval_limit": 32, "holdout_size": 16},
        "model": {"model": str(checkpoint)},
        "benchmark": {"batch_sizes": [1, 4], "seq_length": 16, "warmup": 1, "repeats": 3, "threads": 1},
        "stages": [teacher, {"kind": "prune", "target": target, "importance": {"batches": 2, "batch_size": 8}, **prune}],
    })
    return Pipeline(recipe, command="pytest").run(), recipe


def test_an_impossible_speed_target_is_refused_before_any_stage_trains(tmp_path, glue_data_dir):
    with pytest.raises(DistillError, match=r"stages\[1\]\.target: no allowed shape can meet the target.*speed-up 1000x at batch 1"):
        run_recipe(tmp_path, glue_data_dir, {"speedup": {1: 1000}}, teacher_trains=True)
    assert not (tmp_path / "runs" / "speed" / "teacher").exists()


def test_the_stage_keeps_the_chosen_candidate_as_recorded(tmp_path, glue_data_dir):
    records, _ = run_recipe(tmp_path, glue_data_dir, {"speedup": {1: 1.05, 4: 1.05}, "candidates": 2, "screened": 6},
                            recovery={"train": {"max_steps": 1, "batch_size": 8, "eval_batch_size": 16}, "distill": False})
    entry = records[1]["speed_target"]
    assert 1 <= len(entry["candidates"]) <= 2 and sum(c["chosen"] for c in entry["candidates"]) == 1
    pool = [s for s in entry["screened"] if s["fits"]] or entry["screened"]
    lowest_losses = sorted(s["selection_loss"] for s in pool)[: len(entry["candidates"])]
    assert [c["screened_loss"] for c in entry["candidates"]] == lowest_losses
    for shape in entry["screened"]:
        assert shape["round"] > 1 or all(shape["predicted_ms"][b] <= entry["search_budgets_ms"][b] for b in (1, 4))
    chosen = next(c for c in entry["candidates"] if c["chosen"])
    assert entry["met"] == all(chosen["measured_ms"][b] <= entry["budgets_ms"][b] for b in (1, 4))
    assert entry["budgets_ms"][1] == pytest.approx(entry["reference_ms"][1] / 1.05)  # the reference timed beside them
    assert entry["search_budgets_ms"][1] == pytest.approx(entry["calibration_reference_ms"][1] / 1.05)
    assert entry["speedup"] == chosen["speedup"] and set(entry["latency_models"]) == {1, 4}

    run = tmp_path / "runs" / "speed"
    assert (run / "report.png").stat().st_size > 0 and "## Speed target of `pruned`" in (run / "report.md").read_text()
    model = load_pruned(run / "pruned")
    assert [len(h) for h in kept_heads(model)] == chosen["heads_per_layer"]
    assert intermediate_sizes(model) == chosen["neurons_per_layer"]
    assert len(chosen["layers_kept"]) == model.config.num_hidden_layers
    ids = torch.randint(5, 100, (2, 12))
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=ids).logits).all()


def target_entry(met: bool) -> dict:
    candidate = {"layers_kept": [0, 2], "heads_per_layer": [6, 4], "neurons_per_layer": [700, 500], "importance_kept": 0.61,
                 "predicted_ms": {1: 3.1}, "measured_ms": {1: 3.4}, "speedup": {1: 6.5}, "meets_target": met,
                 "selection_accuracy": 0.874, "chosen": True}
    other = {**candidate, "layers_kept": [0, 1, 2], "heads_per_layer": [2, 2, 2], "meets_target": False, "chosen": False,
             "selection_accuracy": 0.88}
    return {"target": {"speedup": {1: 6.0}}, "against": "teacher", "measured_as": "onnx stage 'int8'", "machine": "AMD EPYC (avx2)",
            "threads": 2, "seq_length": 64, "budgets_ms": {1: 3.7 if met else 3.0}, "met": met, "speedup": {1: 6.5},
            "measured_ms": {1: 3.4}, "latency_models": {1: {"loo_max_relative_error": 0.04, "max_relative_error": 0.02}},
            "candidates": [candidate, other]}


@pytest.mark.parametrize("met", [True, False])
def test_the_report_lists_every_candidate_and_marks_the_kept_one(met):
    from distill.reporting.speed_front import markdown_section

    lines = markdown_section({"stages": [{"stage": "pruned", "speed_target": target_entry(met)}]})
    text = "\n".join(lines)
    assert "6× at batch 1 against `teacher`" in text and "AMD EPYC (avx2)" in text and "batch 1 4.0 %" in text
    assert ("Met:" if met else "**Not met**:") in text
    rows = [line for line in lines if line.startswith("| ") and "layers [" in line]
    assert len(rows) == 2 and rows[0].startswith("| **2 layers [0, 2]") and not rows[1].startswith("| **")


def test_the_model_card_states_the_target_and_the_machine():
    from distill.publish.card import speed_target_text

    text = speed_target_text(target_entry(True))
    assert text == ("asked 6× at batch 1 against `teacher`, measured as onnx stage 'int8'; met: 6.50× at batch 1, "
                    "on AMD EPYC (avx2)")


class TimedByShape:
    """Stands in for the shipped form: a pruned model's "latency" is a known linear function of its
    shape, `slower` times what the fitted model predicts (the fitted model errs on such shapes)."""

    def __init__(self, truth, slower: float):
        self.truth, self.slower = truth, slower

    def ship(self, model):
        return model

    def pooled(self, key) -> dict:
        assert key == "reference"
        return {1: 100.0}

    def time(self, artifacts: dict, texts, batch_sizes, keys=None) -> dict:
        def ms(model) -> float:
            heads, neurons = kept_heads(model), intermediate_sizes(model)
            return self.slower * self.truth.predict_counts(len(heads), sum(map(len, heads)), sum(neurons))
        return {name: {b: 100.0 if name == "reference" else ms(model) for b in batch_sizes} for name, model in artifacts.items()}


def test_too_few_shapes_fitting_as_timed_shrinks_the_budget_and_screens_again():
    from families import tiny_classifier

    from distill.pruning.speed_search import LatencyModel
    from distill.recipe import PruneStage
    from distill.stages.speed_target import screen_until_enough_fit

    model = tiny_classifier("bert")  # 2 layers, 4 heads, 37 neurons per layer (tests/families.py)
    layers, heads = model.config.num_hidden_layers, model.config.num_attention_heads
    neurons = model.config.intermediate_size
    truth = LatencyModel(intercept_ms=10.0, per_layer_ms=5.0, per_head_ms=4.0, per_neuron_ms=0.5)
    stage = PruneStage(kind="prune", target={"speedup": {1: 100 / 60}, "candidates": 2, "screened": 4})
    def judge(pruned):
        return sum(map(len, kept_heads(pruned))) / 100, 1.0

    rows = screen_until_enough_fit(stage, "stages[1]", TimedByShape(truth, slower=1.25), model, "reference", [], (
        torch.rand(layers, heads), [torch.rand(neurons) for _ in range(layers)]), {1: truth}, {1: 60.0}, judge)
    first, later = [r for r in rows if r["round"] == 1], [r for r in rows if r["round"] > 1]
    assert first and not any(r["fits"] for r in first)  # predicted within 60 ms, timed 25 % slower
    assert sum(r["fits"] for r in later) >= 2
    assert all(r["measured_ms"][1] <= 60.0 for r in later if r["fits"])


class Recorded:
    """An artifact whose call costs nothing: the test sets the timings themselves."""

    def __call__(self, **inputs):
        return SimpleNamespace(logits=None)


def test_an_artifact_timed_in_several_rounds_is_judged_on_all_its_calls(monkeypatch):
    from helpers import wordpiece_tokenizer

    from distill.stages import speed_target

    recipe = validate_recipe({"name": "t", "task": "sst2", "stages": [TEACHER_ONLY],
                              "benchmark": {"warmup": 0, "repeats": 3, "seq_length": 8, "threads": 1}})
    form = speed_target.ShippedForm(recipe, None, wordpiece_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "film"]))
    rounds = iter([{"a": [0.002] * 3, "reference": [0.010] * 3}, {"a": [0.006] * 3, "reference": [0.030] * 3}])
    monkeypatch.setattr(speed_target, "latency_samples", lambda calls, warmup, repeats: next(rounds))
    shape = object()
    first = form.time({"reference": Recorded(), "a": Recorded()}, [("good film",)], [1], keys={"a": shape})
    form.time({"reference": Recorded(), "a": Recorded()}, [("good film",)], [1], keys={"a": shape})
    assert first == {"reference": {1: 10.0}, "a": {1: 2.0}}
    assert form.pooled(shape) == {1: pytest.approx(4.0)} and form.pooled("reference") == {1: pytest.approx(20.0)}
    assert form.reference_rounds == [{1: 10.0}, {1: 30.0}]

"""Structured pruning: removing heads/neurons equals masking them, importance finds useless
ones, pruned models reload exactly, bad specs fail naming the field, and the stage runs."""

from __future__ import annotations

import copy
import json
import warnings
from contextlib import contextmanager

import pytest
import torch
from helpers import load_script
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

from distill import DistillError
from distill.models.compat import TRANSFORMERS_5
from distill.pruning import (
    ffn_importance,
    head_importance,
    heads_from_lists,
    load_pruned,
    loads_natively,
    prune_ffn,
    prune_heads,
    pruning_counts,
    select_heads,
    select_neurons,
)
from distill.recipe import validate_recipe
from distill.stages.curves import recovery_block

HIDDEN, HEADS, LAYERS, FFN = 32, 4, 2, 37
HEAD_SIZE = HIDDEN // HEADS


def tiny_bert(seed: int = 0, **overrides) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=FFN, vocab_size=99, **overrides
    )
    return BertForSequenceClassification(config).eval()


def padded_inputs(seed: int = 1) -> dict:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, 99, (3, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, 6:] = 0
    attention_mask[2, 4:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def labelled_batches(n: int = 4, seed: int = 2) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "input_ids": torch.randint(1, 99, (8, 10), generator=generator),
            "attention_mask": torch.ones(8, 10, dtype=torch.long),
            "labels": torch.randint(0, 2, (8,), generator=generator),
        }
        for _ in range(n)
    ]


def outputs(model, inputs: dict) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    return (out.logits, *out.hidden_states)


def assert_close(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...], atol: float) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=atol, rtol=0)


@contextmanager
def heads_zeroed(model, heads: dict[int, list[int]]):
    """Reference: each listed head's context set to 0 before the attention output projection."""

    def hook_for(zeroed):
        def hook(module, args):
            context = args[0].clone()
            for h in zeroed:
                context[..., h * HEAD_SIZE : (h + 1) * HEAD_SIZE] = 0
            return (context,)

        return hook

    layers = model.bert.encoder.layer
    handles = [layers[i].attention.output.dense.register_forward_pre_hook(hook_for(h)) for i, h in heads.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def neurons_zeroed(model, kept: dict[int, list[int]]):
    """Reference: every intermediate activation not listed as kept set to 0."""

    def hook_for(keep):
        def hook(module, args, output):
            mask = torch.zeros(output.shape[-1])
            mask[keep] = 1
            return output * mask

        return hook

    layers = model.bert.encoder.layer
    handles = [layers[i].intermediate.register_forward_hook(hook_for(k)) for i, k in kept.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# ---------------------------------------------------------------- removing heads and neurons


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_pruned_heads_give_the_outputs_of_zeroed_heads(attn_implementation):
    model, inputs = tiny_bert(attn_implementation=attn_implementation), padded_inputs()
    assert model.config._attn_implementation == attn_implementation  # 4.57: its own module class; 5.x: dispatch
    plan = {0: [1, 2], 1: [3]}
    with heads_zeroed(model, plan):
        reference = outputs(model, inputs)
    pruned = prune_heads(copy.deepcopy(model), plan)
    assert_close(outputs(pruned, inputs), reference, atol=1e-5)
    assert pruned.bert.encoder.layer[0].attention.self.query.out_features == 2 * HEAD_SIZE
    assert pruned.bert.encoder.layer[1].attention.output.dense.in_features == 3 * HEAD_SIZE


def test_a_layer_can_lose_every_head():
    model, inputs = tiny_bert(), padded_inputs()
    plan = {0: [0], 1: [0, 1, 2, 3]}
    with heads_zeroed(model, plan):
        reference = outputs(model, inputs)
    pruned = prune_heads(copy.deepcopy(model), plan)
    assert pruned.bert.encoder.layer[1].attention.self.query.out_features == 0
    assert_close(outputs(pruned, inputs), reference, atol=1e-5)


def test_pruning_twice_composes_with_original_head_indices():
    model, inputs = tiny_bert(), padded_inputs()
    once = prune_heads(copy.deepcopy(model), {0: [1, 3]})
    twice = prune_heads(prune_heads(copy.deepcopy(model), {0: [1]}), {0: [1, 3]})
    assert twice.config.pruned_heads == {0: [1, 3]}
    assert_close(outputs(twice, inputs), outputs(once, inputs), atol=1e-6)


def test_pruned_ffn_gives_the_outputs_of_zeroed_neurons():
    model, inputs = tiny_bert(), padded_inputs()
    kept = {0: [0, 3, 4, 10, 36], 1: list(range(0, FFN, 2))}
    with neurons_zeroed(model, kept):
        reference = outputs(model, inputs)
    pruned = prune_ffn(copy.deepcopy(model), kept)
    assert [layer.intermediate.dense.out_features for layer in pruned.bert.encoder.layer] == [5, 19]
    assert_close(outputs(pruned, inputs), reference, atol=1e-5)


def test_pruning_counts_and_config_map_follow_the_model():
    model = prune_ffn(prune_heads(tiny_bert(), {0: [0, 1], 1: [2]}), [list(range(30)), list(range(20))])
    assert pruning_counts(model) == {"heads_total": 8, "heads_pruned": 3, "ffn_total": 2 * FFN, "ffn_pruned": 7 + 17}
    assert model.config.distill_pruning == {"layers_kept": [0, 1], "heads_kept": [[2, 3], [0, 1, 3]], "intermediate_sizes": [30, 20],
                                            "original_intermediate_size": FFN}
    assert model.config.pruned_heads == {0: [0, 1], 1: [2]}


def test_uniform_ffn_pruning_yields_a_standard_intermediate_size():
    model = prune_ffn(tiny_bert(), [list(range(20)), list(range(5, 25))])
    assert model.config.intermediate_size == 20
    assert loads_natively(model)


# ---------------------------------------------------------------- importance


@pytest.mark.parametrize("how", ["value weights", "output columns"])
def test_head_importance_ranks_a_useless_head_last(how):
    model = tiny_bert()
    attention = model.bert.encoder.layer[1].attention
    rows = slice(2 * HEAD_SIZE, 3 * HEAD_SIZE)  # head 2 of layer 1
    with torch.no_grad():
        if how == "value weights":
            attention.self.value.weight[rows] = 0
            attention.self.value.bias[rows] = 0
        else:
            attention.output.dense.weight[:, rows] = 0
    scores = head_importance(model, labelled_batches())
    assert scores.shape == (LAYERS, HEADS)
    assert scores[1, 2] == 0
    assert scores.flatten().argmin().item() == 1 * HEADS + 2
    assert (scores.flatten().sort().values[1:] > 0).all()


def test_head_importance_marks_removed_heads_nan_and_leaves_weights_untouched():
    model = prune_heads(tiny_bert(), {0: [1], 1: [0, 1, 2, 3]})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = head_importance(model, labelled_batches(2))
    assert torch.isnan(scores).tolist() == [[False, True, False, False], [True] * 4]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("method", ["taylor", "magnitude"])
def test_ffn_importance_ranks_a_dead_neuron_last(method):
    model = tiny_bert()
    with torch.no_grad():
        model.bert.encoder.layer[0].output.dense.weight[:, 7] = 0  # neuron 7 of layer 0 writes nothing
    scores = ffn_importance(model, labelled_batches(), method=method)
    assert [s.shape[0] for s in scores] == [FFN, FFN]
    assert scores[0][7] == 0
    assert scores[0].argmin().item() == 7
    assert (scores[1] > 0).all()


# ---------------------------------------------------------------- selection


def test_select_heads_global_removes_the_lowest_scores_across_layers():
    scores = torch.tensor([[0.9, 0.1, 0.8, 0.2], [0.3, 0.7, 0.05, 0.6]])
    assert select_heads(scores, 0.5) == {0: [1, 3], 1: [0, 2]}


def test_select_heads_keeps_min_per_layer():
    scores = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.9, 0.9, 0.9, 0.9]])
    assert select_heads(scores, 0.5, min_per_layer=0) == {0: [0, 1, 2, 3]}
    assert select_heads(scores, 0.5, min_per_layer=1) == {0: [0, 1, 2], 1: [0]}


def test_select_heads_layer_scope_takes_the_share_from_each_layer():
    scores = torch.tensor([[0.9, 0.1, 0.8, 0.2], [0.3, 0.7, 0.05, 0.6]])
    assert select_heads(scores, 0.25, scope="layer") == {0: [1], 1: [2]}


def test_select_heads_counts_already_removed_heads_towards_the_share():
    nan = float("nan")
    scores = torch.tensor([[0.9, nan, 0.8, 0.2], [0.3, 0.7, 0.05, 0.6]])
    assert select_heads(scores, 0.25) == {1: [2]}  # 2 of 8: one was already gone
    assert select_heads(scores, 0.1) == {}


def test_select_neurons_layer_scope_keeps_the_same_count_everywhere():
    scores = [torch.tensor([5.0, 1.0, 4.0, 2.0]), torch.tensor([1.0, 2.0, 3.0, 0.5])]
    assert select_neurons(scores, 0.5, original_size=4) == [[0, 2], [1, 2]]


def test_select_neurons_global_scope_keeps_one_per_layer_at_least():
    scores = [torch.tensor([5.0, 6.0, 4.0, 7.0]), torch.tensor([0.1, 0.2, 0.3, 0.4])]
    # 4 of 8 go: layer 1 can give only 3 (it keeps its best), the 4th is layer 0's lowest.
    assert select_neurons(scores, 0.5, original_size=4, scope="global") == [[0, 1, 3], [3]]


# ---------------------------------------------------------------- saving and reloading


def _save(model, folder):
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def _head_and_ffn_pruned_folder(folder):
    """A model with heads removed (every layer keeps some) and FFN sizes uniform, saved; its outputs."""
    model = prune_ffn(prune_heads(tiny_bert(), {0: [0, 2], 1: [1]}), [list(range(3, 28)), list(range(10, 35))])
    return _save(model, folder), outputs(model, padded_inputs())


def test_our_loader_reloads_pruned_heads_and_ffn_exactly(tmp_path):
    folder, expected = _head_and_ffn_pruned_folder(tmp_path / "pruned")
    assert_close(outputs(load_pruned(folder), padded_inputs()), expected, atol=1e-6)
    assert json.loads((folder / "config.json").read_text())["intermediate_size"] == 25


@pytest.mark.skipif(TRANSFORMERS_5, reason="transformers 5 has no config.pruned_heads to rebuild pruned heads from")
def test_native_from_pretrained_reloads_pruned_heads_exactly_on_4x(tmp_path):
    folder, expected = _head_and_ffn_pruned_folder(tmp_path / "pruned")
    native = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert_close(outputs(native, padded_inputs()), expected, atol=1e-6)


@pytest.mark.skipif(not TRANSFORMERS_5, reason="transformers 4.x rebuilds pruned heads natively")
@pytest.mark.parametrize("plan", [{0: [0, 2], 1: [1]}, {0: [1], 1: [1]}], ids=["per-layer", "uniform"])
def test_native_from_pretrained_refuses_pruned_heads_on_5x(tmp_path, plan):
    """Never a model with wrong shapes: 5.x takes the head size from the config and stops on the mismatch."""
    folder = _save(prune_heads(tiny_bert(), plan), tmp_path / "pruned")
    assert not loads_natively(load_pruned(folder))
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):  # after its size-MISMATCH report
        AutoModelForSequenceClassification.from_pretrained(folder)


def test_uniformly_ffn_pruned_folder_loads_with_plain_from_pretrained(tmp_path):
    model = prune_ffn(tiny_bert(), [list(range(5, 25)), list(range(17, 37))])
    folder = _save(model, tmp_path / "pruned")
    assert loads_natively(model)
    native = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert_close(outputs(native, padded_inputs()), outputs(model, padded_inputs()), atol=1e-6)


@pytest.mark.parametrize("transformers_5, expected", [(False, True), (True, False)])
def test_head_pruning_loads_natively_only_under_the_4x_rule(transformers_5, expected):
    model = prune_heads(tiny_bert(), {0: [1], 1: [1]})
    assert loads_natively(model, transformers_5=transformers_5) is expected
    assert loads_natively(json.loads(model.config.to_json_string()), transformers_5=transformers_5) is expected


def test_emptied_layer_and_per_layer_ffn_reload_through_our_loader(tmp_path):
    inputs = padded_inputs()
    model = prune_ffn(prune_heads(tiny_bert(), {0: [3], 1: [0, 1, 2, 3]}), [list(range(30)), list(range(12))])
    expected = outputs(model, inputs)
    folder = _save(model, tmp_path / "pruned")
    reloaded = load_pruned(folder)
    assert_close(outputs(reloaded, inputs), expected, atol=1e-6)
    assert reloaded.config.distill_pruning == model.config.distill_pruning
    assert not loads_natively(reloaded)
    _save(reloaded, tmp_path / "again")  # a reloaded model saves the same map again
    assert_close(outputs(load_pruned(tmp_path / "again"), inputs), expected, atol=1e-6)


def test_our_loader_does_not_need_native_pruned_heads(tmp_path):
    """transformers 5 has no `pruned_heads`: the map in `distill_pruning` alone rebuilds the model."""
    inputs = padded_inputs()
    model = prune_heads(tiny_bert(), {0: [1], 1: [0, 3]})
    expected = outputs(model, inputs)
    folder = _save(model, tmp_path / "pruned")
    config = json.loads((folder / "config.json").read_text())
    del config["pruned_heads"]
    (folder / "config.json").write_text(json.dumps(config))
    assert_close(outputs(load_pruned(folder), inputs), expected, atol=1e-6)


@pytest.mark.skipif(TRANSFORMERS_5, reason="transformers 5 refuses the folder at from_pretrained already (see above)")
def test_native_loading_cannot_run_a_layer_without_heads(tmp_path):
    """Why `loads_natively` is False for such a model (transformers 4.x builds a 0-head layer)."""
    model = prune_heads(tiny_bert(), {1: [0, 1, 2, 3]})
    native = AutoModelForSequenceClassification.from_pretrained(_save(model, tmp_path / "pruned"))
    with pytest.raises(RuntimeError):
        native(**padded_inputs())


def test_pruned_model_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = prune_ffn(prune_heads(tiny_bert(), {0: [1, 2], 1: [0, 1, 2, 3]}), [list(range(20)), list(range(30))])
    inputs = padded_inputs()
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (), str(tmp_path / "m.onnx"), kwargs=inputs, input_names=list(axes), output_names=["logits"], dynamic_axes=axes, dynamo=False)
    other = {k: v[:2, :5] for k, v in padded_inputs(seed=5).items()}  # another batch and length
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    logits = session.run(None, {k: v.numpy() for k, v in other.items()})[0]
    torch.testing.assert_close(torch.from_numpy(logits), outputs(model, other)[0], atol=1e-5, rtol=0)


# ---------------------------------------------------------------- bad specs


def _recipe_with(prune: dict) -> dict:
    return {"name": "t", "task": "sst2", "stages": [{"kind": "teacher", "skip_training": True}, {"kind": "prune", **prune}]}


@pytest.mark.parametrize(
    "prune, message",
    [
        ({"heads": {"share": 1.0}}, "stages[1].heads.share: must be in [0, 1)"),
        ({"heads": {"share": -0.1}}, "stages[1].heads.share: must be in [0, 1)"),
        ({"ffn": {"share": 1.5}}, "stages[1].ffn.share: must be in [0, 1)"),
        ({"heads": {}}, "stages[1].heads: give either share or per_layer"),
        ({"heads": {"share": 0.5, "per_layer": {0: [1]}}}, "stages[1].heads: give either share or per_layer"),
        ({"heads": {"per_layer": {}}}, "stages[1].heads.per_layer: must name at least one layer"),
        ({"heads": {"per_layer": {0: []}}}, "stages[1].heads.per_layer: layer 0: give a layer index >= 0 and a non-empty list"),
        ({}, "stages[1]: give heads, ffn and/or layers"),
        ({"heads": {"per_layer": {0: [1]}}, "iterations": 2}, "stages[1]: explicit heads.per_layer lists are removed in one step"),
        ({"layers": {}}, "stages[1].layers: give either drop or count"),
        ({"layers": {"drop": [1], "count": 1}}, "stages[1].layers: give either drop or count"),
        ({"layers": {"drop": []}}, "stages[1].layers.drop: give a non-empty list of distinct layer indices >= 0"),
        ({"layers": {"drop": [1, 1]}}, "stages[1].layers.drop: give a non-empty list of distinct layer indices >= 0"),
        ({"layers": {"drop": [-1]}}, "stages[1].layers.drop: give a non-empty list of distinct layer indices >= 0"),
        ({"layers": {"count": 0}}, "stages[1].layers.count"),
        ({"layers": {"drop": [1]}, "iterations": 2}, "stages[1]: explicit layers.drop lists are removed in one step"),
    ],
)
def test_bad_prune_specs_name_the_field(prune, message):
    with pytest.raises(DistillError) as err:
        validate_recipe(_recipe_with(prune))
    assert message in str(err.value)


@pytest.mark.parametrize("train, epochs", [(None, 1.0), ({"learning_rate": 1e-4}, 1.0), ({"epochs": 2}, 2.0)])
def test_recovery_trains_one_epoch_unless_the_recipe_says_otherwise(train, epochs):
    recovery = {} if train is None else {"train": train}
    stage = validate_recipe(_recipe_with({"heads": {"share": 0.5}, "recovery": recovery})).stages[1]
    assert stage.recovery.train.epochs == epochs


def test_head_index_out_of_range_names_the_field():
    with pytest.raises(DistillError, match=r"stages\[1\]\.heads\.per_layer\[0\]: head 12 out of range; the model has heads 0\.\.11"):
        heads_from_lists({0: [1, 12]}, n_layers=6, n_heads=12, field="stages[1].heads.per_layer")
    with pytest.raises(DistillError, match=r"stages\[1\]\.heads\.per_layer: layer 6 out of range"):
        heads_from_lists({6: [0]}, n_layers=6, n_heads=12, field="stages[1].heads.per_layer")


def test_prune_functions_reject_out_of_range_indices():
    with pytest.raises(DistillError, match=r"heads_to_prune\[0\]: head\(s\) \[4\] out of range"):
        prune_heads(tiny_bert(), {0: [4]})
    with pytest.raises(DistillError, match=r"neurons_to_keep\[1\]: must keep at least one neuron"):
        prune_ffn(tiny_bert(), {1: []})
    with pytest.raises(DistillError, match=r"neurons_to_keep\[0\]: indices must be in 0\.\.36"):
        prune_ffn(tiny_bert(), {0: [37]})


def test_a_shared_layer_model_is_refused_with_the_reason():
    from transformers import AlbertConfig, AlbertForSequenceClassification

    model = AlbertForSequenceClassification(AlbertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                         intermediate_size=37, embedding_size=16, vocab_size=99))
    with pytest.raises(DistillError, match="pruning: model type 'albert' is not supported: ALBERT shares one set of layer weights"):
        prune_heads(model, {0: [1]})


# ---------------------------------------------------------------- the stage in a real pipeline


@pytest.mark.integration
def test_prune_stage_runs_in_the_pipeline_on_minilm_and_sst2(tmp_path, glue_data_dir, minilm_dir):
    from transformers import pipeline

    from distill.stages.pipeline import Pipeline

    recipe = validate_recipe(
        {
            "name": "prune-it",
            "task": "sst2",
            "output_dir": str(tmp_path / "runs"),
            "mixed_precision": "no",
            "data": {"dir": str(glue_data_dir), "max_length": 32, "train_limit": 16, "eval_limit": 8},
            "model": {"model": minilm_dir},
            "stages": [
                {"kind": "teacher", "skip_training": True, "train": {"eval_batch_size": 8}},
                {
                    "kind": "prune",
                    "heads": {"share": 0.5},
                    "ffn": {"share": 0.25},
                    "importance": {"batches": 1, "batch_size": 4},
                    "iterations": 2,
                    "recovery": {"train": {"max_steps": 1, "batch_size": 4, "eval_batch_size": 8}, "distill": True},
                },
            ],
        }
    )
    records = Pipeline(recipe, command="pytest").run()
    record = records[1]
    assert record["kind"] == "prune" and record["teacher"] == "teacher" and record["input"] == "teacher"
    assert (record["heads_total"], record["heads_pruned"]) == (72, 36)
    assert (record["ffn_total"], record["ffn_pruned"]) == (6 * 1536, 6 * 384)
    assert record["train_steps"] == 2 and record["loads_natively"] is not TRANSFORMERS_5  # heads pruned
    assert record["params"] < records[0]["params"]

    folder = tmp_path / "runs" / "prune-it" / "pruned"
    report = json.loads((tmp_path / "runs" / "prune-it" / "report.json").read_text())
    assert report["stages"][1]["heads_pruned"] == 36
    sentences = ["a gripping, beautifully acted film", "dull and far too long"]
    model = load_pruned(folder)
    ours = pipeline("text-classification", model=model, tokenizer=str(folder), device="cpu")(sentences, top_k=None)
    with torch.no_grad():
        probabilities = model(**AutoTokenizer.from_pretrained(folder)(sentences, padding=True, return_tensors="pt")).logits.softmax(-1)
    for scores, row in zip(ours, probabilities):
        assert {d["label"]: d["score"] for d in scores} == pytest.approx({model.config.id2label[i]: p.item() for i, p in enumerate(row)}, abs=1e-6)
    if not TRANSFORMERS_5:  # 4.57 also rebuilds the pruned heads itself
        native = pipeline("text-classification", model=str(folder), device="cpu")(sentences, top_k=None)
        for a, b in zip(native, ours):
            assert {d["label"]: pytest.approx(d["score"], abs=1e-6) for d in a} == {d["label"]: d["score"] for d in b}


def test_curve_recovery_runs_the_given_steps_and_scores_checkpoints_every_n_steps_when_asked():
    script = load_script("bench_pruning")
    base = ["--model", "m", "--task", "sst2", "--out", "x.json", "--recovery-steps", "500"]
    assert recovery_block(script.parse_args(base))["train"] == {"epochs": 1.0, "batch_size": 32, "learning_rate": 5e-5, "max_steps": 500}
    every_100 = recovery_block(script.parse_args([*base, "--recovery-eval-every", "100"]))
    assert every_100["train"]["eval_every"] == 100 and every_100["distill"] is True


def test_curve_recovery_adds_the_hidden_state_term_when_asked():
    script = load_script("bench_pruning")
    base = ["--model", "m", "--task", "sst2", "--out", "x.json"]
    assert recovery_block(script.parse_args(base))["loss"] == {"alpha_hidden": 0.0}
    assert recovery_block(script.parse_args([*base, "--recovery-alpha-hidden", "1"]))["loss"] == {"alpha_hidden": 1.0}
    assert script.bench_recipe(script.parse_args([*base, "--recovery-alpha-hidden", "1", "--head-shares", "0.5", "--ffn-shares"]))[
        "stages"][-1]["recovery"]["loss"]["alpha_hidden"] == 1.0


def test_a_zero_recovery_flag_is_refused_before_any_point_runs(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"]}))
    script = load_script("bench_pruning")
    for flag in ("--recovery-steps", "--recovery-eval-every"):
        out = tmp_path / "curve.json"
        assert script.main(["--model", str(tmp_path), "--task", "sst2", "--out", str(out), "--head-shares", "0.5",
                            "--ffn-shares", flag, "0"]) == 2
        err = capsys.readouterr().err
        assert "recovery.train." in err and "greater than 0" in err and len(err.strip().splitlines()) == 1
        assert not out.exists()


def test_the_both_curve_prunes_heads_and_ffn_neurons_at_the_same_share():
    script = load_script("bench_pruning")
    args = script.parse_args(["--model", "m", "--task", "sst2", "--out", "x.json", "--head-shares", "--ffn-shares",
                              "--both-shares", "0.5", "--no-recovery"])
    (point,) = script.bench_recipe(args)["stages"][1:]
    assert point["name"] == "both-50" and point["heads"]["share"] == 0.5 and point["ffn"]["share"] == 0.5


@pytest.mark.integration
def test_pruning_curve_script_writes_one_timed_record_per_point(tmp_path, glue_data_dir, minilm_dir, minilm_classifier_dir, capsys):
    script = load_script("bench_pruning")
    assert script.main(["--model", minilm_dir, "--task", "sst2", "--out", str(tmp_path / "x.json")]) == 2  # no classifier
    assert script.main(["--model", str(minilm_classifier_dir), "--task", "sst2", "--out", str(tmp_path / "x.json"),
                        "--latency-batch-sizes", "1", "1"]) == 2  # refused before any point is computed
    assert "--latency-batch-sizes: Value error, must be distinct positive integers" in capsys.readouterr().err
    out = tmp_path / "curve.json"
    args = ["--model", str(minilm_classifier_dir), "--task", "sst2", "--out", str(out), "--data-dir", str(glue_data_dir),
            "--work-dir", str(tmp_path / "work"), "--head-shares", "0", "0.5", "--ffn-shares", "0.5", "--both-shares", "0.5", "--no-recovery",
            "--train-limit", "64", "--eval-limit", "32", "--max-length", "32", "--importance-batches", "2",
            "--latency-batch-sizes", "1", "4", "--warmup", "1", "--repeats", "2", "--threads", "1"]
    assert script.main(args) == 0
    records = json.loads(out.read_text())
    assert [(r["curve"], r["share"], r["recovery"]) for r in records] == [
        ("heads", 0.0, False), ("heads", 0.5, False), ("ffn", 0.5, False), ("both", 0.5, False)]
    assert [r["heads_pruned"] for r in records] == [0, 36, 0, 36]
    assert [r["ffn_pruned"] for r in records] == [0, 0, 6 * 1536 // 2, 6 * 1536 // 2]
    assert all(r["latency_ms_bs1"] > 0 and r["latency_ms_bs4"] > 0 for r in records)
    assert records[1]["params"] < records[0]["params"] and records[0]["command"].startswith("python scripts/bench_pruning.py")
    assert records[0]["packages"]["transformers"] and "commit" in records[0]  # provenance: versions and code


@pytest.mark.integration
def test_a_recovered_curve_point_keeps_its_holdout_check(tmp_path, glue_data_dir, minilm_classifier_dir):
    script = load_script("bench_pruning")
    out = tmp_path / "curve.json"
    args = ["--model", str(minilm_classifier_dir), "--task", "sst2", "--out", str(out), "--data-dir", str(glue_data_dir),
            "--work-dir", str(tmp_path / "work"), "--head-shares", "0.5", "--ffn-shares", "--no-plain",
            "--recovery-steps", "2", "--recovery-alpha-hidden", "1", "--train-limit", "64", "--holdout-size", "16",
            "--eval-limit", "32", "--max-length", "32", "--importance-batches", "2", "--batch-size", "8",
            "--latency-batch-sizes", "1", "--warmup", "1", "--repeats", "2", "--threads", "1"]
    assert script.main(args) == 0
    (record,) = json.loads(out.read_text())
    assert record["recovery"] is True and record["train_steps"] == 2
    (check,) = record["recovery_checks"]
    assert set(check) == {"selection_before", "selection_after", "recovery_kept"}
    assert check["recovery_kept"] == (check["selection_after"] > check["selection_before"])


# ---------------------------------------------------------------- recovery never hurts


def recovery_context(selection_scores: list[float]):
    """Just what train_recovery reads: a task metric, data, an accelerator, and an evaluate that
    returns `selection_scores` in turn (the first: the compressed weights, before recovery)."""
    from types import SimpleNamespace

    import datasets
    from accelerate import Accelerator

    scores = iter(selection_scores)
    train = datasets.Dataset.from_dict({"input_ids": [[1, 2]] * 8, "labels": [0, 1] * 4})
    collate = lambda rows: {"input_ids": torch.tensor([r["input_ids"] for r in rows]), "labels": torch.tensor([r["labels"] for r in rows])}
    return SimpleNamespace(task=SimpleNamespace(primary_metric="accuracy"), recipe=SimpleNamespace(seed=0),
                           data=SimpleNamespace(train=train, selection=train, collator=collate), accelerator=Accelerator(cpu=True),
                           evaluate=lambda model, dataset=None: {"accuracy": next(scores)})


@pytest.mark.parametrize("scores, kept", [([0.8, 0.7, 0.75], False), ([0.8, 0.7, 0.85], True), ([0.8, 0.8, 0.8], False)])
def test_recovery_is_kept_only_when_it_beats_the_compressed_weights_on_held_out_examples(scores, kept, tmp_path):
    from distill.recipe import TrainConfig
    from distill.stages.recovery import train_recovery

    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    compressed = {k: v.clone() for k, v in model.state_dict().items()}
    step = lambda m, batch: (torch.nn.functional.cross_entropy(m(batch["input_ids"].float()), batch["labels"]), {})
    cfg = TrainConfig(max_steps=2, batch_size=4, eval_every=1, learning_rate=0.5, warmup_ratio=0.0, checkpoint_every=None)
    model, _, check = train_recovery(recovery_context(scores), model, cfg=cfg, step=step, extra=[], log_path=tmp_path / "log.jsonl",
                                     description="recovery")
    assert check == {"selection_before": scores[0], "selection_after": max(scores[1:]), "recovery_kept": kept}
    unchanged = all(torch.equal(v, compressed[k]) for k, v in model.state_dict().items())
    assert unchanged is not kept

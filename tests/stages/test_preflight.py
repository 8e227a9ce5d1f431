"""distill.stages.preflight: a recipe's layer indices checked against the local model configs it names,
and its run folder against files in the way, before any stage trains."""

import re

import pytest
from transformers import BertConfig

from distill import DistillError
from distill.recipe import validate_recipe
from distill.stages.preflight import check_output_dir, check_recipe_against_models


@pytest.fixture
def bert_dir(tmp_path):
    """A folder holding only the config of a tiny BERT with `layers` layers (no weights needed)."""

    def make(layers: int) -> str:
        folder = tmp_path / f"bert{layers}"
        BertConfig(num_hidden_layers=layers, hidden_size=8, num_attention_heads=2, intermediate_size=16).save_pretrained(folder)
        return str(folder)

    return make


def recipe(model: str, *stages: dict):
    return validate_recipe({"name": "t", "task": "sst2", "model": {"model": model}, "stages": list(stages)})


def test_student_layers_beyond_the_teacher_are_rejected(bert_dir):
    teacher = bert_dir(2)
    with pytest.raises(DistillError, match=rf"^stages\[0\]\.student\.layers: layer 2 is beyond the teacher's 2 layers \(0\.\.1\) in {re.escape(teacher)}$"):
        check_recipe_against_models(recipe(teacher, {"kind": "distill", "student": {"layers": [0, 2]}}))


def test_student_layers_within_the_teacher_pass(bert_dir):
    check_recipe_against_models(recipe(bert_dir(2), {"kind": "distill", "student": {"layers": [1, 0]}}, {"kind": "baseline"}))


def test_baseline_layers_are_checked_too(bert_dir):
    with pytest.raises(DistillError, match=r"^stages\[0\]\.student\.layers: layer 5 is beyond"):
        check_recipe_against_models(recipe(bert_dir(2), {"kind": "baseline", "student": {"layers": [5]}}))


def test_teacher_stage_tuned_from_the_recipe_model_has_its_depth(bert_dir):
    with pytest.raises(DistillError, match=r"^stages\[1\]\.student\.layers: layer 3 is beyond the teacher's 2 layers"):
        check_recipe_against_models(recipe(bert_dir(2), {"kind": "teacher"}, {"kind": "distill", "student": {"layers": [3]}}))


def test_from_pretrained_checkpoint_bounds_the_layers_copied_out_of_it(bert_dir):
    checkpoint = bert_dir(2)
    stage = {"kind": "distill", "student": {"from_pretrained": checkpoint, "layers": [3]}}
    with pytest.raises(DistillError, match=rf"layer 3 is beyond the from_pretrained checkpoint's 2 layers \(0\.\.1\) in {re.escape(checkpoint)}$"):
        check_recipe_against_models(recipe(bert_dir(4), stage))


def test_a_distill_stage_teaching_has_its_students_depth(bert_dir):
    small = {"kind": "distill", "name": "small", "student": {"layers": [0, 1]}}
    smaller = {"kind": "distill", "name": "smaller", "teacher": "small", "student": {"layers": [2]}}
    with pytest.raises(DistillError, match=r"^stages\[1\]\.student\.layers: layer 2 is beyond the teacher's 2 layers \(0\.\.1\) in stage 'small'$"):
        check_recipe_against_models(recipe(bert_dir(4), small, smaller))


def test_layer_map_beyond_the_teacher_is_rejected(bert_dir):
    stage = {"kind": "distill", "student": {"layers": [0, 1]}, "loss": {"layer_map": [1, 3]}}
    with pytest.raises(DistillError, match=r"^stages\[0\]\.loss\.layer_map\[1\]: 3 is beyond the teacher's 2 layers \(hidden_states 1\.\.2\)"):
        check_recipe_against_models(recipe(bert_dir(2), stage))


def test_layer_map_not_one_entry_per_default_student_layer_is_rejected(bert_dir):
    # The default student of a 4-layer teacher copies every other layer: 2 layers.
    stage = {"kind": "distill", "loss": {"layer_map": [1, 2, 4]}}
    with pytest.raises(DistillError, match=r"^stages\[0\]\.loss\.layer_map: has 3 entries but the student has 2 layers"):
        check_recipe_against_models(recipe(bert_dir(4), stage))


def test_layer_map_follows_a_fresh_students_config_overrides(bert_dir):
    stage = {"kind": "distill", "student": {"config_overrides": {"num_hidden_layers": 1}}, "loss": {"layer_map": [1, 2]}}
    with pytest.raises(DistillError, match=r"has 2 entries but the student has 1 layers"):
        check_recipe_against_models(recipe(bert_dir(2), stage))


def test_hub_id_is_not_fetched_and_skipped():
    check_recipe_against_models(recipe("some-org/not-a-local-model", {"kind": "distill", "student": {"layers": [0, 99]}}))


def test_teacher_tuned_from_another_stage_is_skipped(bert_dir):
    # The teacher's depth is its input stage's model's, not followed: the distill stage checks it when it runs.
    stages = ({"kind": "distill", "name": "general"}, {"kind": "teacher", "input": "general"},
              {"kind": "distill", "student": {"layers": [0, 99]}})
    check_recipe_against_models(recipe(bert_dir(2), *stages))


def test_output_dir_that_is_a_file_is_rejected(tmp_path):
    (tmp_path / "out").write_text("")
    with pytest.raises(DistillError, match=rf"^output_dir: {re.escape(str(tmp_path / 'out'))} is a file, not a folder"):
        check_output_dir(tmp_path / "out" / "t")


def test_run_folder_that_is_a_file_is_rejected(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "t").write_text("")
    with pytest.raises(DistillError, match=rf"^output_dir: {re.escape(str(tmp_path / 'out' / 't'))} is a file, not a folder"):
        check_output_dir(tmp_path / "out" / "t")


def test_output_dir_below_a_file_is_rejected(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(DistillError, match=rf"^output_dir: {re.escape(str(tmp_path / 'file'))} is a file, not a folder \(the run writes to"):
        check_output_dir(tmp_path / "file" / "sub" / "t")


def test_output_dir_not_made_yet_passes(tmp_path):
    check_output_dir(tmp_path / "new" / "t")
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------- the architecture layer, before training


@pytest.fixture
def albert_dir(tmp_path):
    from transformers import AlbertConfig

    folder = tmp_path / "albert"
    AlbertConfig(num_hidden_layers=2, hidden_size=8, num_attention_heads=2, intermediate_size=16, embedding_size=8).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("stage", [{"kind": "prune", "heads": {"share": 0.5}}, {"kind": "factorize", "linear": {"ratio": 0.5}},
                                   {"kind": "distill"}])
def test_a_stage_that_edits_layers_is_refused_for_a_shared_layer_model_naming_stage_and_reason(albert_dir, stage):
    with pytest.raises(DistillError, match=rf"^stages\[1\] \(\w+, {stage['kind']}\): model type 'albert' is not supported: ALBERT shares"):
        check_recipe_against_models(recipe(albert_dir, {"kind": "teacher"}, stage))


def test_a_teacher_stage_alone_needs_no_architecture_entry(albert_dir):
    check_recipe_against_models(recipe(albert_dir, {"kind": "teacher"}, {"kind": "onnx"}))


def test_factorizing_a_layer_the_family_lacks_is_refused(bert_dir):
    factorize = {"kind": "factorize", "linear": {"ratio": 0.5, "modules": ["ffn_in", "qkv"]}}
    with pytest.raises(DistillError, match=r"^stages\[0\] \(factorized, factorize\)\.linear\.modules: bert blocks have no 'qkv' layer; "
                                           r"they have query, key, value, attention_output, ffn_in, ffn_out$"):
        check_recipe_against_models(recipe(bert_dir(2), factorize))


@pytest.mark.parametrize(("model", "accepted"), [("WordPiece", True), ("BPE", True), ("Unigram", True), ("WordLevel", False)])
def test_trim_vocab_is_checked_against_the_tokenizer_kind_before_training(bert_dir, model, accepted):
    import json
    from pathlib import Path

    folder = bert_dir(2)
    (Path(folder) / "tokenizer.json").write_text(json.dumps({"model": {"type": model}}))
    checked = recipe(folder, {"kind": "teacher"}, {"kind": "trim_vocab"})
    if accepted:
        check_recipe_against_models(checked)
    else:
        with pytest.raises(DistillError, match=r"^stages\[1\] \(trimmed, trim_vocab\): trims WordPiece, BPE and Unigram .* a WordLevel tokenizer$"):
            check_recipe_against_models(checked)


# ---------------------------------------------------------------- whole layers a prune stage removes


def test_a_prune_stage_dropping_a_layer_beyond_its_input_is_refused(bert_dir):
    teacher = bert_dir(4)
    message = rf"^stages\[1\]\.layers\.drop: layer 4 is beyond the input's 4 layers \(0\.\.3\) in {re.escape(teacher)}$"
    with pytest.raises(DistillError, match=message):
        check_recipe_against_models(recipe(teacher, {"kind": "teacher"}, {"kind": "prune", "layers": {"drop": [1, 4]}}))


@pytest.mark.parametrize("layers, which", [({"count": 2}, "count"), ({"drop": [0, 1]}, "drop")])
def test_a_prune_stage_removing_every_layer_of_a_distilled_student_is_refused(bert_dir, layers, which):
    stages = ({"kind": "distill", "student": {"layers": [0, 3]}}, {"kind": "prune", "layers": layers})
    message = rf"^stages\[1\]\.layers\.{which}: would remove 2 of the input's 2 layers in stage 'student'; keep at least one$"
    with pytest.raises(DistillError, match=message):
        check_recipe_against_models(recipe(bert_dir(4), *stages))


def test_a_prune_stage_starts_from_the_layers_an_earlier_prune_stage_left(bert_dir):
    stages = ({"kind": "teacher"}, {"kind": "prune", "name": "first", "layers": {"count": 2}},
              {"kind": "prune", "name": "second", "layers": {"drop": [2]}})
    message = r"^stages\[2\]\.layers\.drop: layer 2 is beyond the input's 2 layers \(0\.\.1\) in stage 'first'$"
    with pytest.raises(DistillError, match=message):
        check_recipe_against_models(recipe(bert_dir(4), *stages))


def test_prune_stages_within_their_inputs_layers_pass(bert_dir):
    stages = ({"kind": "teacher"}, {"kind": "prune", "name": "first", "layers": {"drop": [0, 3]}},
              {"kind": "prune", "name": "second", "input": "first", "layers": {"count": 1}})
    check_recipe_against_models(recipe(bert_dir(4), *stages))

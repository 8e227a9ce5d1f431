"""The recipe schema: what a valid recipe looks like, and the one-line errors for bad ones."""

from pathlib import Path

import pytest
import yaml

from distill import DistillError
from distill.recipe import apply_override, load_recipe, validate_recipe

REPO = Path(__file__).resolve().parents[2]

MINIMAL = {"name": "t", "task": "sst2", "stages": [{"kind": "teacher"}, {"kind": "distill"}, {"kind": "baseline"}]}


def write(tmp_path, recipe) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe) if isinstance(recipe, dict) else recipe)
    return path


@pytest.mark.parametrize("path", sorted((REPO / "recipes").rglob("*.yaml")), ids=lambda p: str(p.relative_to(REPO / "recipes")))
def test_shipped_recipes_validate(path):
    assert load_recipe(path).name


@pytest.mark.parametrize("path", sorted((REPO / "recipes" / "glue").glob("*.yaml")), ids=lambda p: p.name)
def test_each_glue_recipe_runs_the_tables_rows(path):
    recipe = load_recipe(path)
    assert recipe.task == path.stem and recipe.data.holdout_size > 0  # checkpoints never picked on dev
    table_rows = ["teacher", "student", "baseline", "baseline_teacher_init", "student_int8", "pruned", "trimmed", "compressed_int8"]
    # The two smallest tasks also run the transfer-set student (its MLM first): the ablation.
    extra = ["mlm_augmenter", "student_transfer"] if path.stem in ("rte", "mrpc") else []
    assert [s.name for s in recipe.stages][: len(table_rows) + len(extra)] == table_rows + extra
    assert all(len(s.seeds) == 3 for s in recipe.stages if s.kind in ("distill", "baseline"))


def test_defaults_follow_distilbert():
    loss = validate_recipe(MINIMAL).stages[1].loss
    assert (loss.temperature, loss.alpha_kd, loss.alpha_hard, loss.alpha_cos) == (2.0, 5.0, 2.0, 1.0)


def test_default_stage_names_follow_kind():
    assert [s.name for s in validate_recipe(MINIMAL).stages] == ["teacher", "student", "baseline"]


def test_error_names_file_and_field_path(tmp_path):
    recipe = {**MINIMAL, "stages": [{"kind": "distill", "loss": {"temperature": -1}}]}
    with pytest.raises(DistillError, match=r"recipe\.yaml: stages\[0\]\.loss\.temperature: .*greater than 0"):
        load_recipe(write(tmp_path, recipe))


def test_unknown_key_is_an_error(tmp_path):
    recipe = {**MINIMAL, "stages": [{"kind": "distill", "loss": {"alpah_kd": 1.0}}]}
    with pytest.raises(DistillError, match=r"stages\[0\]\.loss\.alpah_kd: unknown key"):
        load_recipe(write(tmp_path, recipe))


def test_unknown_stage_kind_is_an_error():
    with pytest.raises(DistillError, match=r"stages\[0\]"):
        validate_recipe({**MINIMAL, "stages": [{"kind": "destill"}]})


def test_all_zero_loss_weights_are_an_error():
    zero = {"alpha_kd": 0, "alpha_hard": 0, "alpha_cos": 0}
    with pytest.raises(DistillError, match=r"stages\[0\]\.loss: at least one alpha"):
        validate_recipe({**MINIMAL, "stages": [{"kind": "distill", "loss": zero}]})


def test_repeated_student_layers_are_an_error():
    with pytest.raises(DistillError, match=r"stages\[0\]\.student\.layers: layer indices must be distinct"):
        validate_recipe({**MINIMAL, "stages": [{"kind": "distill", "student": {"layers": [0, 0]}}]})


def test_duplicate_stage_names_are_an_error():
    with pytest.raises(DistillError, match="duplicate stage name 'teacher'"):
        validate_recipe({**MINIMAL, "stages": [{"kind": "teacher"}, {"kind": "teacher"}]})


def test_teacher_reference_must_name_an_earlier_stage():
    with pytest.raises(DistillError, match=r"stages\[0\]\.teacher: no earlier stage named 'teacher'"):
        validate_recipe({**MINIMAL, "stages": [{"kind": "distill", "teacher": "teacher"}, {"kind": "teacher"}]})


def test_missing_required_field_is_named():
    with pytest.raises(DistillError, match="task: required field is missing"):
        validate_recipe({"name": "t", "stages": [{"kind": "teacher"}]})


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(DistillError, match=r"recipe\.yaml:2: not valid YAML"):
        load_recipe(write(tmp_path, "name: t\n  task: sst2\n"))


def test_missing_recipe_file_is_an_error(tmp_path):
    with pytest.raises(DistillError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_override_by_stage_name_and_index_agree():
    by_name, by_index = yaml.safe_load(yaml.safe_dump(MINIMAL)), yaml.safe_load(yaml.safe_dump(MINIMAL))
    apply_override(by_name, "stages.student.train.epochs=2")
    apply_override(by_index, "stages.1.train.epochs=2")
    assert by_name == by_index
    assert validate_recipe(by_name).stages[1].train.epochs == 2


def test_override_values_are_parsed_as_yaml():
    raw = yaml.safe_load(yaml.safe_dump(MINIMAL))
    apply_override(raw, "stages.student.student.layers=[1, 3]")
    assert validate_recipe(raw).stages[1].student.layers == [1, 3]


def test_override_of_an_unknown_field_fails_validation(tmp_path):
    with pytest.raises(DistillError, match=r"data\.max_lenght: unknown key"):
        load_recipe(write(tmp_path, MINIMAL), ["data.max_lenght=12"])


def test_override_without_equals_is_an_error():
    with pytest.raises(DistillError, match="expected key.path=value"):
        apply_override(dict(MINIMAL), "seed")


def test_hash_changes_with_content():
    other = {**MINIMAL, "seed": 7}
    assert validate_recipe(MINIMAL).hash() != validate_recipe(other).hash()
    assert validate_recipe(MINIMAL).hash() == validate_recipe(dict(MINIMAL)).hash()


def test_schema_changes_keep_the_fingerprints_of_finished_stages():
    """A new optional setting must not make `distill run` redo finished work: the committed GLUE
    SST-2 recipe still fingerprints every stage as its committed run recorded them."""
    import json

    from distill.stages.pipeline import stage_fingerprint

    root = Path(__file__).resolve().parents[2]
    recipe = load_recipe(root / "recipes/glue/sst2.yaml")
    recorded = {s["stage"]: s["stage_hash"] for s in json.loads((root / "benchmarks/glue/sst2.json").read_text())["stages"]}
    fingerprints: dict[str, str] = {}
    for index, stage in enumerate(recipe.stages):
        fingerprints[stage.name] = stage_fingerprint(recipe, index, dict(fingerprints))
    assert fingerprints == recorded

"""A table of malformed recipes: each one fails with a one-line error that names the field (or
file and line), exit code 2, no traceback, and no stage folder marked done."""

import json

import pytest
import yaml

from distill.cli import main

BASE = {
    "name": "fuzz",
    "task": "sst2",
    "data": {"max_length": 32, "train_limit": 64, "eval_limit": 32},
    "model": {"model": "minilm-l6"},
    "stages": [
        {"kind": "distill", "name": "student", "train": {"max_steps": 1, "batch_size": 8}},
        {"kind": "baseline", "train": {"max_steps": 1, "batch_size": 8}},
    ],
}

# (overrides, text the one-line error must contain)
SCHEMA_CASES = [
    (["seed=abc"], "seed: Input should be a valid integer"),
    (["task=sst3"], "task: 'sst3' is not a GLUE task"),
    (["name="], "name:"),
    (["name=a b"], "name: String should match pattern"),
    (["mixed_precision=fp8"], "mixed_precision: Input should be"),
    (["data.max_length=0"], "data.max_length: Input should be greater than 0"),
    (["data.max_length=-5"], "data.max_length"),
    (["data.max_length=ten"], "data.max_length: Input should be a valid integer"),
    (["data.train_limit=0"], "data.train_limit: Input should be greater than 0"),
    (["data.eval_limit=-1"], "data.eval_limit"),
    (["data.holdout_size=-1"], "data.holdout_size"),
    (["data.shuffle=true"], "data.shuffle: unknown key"),
    (["model.trust_remote_code=maybe"], "model.trust_remote_code: Input should be a valid boolean"),
    (["model.allow_pickle=[1]"], "model.allow_pickle"),
    (["model.weights=x"], "model.weights: unknown key"),
    (["stages=[]"], "stages: List should have at least 1 item"),
    (["stages=5"], "stages: Input should be a valid list"),
    (["stages.student.kind=distil"], "stages[0]"),
    (["stages.student.train.epochs=0"], "stages[0].train.epochs: Input should be greater than 0"),
    (["stages.student.train.epochs=-1"], "stages[0].train.epochs"),
    (["stages.student.train.batch_size=0"], "stages[0].train.batch_size"),
    (["stages.student.train.learning_rate=0"], "stages[0].train.learning_rate"),
    (["stages.student.train.learning_rate=2"], "stages[0].train.learning_rate: Input should be less than 1"),
    (["stages.student.train.warmup_ratio=1.5"], "stages[0].train.warmup_ratio"),
    (["stages.student.train.grad_accum_steps=0"], "stages[0].train.grad_accum_steps"),
    (["stages.student.train.max_grad_norm=-1"], "stages[0].train.max_grad_norm"),
    (["stages.student.train.eval_every=0"], "stages[0].train.eval_every"),
    (["stages.student.train.max_steps=0"], "stages[0].train.max_steps"),
    (["stages.student.train.weight_decay=-0.1"], "stages[0].train.weight_decay"),
    (["stages.student.train.optimizer=sgd"], "stages[0].train.optimizer: unknown key"),
    (["stages.student.train.checkpoint_every=0"], "stages[0].train.checkpoint_every"),
    (["stages.student.loss.temperature=0"], "stages[0].loss.temperature: Input should be greater than 0"),
    (["stages.student.loss.temperature=-2"], "stages[0].loss.temperature"),
    (["stages.student.loss.temperature=hot"], "stages[0].loss.temperature: Input should be a valid number"),
    (["stages.student.loss.alpha_kd=-1"], "stages[0].loss.alpha_kd: Input should be greater than or equal to 0"),
    (["stages.student.loss={alpha_kd: 0, alpha_hard: 0, alpha_cos: 0}"], "stages[0].loss: at least one alpha"),
    (["stages.student.loss.alpha_hidden=x"], "stages[0].loss.alpha_hidden"),
    (["stages.student.loss.alpha_ce=1"], "stages[0].loss.alpha_ce: unknown key"),
    (["stages.student.student.layers=[]"], "stages[0].student.layers: must list at least one teacher layer"),
    (["stages.student.student.layers=[0, 0]"], "stages[0].student.layers: layer indices must be distinct"),
    (["stages.student.student.layers=[-1]"], "stages[0].student.layers: layer indices must be >= 0"),
    (["stages.student.student.layers=first"], "stages[0].student.layers: Input should be a valid list"),
    (["stages.student.student.init_from=elsewhere"], "stages[0].student.init_from"),
    (["stages.student.student={layers: [0], config_overrides: {hidden_size: 64}}"], "config_overrides builds a fresh model"),
    (["stages.student.teacher=ghost"], "stages[0].teacher: no earlier stage named 'ghost'"),
    (["stages.student.seeds=notalist"], "stages[0].seeds: Input should be a valid list"),
    (["stages.baseline.loss={alpha_kd: 1}"], "stages[1].loss: unknown key"),
    (["stages.baseline.name=student"], "duplicate stage name 'student'"),
    (["stages.student.cache_teacher_logits=true"], "cache_teacher_logits: the cache holds logits only"),
    (["task=mytask"], "a custom task needs data.train_file, data.validation_file and data.text_fields"),
]

# Wrong overrides: caught before the recipe is validated.
OVERRIDE_CASES = [
    (["stages.9.name=x"], "override 'stages.9.name=x': index 9 out of range"),
    (["stages.ghost.train.epochs=1"], "no list item named 'ghost'"),
    (["data.max_length.value=1"], "'data.max_length' is not a mapping"),
]


def run(tmp_path, overrides, recipe=None, capsys=None):
    path = tmp_path / "recipe.yaml"
    if not path.exists():
        path.write_text(recipe if isinstance(recipe, str) else yaml.safe_dump(recipe or BASE))
    return main(["run", str(path), *overrides, f"output_dir={tmp_path / 'runs'}"])


def assert_one_line_error(capsys, expected: str):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("distill: error:"), err
    assert expected in err, err
    assert "Traceback" not in err


def assert_nothing_marked_done(tmp_path):
    done = list((tmp_path / "runs").glob("*/*/metrics.json"))
    assert not [p for p in done if not p.parent.name.endswith(".partial")], done


@pytest.mark.parametrize("overrides,expected", SCHEMA_CASES + OVERRIDE_CASES, ids=lambda v: str(v)[:50])
def test_invalid_recipe_is_rejected_before_any_work(tmp_path, capsys, overrides, expected):
    assert run(tmp_path, overrides) == 2
    assert_one_line_error(capsys, expected)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "text,expected",
    [
        ("name: t\n  task: sst2\n", "recipe.yaml:2: not valid YAML"),
        ("- 1\n- 2\n", "a recipe is a YAML mapping"),
        ("", "a recipe is a YAML mapping"),
    ],
)
def test_unreadable_recipe_file_is_rejected(tmp_path, capsys, text, expected):
    assert run(tmp_path, [], recipe=text) == 2
    assert_one_line_error(capsys, expected)


def test_missing_recipe_file_is_rejected(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert_one_line_error(capsys, "nope.yaml: recipe file not found")


# Problems only the data or the models reveal: found when the run starts, before the stage trains.
@pytest.mark.integration
@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["data.dir=/nonexistent/glue"], "data directory /nonexistent/glue"),
        (["data.holdout_size=1000"], "data.holdout_size: 1000 leaves no training examples"),
        (["model.model=/nonexistent/model"], "/nonexistent/model"),
        (["stages.student.student.layers=[0, 9]"], "student.layers: [9] out of range; the teacher has layers 0..5"),
        (["stages.student.loss.layer_map=[0, 1, 2]"], "layer_map[0]: must be an int >= 1"),
        (["stages.student.loss.layer_map=[2, 4]"], "has 2 entries but the student has 3 layers"),
        (["stages.student.loss.layer_map=[2, 4, 9]"], "beyond the teacher's 6 layers"),
        (["stages.student.train.batch_size=7", "stages.student.train.grad_accum_steps=2"], "does not split evenly"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_runtime_problem_is_one_line_and_keeps_finished_work(tmp_path, capsys, glue_data_dir, overrides, expected):
    assert run(tmp_path, [f"data.dir={glue_data_dir}", *overrides]) == 2
    assert_one_line_error(capsys, expected)
    assert_nothing_marked_done(tmp_path)


@pytest.mark.parametrize(
    "rows,expected",
    [
        ("text,label\n", "train.csv: no data rows"),
        ("text,label\ngood film,positive\nbad film,neutral\n", "train.csv:3"),
        ("text,label\n,positive\n", "train.csv:2"),
        ("sentence,label\ngood film,positive\n", "train.csv"),
    ],
    ids=["empty file", "label outside label_names", "empty text", "missing text column"],
)
def test_bad_custom_data_file_names_file_and_line(tmp_path, capsys, rows, expected):
    train = tmp_path / "train.csv"
    train.write_text(rows)
    valid = tmp_path / "valid.csv"
    valid.write_text("text,label\nfine film,positive\nawful film,negative\n")
    recipe = json.loads(json.dumps(BASE))
    recipe["task"] = "reviews"
    recipe["data"].update(train_file=str(train), validation_file=str(valid), text_fields=["text"],
                          label_names=["negative", "positive"])
    assert run(tmp_path, [], recipe=recipe) == 2
    assert_one_line_error(capsys, expected)
    assert not (tmp_path / "runs").exists()

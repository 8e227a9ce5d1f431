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
    (["task=sst3"], "task: 'sst3' is not a built-in task"),
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
    (["stages.student.loss.layer_map=[0, 1, 2]"], "stages[0].loss.layer_map[0]: Input should be greater than or equal to 1"),
    (["stages.student.loss.layer_map=[]"], "stages[0].loss.layer_map: List should have at least 1 item"),
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


# Indices beyond the models' layers (minilm-l6 has 6): found from the model configs, by
# `distill validate` too, before any data is read.
MODEL_CASES = [
    (["stages.student.student.layers=[0, 9]"], "stages[0].student.layers: layer 9 is beyond the teacher's 6 layers (0..5) in minilm-l6"),
    (["stages.baseline.student.layers=[0, 6]"], "stages[1].student.layers: layer 6 is beyond the teacher's 6 layers"),
    (["stages.student.student={init_from: pretrained, layers: [7]}"], "layer 7 is beyond the pre-trained model's 6 layers"),
    (["stages.student.loss.layer_map=[2, 4, 9]"], "stages[0].loss.layer_map[2]: 9 is beyond the teacher's 6 layers"),
    (["stages.student.loss.layer_map=[2, 4]"], "stages[0].loss.layer_map: has 2 entries but the student has 3 layers"),
    (["stages.student.student.layers=[0, 1]", "stages.student.loss.layer_map=[2, 4, 6]"], "has 3 entries but the student has 2 layers"),
]


def run(tmp_path, overrides, recipe=None, capsys=None, command="run"):
    path = tmp_path / "recipe.yaml"
    if isinstance(recipe, bytes):
        path.write_bytes(recipe)
    elif not path.exists():
        path.write_text(recipe if isinstance(recipe, str) else yaml.safe_dump(recipe or BASE))
    return main([command, str(path), *overrides, f"output_dir={tmp_path / 'runs'}"])


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


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("overrides,expected", MODEL_CASES, ids=lambda v: str(v)[:50])
def test_index_beyond_the_models_layers_is_rejected_before_any_work(tmp_path, capsys, minilm_dir, command, overrides, expected):
    assert run(tmp_path, overrides, command=command) == 2
    assert_one_line_error(capsys, expected)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "file,output_dir",
    [("runs", "runs"), ("runs", "runs/sub"), ("runs/fuzz", "runs")],
    ids=["output_dir is a file", "its parent is a file", "the run folder is a file"],
)
def test_output_dir_that_is_a_file_is_rejected_before_any_work(tmp_path, capsys, file, output_dir):
    (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / file).write_text("not a folder")
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(BASE))
    assert main(["run", str(tmp_path / "recipe.yaml"), "--output-dir", str(tmp_path / output_dir)]) == 2
    assert_one_line_error(capsys, f"output_dir: {tmp_path / file} is a file, not a folder")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("name: t\n  task: sst2\n", "recipe.yaml:2: not valid YAML"),
        ("- 1\n- 2\n", "a recipe is a YAML mapping"),
        ("", "a recipe is a YAML mapping"),
        (b"name: t\ntask: caf\xe9\n", "recipe.yaml: not UTF-8 text (byte 17: invalid continuation byte)"),
        ("name: t\n".encode("utf-16"), "recipe.yaml: not UTF-8 text (byte 0: invalid start byte)"),
    ],
    ids=["bad indentation", "a list", "empty", "latin-1", "utf-16"],
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


@pytest.mark.parametrize(
    "lines,expected",
    [
        ("ann\tB-person\nlives\n", "train.conll:2: no tag on this line"),
        ("ann\tB-person\n\nyork\tB-city\n", "train.conll:3: unknown tag 'B-city'"),
        ("ann\tO\nsmith\tI-person\n", "train.conll:2: tag I-person follows O, which is not BIO"),
    ],
    ids=["line without a tag", "unknown tag", "not BIO"],
)
def test_bad_tag_file_names_file_and_line(tmp_path, capsys, lines, expected):
    train = tmp_path / "train.conll"
    train.write_text(lines)
    valid = tmp_path / "valid.conll"
    valid.write_text("ann\tB-person\nlives\tO\n")
    recipe = json.loads(json.dumps(BASE))
    recipe["task"] = "people"
    recipe["data"].update(task_type="token_classification", train_file=str(train), validation_file=str(valid),
                          label_names=["O", "B-person", "I-person"])
    assert run(tmp_path, [], recipe=recipe) == 2
    assert_one_line_error(capsys, expected)
    assert not (tmp_path / "runs").exists()


def test_task_without_its_train_split_stops_before_any_stage(tmp_path, capsys, glue_data_dir):
    # QNLI's train split is not in the offline data: the run must not get as far as a teacher.
    recipe = json.loads(json.dumps(BASE))
    recipe["task"] = "qnli"
    assert run(tmp_path, ["--data-dir", str(glue_data_dir)], recipe=recipe) == 2
    assert_one_line_error(capsys, "qnli: the train split is missing: no file")
    assert not (tmp_path / "runs").exists()

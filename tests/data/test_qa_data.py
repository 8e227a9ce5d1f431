"""Extractive QA data: the built-in squad task (offline split of the real dev file by article), custom
SQuAD JSON / JSON Lines files, and the one-line errors that stop a run before any training."""

import json

import datasets
import pytest
import yaml

from distill import DistillError
from distill.cli import main
from distill.data import splits as data
from distill.data.files import check_task_files
from distill.data.qa_files import read_qa_file
from distill.data.splits import load_task_splits, task_features
from distill.data.tasks import custom_qa_task, get_task, task_of
from distill.recipe import load_recipe
from distill.stages.preflight import check_stages_for_task

CONTEXT = "The Broncos beat the Panthers in Santa Clara."
GOOD_ROW = {
    "id": "q1",
    "title": "Super Bowl",
    "context": CONTEXT,
    "question": "Who won?",
    "answers": {"text": ["The Broncos", "Broncos"], "answer_start": [0, 4]},
}


def squad_json(rows: list[dict]) -> str:
    """Flat rows as SQuAD's nested file: one article, one paragraph per row."""
    paragraphs = [
        {
            "context": row.get("context"),
            "qas": [
                {key: row[key] for key in ("id", "question") if key in row}
                | {
                    "answers": [
                        {"text": t, "answer_start": s} for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"])
                    ]
                }
            ],
        }
        for row in rows
    ]
    for paragraph in paragraphs:
        if paragraph["context"] is None:
            del paragraph["context"]
    return json.dumps({"version": "1.1", "data": [{"title": "Super Bowl", "paragraphs": paragraphs}]})


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def squad_splits(glue_data_dir):
    if not (glue_data_dir / "squad" / "dev-v1.1.json").is_file():
        pytest.skip("squad/dev-v1.1.json not in the shared data folder")
    return load_task_splits(get_task("squad"), glue_data_dir)


# --- the built-in task --------------------------------------------------------------------


def test_offline_squad_split_has_8582_train_and_1988_validation_questions(squad_splits):
    assert (len(squad_splits["train"]), len(squad_splits["validation"])) == (8582, 1988)


def test_offline_squad_split_puts_no_article_in_both_splits(squad_splits):
    train_titles, validation_titles = set(squad_splits["train"]["title"]), set(squad_splits["validation"]["title"])
    assert (len(train_titles), len(validation_titles)) == (38, 10)
    assert not train_titles & validation_titles
    assert not set(squad_splits["train"]["context"]) & set(squad_splits["validation"]["context"])


def test_offline_squad_rows_have_the_hub_schema(squad_splits):
    assert squad_splits["validation"].features == task_features(get_task("squad"))
    row = squad_splits["train"][0]
    assert row["context"][row["answers"]["answer_start"][0] :].startswith(row["answers"]["text"][0])


def test_squad_task_says_its_offline_validation_split_is_not_the_published_dev_set():
    task = get_task("squad")
    assert task.is_question_answering and not task.is_regression and task.kind == "question_answering"
    assert "not the published dev set" in task.answer_spans.local_split_note
    assert (task.metric_names, task.primary_metric, task.hub_dataset) == (("exact_match", "f1"), "f1", ("rajpurkar/squad", None))


def test_hub_squad_split_keeps_the_flat_schema(monkeypatch):
    def fake_load_dataset(path, name, revision=None):
        assert (path, name) == ("rajpurkar/squad", None)
        split = datasets.Dataset.from_dict({key: [value] for key, value in GOOD_ROW.items()} | {"extra": [1]})
        return datasets.DatasetDict({"train": split, "validation": split})

    monkeypatch.setattr(data.datasets, "load_dataset", fake_load_dataset)
    splits = load_task_splits(get_task("squad"), None)
    assert splits["validation"].features == task_features(get_task("squad"))
    assert splits["train"][0] == GOOD_ROW


# --- custom files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, text",
    [("squad.json", squad_json([GOOD_ROW])), ("rows.jsonl", json.dumps(GOOD_ROW) + "\n"), ("rows.json", json.dumps([GOOD_ROW]))],
)
def test_custom_qa_file_reads_nested_squad_json_and_flat_rows_alike(tmp_path, name, text):
    columns = read_qa_file(write(tmp_path / name, text))
    assert {key: values[0] for key, values in columns.items()} == GOOD_ROW


def test_custom_qa_task_comes_from_task_type_and_two_files(tmp_path):
    recipe = load_recipe(
        recipe_file(tmp_path, "my_qa", {"task_type": "question_answering", "train_file": "t.jsonl", "validation_file": "v.jsonl"})
    )
    task = task_of(recipe)
    assert task == custom_qa_task("my_qa") and task.is_question_answering and task.hub_dataset is None


def test_text_fields_are_refused_for_a_question_answering_task(tmp_path):
    with pytest.raises(DistillError, match=r"^data.text_fields: question-answering files have SQuAD's fields"):
        task_of(load_recipe(recipe_file(tmp_path, "squad", {"text_fields": ["question", "context"]})))


def test_custom_qa_task_without_files_asks_for_them(tmp_path):
    with pytest.raises(DistillError, match="needs data.train_file and data.validation_file"):
        task_of(load_recipe(recipe_file(tmp_path, "my_qa", {"task_type": "question_answering"})))


# --- bad input: one line naming the file, the question and the field ------------------------


def bad(**changes) -> dict:
    row = {**GOOD_ROW, **changes}
    return {key: value for key, value in row.items() if value is not None}


BAD_ROWS = [
    (
        bad(answers={"text": ["Broncos"], "answer_start": [5]}),
        "'answers.answer_start[0]' = 5 does not point at its text 'Broncos'",
    ),
    (bad(question=None), "missing field 'question'"),
    (bad(context=None), "missing field 'context'"),
    (bad(context="  "), "empty context"),
    (bad(question=""), "empty question"),
]


@pytest.mark.parametrize("row, reason", BAD_ROWS)
@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_bad_question_error_names_file_question_id_and_field(tmp_path, row, reason, suffix):
    path = tmp_path / f"bad{suffix}"
    write(path, squad_json([GOOD_ROW | {"id": "q0"}, row]) if suffix == ".json" else json.dumps(row) + "\n")
    with pytest.raises(DistillError) as error:
        read_qa_file(path)
    message = str(error.value)
    where = "data[0].paragraphs[1].qas[0]" if suffix == ".json" else "line 1"
    assert "\n" not in message and message.startswith(f"{path}: question 'q1' ({where}): ") and reason in message, message


def test_a_question_without_an_id_is_named_by_its_place_in_the_file(tmp_path):
    path = write(tmp_path / "bad.json", squad_json([GOOD_ROW, bad(id=None)]))
    with pytest.raises(DistillError, match=r"bad.json: data\[0\].paragraphs\[1\].qas\[0\]: missing field 'id'"):
        read_qa_file(path)


def test_a_question_id_used_twice_is_refused(tmp_path):
    path = write(tmp_path / "twice.jsonl", json.dumps(GOOD_ROW) + "\n" + json.dumps(GOOD_ROW) + "\n")
    with pytest.raises(DistillError, match=r"question 'q1' \(line 2\): the id is used twice \(also at line 1\)"):
        read_qa_file(path)


def recipe_file(tmp_path, task, data):
    recipe = {
        "name": "qa",
        "task": task,
        "data": data,
        "model": {"model": "minilm-l6"},
        "stages": [{"kind": "distill", "name": "student", "train": {"max_steps": 1, "batch_size": 8}}],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_validate_stops_on_a_bad_qa_file_with_exit_2_and_one_line(tmp_path, capsys):
    write(tmp_path / "train.jsonl", json.dumps(GOOD_ROW) + "\n")
    validation = write(tmp_path / "dev.jsonl", json.dumps(bad(answers={"text": ["Broncos"], "answer_start": [0]})) + "\n")
    recipe = recipe_file(
        tmp_path,
        "my_qa",
        {"task_type": "question_answering", "train_file": str(tmp_path / "train.jsonl"), "validation_file": str(validation)},
    )
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"distill: error: {validation}: question 'q1' (line 1): "), err


def test_early_check_of_the_local_squad_file_finds_a_bad_question_in_the_validation_articles(tmp_path):
    folder = tmp_path / "data"
    (folder / "squad").mkdir(parents=True)
    articles = [json.loads(squad_json([GOOD_ROW | {"id": f"q{number}"}]))["data"][0] for number in range(48)]
    articles[40]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 3  # in the validation articles
    write(folder / "squad" / "dev-v1.1.json", json.dumps({"version": "1.1", "data": articles}))
    with pytest.raises(
        DistillError,
        match=r"dev-v1.1.json: question 'q40' \(data\[40\].paragraphs\[0\].qas\[0\]\): "
        r"field 'answers.answer_start\[0\]' = 3",
    ):
        check_task_files(load_recipe(recipe_file(tmp_path, "squad", {})), str(folder))


def test_stages_refuse_a_question_answering_task_until_they_train_one(tmp_path):
    with pytest.raises(DistillError, match="stages: task squad is question answering"):
        check_stages_for_task(load_recipe(recipe_file(tmp_path, "squad", {})), get_task("squad"))

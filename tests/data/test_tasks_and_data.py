"""Task registry and data loading: real GLUE files, their quirks, bad rows, custom files, tokenizing."""

import json
from pathlib import Path

import datasets
import pytest
import torch

from distill import DistillError
from distill.data import splits as data
from distill.data.splits import load_task_splits, resolve_data_dir, take_subset, task_features, tokenize_splits
from distill.data.tasks import TASKS, custom_task, get_task

PUBLISHED_ROW_COUNTS = {  # /work/shared/data/README.md
    "sst2": (67349, 872),
    "cola": (8551, 1043),
    "mrpc": (3668, 408),
    "rte": (2490, 277),
    "stsb": (5749, 1500),
    "wnli": (635, 71),
}


def write_glue_file(root: Path, task: str, file_name: str, text: str) -> Path:
    path = root / task / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir)


# --- registry ------------------------------------------------------------------------------


def test_registry_holds_the_seven_local_glue_tasks_wnut17_and_squad():
    assert sorted(TASKS) == ["cola", "mrpc", "qnli", "rte", "squad", "sst2", "stsb", "wnli", "wnut17"]


@pytest.mark.parametrize(
    "name, text_fields, label_names, primary",
    [
        ("sst2", ("sentence",), ("negative", "positive"), "accuracy"),
        ("cola", ("sentence",), ("unacceptable", "acceptable"), "matthews_correlation"),
        ("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "f1"),
        ("rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"), "accuracy"),
        ("qnli", ("question", "sentence"), ("entailment", "not_entailment"), "accuracy"),
        ("wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"), "accuracy"),
        ("stsb", ("sentence1", "sentence2"), None, "pearson"),
    ],
)
def test_task_spec_matches_hub_glue_conventions(name, text_fields, label_names, primary):
    task = get_task(name)
    assert (task.text_fields, task.label_names, task.primary_metric) == (text_fields, label_names, primary)
    assert task.hub_dataset == ("nyu-mll/glue", name)
    assert task.primary_metric in task.metric_names


def test_mrpc_and_stsb_report_two_metrics():
    assert get_task("mrpc").metric_names == ("f1", "accuracy")
    assert get_task("stsb").metric_names == ("pearson", "spearmanr")


def test_stsb_is_regression_with_one_output():
    stsb = get_task("stsb")
    assert stsb.is_regression and stsb.num_labels == 1
    assert not get_task("sst2").is_regression and get_task("sst2").num_labels == 2


def test_unknown_task_error_lists_known_tasks():
    with pytest.raises(DistillError, match=r"unknown task 'mnli'; known: cola, mrpc, qnli, rte, squad, sst2, stsb, wnli, wnut17"):
        get_task("mnli")


def test_custom_task_rejects_primary_metric_not_reported():
    with pytest.raises(DistillError, match="primary_metric"):
        custom_task("reviews", ["text"], ["bad", "good"], metric_names=["accuracy"], primary_metric="f1")


def test_custom_task_rejects_glue_name():
    with pytest.raises(DistillError, match="clashes"):
        custom_task("SST-2", ["sentence"], ["negative", "positive"])


# --- real GLUE files -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PUBLISHED_ROW_COUNTS))
def test_local_glue_task_has_published_row_counts_and_hub_schema(name, glue_data_dir):
    task = get_task(name)
    splits = load_task_splits(task, glue_data_dir)
    assert (len(splits["train"]), len(splits["validation"])) == PUBLISHED_ROW_COUNTS[name]
    assert splits["train"].features == splits["validation"].features == task_features(task)
    assert splits["train"].column_names == [*task.text_fields, "label"]


def test_qnli_validation_loads_without_train_file(glue_data_dir):
    splits = load_task_splits(get_task("qnli"), glue_data_dir, splits=("validation",))
    assert list(splits) == ["validation"] and len(splits["validation"]) == 5463


def test_qnli_missing_train_file_error_names_path_and_hint(glue_data_dir):
    with pytest.raises(DistillError) as error:
        load_task_splits(get_task("qnli"), glue_data_dir)
    message = str(error.value)
    assert message.startswith("qnli: the train split is missing")
    assert str(glue_data_dir / "qnli" / "train.tsv") in message
    assert "--data-dir" in message and "DISTILL_DATA_DIR" in message


def test_sst2_dev_label_balance(glue_data_dir):
    labels = load_task_splits(get_task("sst2"), glue_data_dir, splits=("validation",))["validation"]["label"]
    assert (list(labels).count(0), list(labels).count(1)) == (428, 444)


def test_rte_string_labels_map_to_hub_indices(glue_data_dir):
    labels = list(load_task_splits(get_task("rte"), glue_data_dir, splits=("validation",))["validation"]["label"])
    assert (labels.count(0), labels.count(1)) == (146, 131)  # entailment, not_entailment


def test_cola_headerless_first_line_is_data(glue_data_dir):
    first = load_task_splits(get_task("cola"), glue_data_dir, splits=("validation",))["validation"][0]
    assert first == {"sentence": "The sailors rode the breeze clear of the rocks.", "label": 1}


def test_mrpc_bom_is_stripped_and_header_is_not_data(glue_data_dir):
    train = load_task_splits(get_task("mrpc"), glue_data_dir, splits=("train",))["train"]
    assert train[0]["sentence1"].startswith("Amrozi accused his brother")
    assert not any(text.startswith("\ufeff") for text in train["sentence1"])
    assert "#1 String" not in set(train["sentence1"])


def test_stsb_unmatched_quotes_keep_rows_apart(glue_data_dir):
    validation = load_task_splits(get_task("stsb"), glue_data_dir, splits=("validation",))["validation"]
    texts = list(validation["sentence1"]) + list(validation["sentence2"])
    assert any(text.count('"') % 2 for text in texts)  # the quirk is really there
    assert not any("\n" in text or "\t" in text for text in texts)
    labels = list(validation["label"])
    assert len(labels) == 1500 and all(0.0 <= label <= 5.0 for label in labels)
    assert validation[0]["label"] == 5.0


# --- malformed local rows ------------------------------------------------------------------


@pytest.mark.parametrize(
    "task, text, line, reason",
    [
        ("sst2", "sentence\tlabel\ngood film\t1\nbad film\t0\textra\n", 3, "expected 2 columns"),
        ("sst2", "sentence\tlabel\ngood film\t1\n \t0\n", 3, "empty text in column 'sentence'"),
        ("sst2", "sentence\tlabel\ngood film\t2\n", 2, "label 2 is out of range"),
        ("sst2", "sentence\tlabel\ngood film\tgreat\n", 2, "label 'great' is not one of negative, positive"),
        ("rte", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tcontradiction\n", 3,
         "label 'contradiction'"),
        ("stsb", "a\tb\tsentence1\tsentence2\tscore\nx\ty\tone\ttwo\t5.5\n", 2, "label 5.5 is outside 0..5"),
        ("stsb", "a\tb\tsentence1\tsentence2\tscore\nx\ty\tone\ttwo\thigh\n", 2, "label 'high' is not a number"),
        ("cola", "gj04\t1\t\tfine.\ngj04\t1\t\n", 2, "expected 4 columns"),
    ],
    ids=["column-count", "empty-text", "label-out-of-range", "label-unknown", "nli-label-unknown",
         "stsb-above-5", "stsb-not-number", "cola-short-row"],
)
def test_malformed_row_error_names_file_and_line(tmp_path, task, text, line, reason):
    path = write_glue_file(tmp_path, task, "train.tsv", text)
    with pytest.raises(DistillError) as error:
        load_task_splits(get_task(task), tmp_path, splits=("train",))
    assert str(error.value).startswith(f"{path}:{line}: ")
    assert reason in str(error.value)


def test_header_without_expected_column_is_reported(tmp_path):
    path = write_glue_file(tmp_path, "sst2", "dev.tsv", "text\tlabel\ngood\t1\n")
    with pytest.raises(DistillError, match=rf"{path}:1: no column named 'sentence'"):
        load_task_splits(get_task("sst2"), tmp_path, splits=("validation",))


def test_crlf_line_endings_are_accepted(tmp_path):
    write_glue_file(tmp_path, "sst2", "dev.tsv", "sentence\tlabel\r\ngood\t1\r\nbad\t0\r\n")
    validation = load_task_splits(get_task("sst2"), tmp_path, splits=("validation",))["validation"]
    assert validation["sentence"] == ["good", "bad"] and validation["label"] == [1, 0]


# --- custom tasks and explicit files -------------------------------------------------------


def test_custom_csv_task_maps_string_labels_and_reads_quoted_commas(tmp_path):
    task = custom_task("reviews", ["title", "body"], ["bad", "good"], label_column="verdict")
    csv_path = tmp_path / "train.csv"
    csv_path.write_text('title,body,verdict\nFine,"Tasty, cheap",good\nMeh,"Cold\nand late",bad\nOk,Fine,1\n')
    train = load_task_splits(task, None, train_file=csv_path, validation_file=csv_path)["train"]
    assert train.column_names == ["title", "body", "label"]
    assert list(train["label"]) == [1, 0, 1]
    assert train[1]["body"] == "Cold\nand late"


def test_custom_csv_error_cites_line_where_row_starts(tmp_path):
    task = custom_task("reviews", ["text"], ["bad", "good"])
    csv_path = tmp_path / "train.csv"
    csv_path.write_text('text,label\n"two\nlines",good\n"x",meh\n')
    with pytest.raises(DistillError, match=rf"^{csv_path}:4: label 'meh'"):
        load_task_splits(task, None, train_file=csv_path, validation_file=csv_path)


def test_custom_jsonl_task_checks_int_label_range(tmp_path):
    task = custom_task("topics", ["text"], ["a", "b", "c"])
    good, bad = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    good.write_text('{"text": "x", "label": 2}\n\n{"text": "y", "label": "a"}\n')
    bad.write_text('{"text": "x", "label": 0}\n{"text": "y", "label": 3}\n')
    assert list(load_task_splits(task, None, train_file=good, splits=("train",))["train"]["label"]) == [2, 0]
    with pytest.raises(DistillError, match=rf"^{bad}:2: label 3 is out of range"):
        load_task_splits(task, None, validation_file=bad, splits=("validation",))


def test_custom_json_array_error_cites_record_line(tmp_path):
    task = custom_task("scores", ["text"], None, label_range=(0, 1))
    path = tmp_path / "train.json"
    path.write_text(json.dumps([{"text": "x", "label": 0.5}, {"text": "y", "label": 1.5}], indent=1))
    with pytest.raises(DistillError, match=rf"^{path}:6: label 1.5 is outside 0..1"):
        load_task_splits(task, None, train_file=path, splits=("train",))


def test_custom_json_missing_field_is_reported(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "x"}\n')
    with pytest.raises(DistillError, match=rf"^{path}:1: missing field 'label'"):
        load_task_splits(custom_task("t", ["text"], ["a", "b"]), None, train_file=path, splits=("train",))


def test_custom_task_without_files_asks_for_them():
    with pytest.raises(DistillError, match="custom task 'reviews' needs a train_file"):
        load_task_splits(custom_task("reviews", ["text"], ["bad", "good"]), None)


def test_unsupported_file_type_is_rejected(tmp_path):
    path = tmp_path / "train.parquet"
    path.write_bytes(b"")
    with pytest.raises(DistillError, match="unsupported file type .parquet"):
        load_task_splits(custom_task("t", ["text"], ["a", "b"]), None, train_file=path, splits=("train",))


def test_glue_task_explicit_file_uses_hub_column_names(tmp_path):
    path = tmp_path / "dev.csv"
    path.write_text("sentence1,sentence2,label\na,b,equivalent\n")
    validation = load_task_splits(get_task("mrpc"), None, validation_file=path, splits=("validation",))["validation"]
    assert validation[0] == {"sentence1": "a", "sentence2": "b", "label": 1}


# --- Hub and data dir ----------------------------------------------------------------------


def test_hub_splits_drop_idx_and_match_local_schema(monkeypatch):
    def fake_load_dataset(path, name, revision=None):
        assert (path, name, revision) == ("nyu-mll/glue", "sst2", None)
        hub_features = datasets.Features({"sentence": datasets.Value("string"),
                                          "label": datasets.ClassLabel(names=["negative", "positive"]),
                                          "idx": datasets.Value("int32")})
        split = datasets.Dataset.from_dict({"sentence": ["a"], "label": [1], "idx": [0]}, features=hub_features)
        return datasets.DatasetDict({"train": split, "validation": split, "test": split})

    monkeypatch.setattr(data.datasets, "load_dataset", fake_load_dataset)
    splits = load_task_splits(get_task("sst2"), None)
    assert list(splits) == ["train", "validation"]
    assert splits["train"].features == task_features(get_task("sst2"))


def test_hub_failure_suggests_local_data_dir(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(data.datasets, "load_dataset", offline)
    with pytest.raises(DistillError, match="nyu-mll/glue.*no network.*DISTILL_DATA_DIR"):
        load_task_splits(get_task("rte"), None)


def test_resolve_data_dir_prefers_explicit_over_env(tmp_path, monkeypatch):
    (tmp_path / "env").mkdir()
    monkeypatch.setenv("DISTILL_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path) == tmp_path
    assert resolve_data_dir(None) == tmp_path / "env"


def test_resolve_data_dir_none_means_hub():
    assert resolve_data_dir(None) is None


def test_resolve_data_dir_rejects_missing_folder(tmp_path):
    with pytest.raises(DistillError, match="nowhere.*does not exist"):
        resolve_data_dir(tmp_path / "nowhere")


# --- tokenizing and subsets ----------------------------------------------------------------


def test_tokenize_truncates_without_padding_and_drops_text(tokenizer):
    task = get_task("mrpc")
    long_text = " ".join(["word"] * 100)
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"sentence1": [long_text, "short"], "sentence2": [long_text, "pair"], "label": [1, 0]},
        features=task_features(task))})
    train = tokenize_splits(splits, tokenizer, task, max_length=16)["train"]
    assert set(train.column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    lengths = [len(ids) for ids in train["input_ids"]]
    assert lengths[0] == 16 and lengths[1] < 16  # truncated, and not padded
    assert list(train["labels"]) == [1, 0]


def test_tokenize_stsb_labels_are_float32(tokenizer, glue_data_dir):
    task = get_task("stsb")
    validation = load_task_splits(task, glue_data_dir, splits=("validation",))
    validation["validation"] = validation["validation"].select(range(8))
    tokenized = tokenize_splits(validation, tokenizer, task, max_length=32)["validation"]
    assert tokenized.features["labels"] == datasets.Value("float32")
    assert tokenized.with_format("torch")[0]["labels"].dtype == torch.float32


def test_take_subset_is_deterministic_per_seed():
    ds = datasets.Dataset.from_dict({"x": list(range(100))})
    first, again, other = take_subset(ds, 10, seed=1), take_subset(ds, 10, seed=1), take_subset(ds, 10, seed=2)
    assert len(first) == 10 and list(first["x"]) == list(again["x"]) != list(other["x"])


def test_take_subset_none_or_large_limit_keeps_everything():
    ds = datasets.Dataset.from_dict({"x": list(range(5))})
    assert take_subset(ds, None, seed=0) is ds and len(take_subset(ds, 50, seed=0)) == 5


def test_take_subset_rejects_non_positive_limit():
    with pytest.raises(DistillError, match="limit"):
        take_subset(datasets.Dataset.from_dict({"x": [1]}), 0, seed=0)


def test_custom_classification_defaults_to_accuracy_and_macro_f1():
    task = custom_task("reviews", ["text"], ["bad", "good", "mixed"])
    assert (task.metric_names, task.primary_metric, task.num_labels) == (("accuracy", "f1_macro"), "accuracy", 3)

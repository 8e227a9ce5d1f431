"""Model cards and Hub metadata of token-classification (NER) runs: a tiny random tagger's run of
the built-in wnut17 task, built like tests/test_publish.py's (no training, no download)."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from test_publish import REPO, _add_onnx_stage, make_run
from transformers import BertForTokenClassification

from distill.publish import push_run


def _metrics(value: float) -> dict[str, float]:
    """What distill.data.metrics.token_metrics reports: seqeval's micro scores, per-token accuracy, per-type F1."""
    return {"f1": value, "precision": value + 0.05, "recall": value - 0.05, "accuracy": 0.9,
            "f1_corporation": 0.1, "f1_person": value + 0.1}


def _card(tmp_path: Path, stage: str = "student", data: dict | None = None, onnx: bool = False) -> ModelCard:
    run_dir = make_run(tmp_path, "wnut17", BertForTokenClassification, _metrics, data)
    if onnx:
        _add_onnx_stage(run_dir)
    push_run(run_dir, REPO, stage=stage, dry_run_dir=tmp_path / "out")
    return ModelCard.load(tmp_path / "out" / "README.md")


def test_token_card_has_the_token_classification_pipeline_tag_and_tags(tmp_path):
    data = _card(tmp_path).data

    assert data.pipeline_tag == "token-classification"
    assert {"token-classification", "ner", "wnut17"} <= set(data.tags)
    assert not {"text-classification", "glue"} & set(data.tags)


def test_token_model_index_holds_the_runs_seqeval_scores(tmp_path):
    results = _card(tmp_path).data.eval_results

    assert {(r.task_type, r.task_name, r.dataset_type, r.dataset_name, r.dataset_split) for r in results} == {
        ("token-classification", "Token Classification", "leondz/wnut_17", "WNUT 17", "validation")}
    assert [(r.metric_type, r.metric_name, r.metric_value) for r in results] == [
        ("f1", "seqeval entity-level micro F1", 0.7),
        ("precision", "seqeval entity-level micro precision", 0.75),
        ("recall", "seqeval entity-level micro recall", 0.65),
        ("accuracy", "per-token accuracy", 0.9),
    ]  # per-type F1 is left to the card's body


def test_token_card_body_has_per_type_f1_of_each_stage(tmp_path):
    text = _card(tmp_path).text

    assert "| stage | precision | recall | token accuracy | F1 corporation | F1 person |" in text
    assert "| **student** (this model) | 75.00 | 65.00 | 90.00 | 10.00 | 80.00 |" in text


def test_torch_token_artifact_gets_the_aggregating_pipeline_snippet(tmp_path):
    text = _card(tmp_path).text

    assert f'pipeline("token-classification", model="{REPO}", aggregation_strategy="simple")' in text
    assert "text-classification" not in text


def test_onnx_token_artifact_gets_a_tagger_snippet(tmp_path):
    text = _card(tmp_path, stage="int8", onnx=True).text

    assert "is_split_into_words=True" in text and "id2label[int(i)] for i in logits[0].argmax(-1)" in text
    assert "ORTModelForTokenClassification" in text and "ORTModelForSequenceClassification" not in text
    assert f'pipeline("token-classification", model="{REPO}"' not in text  # no torch weights in that folder


@pytest.mark.parametrize(("label_all_subtokens", "alignment"), [
    (None, "only the first word piece of each word carried its tag"),
    (True, "every word piece of a word carried its tag, a B- tag continuing as I-"),
])
def test_token_card_says_how_word_pieces_were_labelled_and_scored(tmp_path, label_all_subtokens, alignment):
    text = _card(tmp_path, data={"label_all_subtokens": label_all_subtokens, "max_length": 64}).text

    assert f"Word pieces: in training {alignment}" in text
    assert "evaluation tags each word by its first piece. Words beyond data.max_length (64 word pieces" in text
    assert "seqeval's entity-level micro averages (conlleval rules" in text

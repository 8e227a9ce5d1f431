"""Recipes for token-classification tasks: what is refused before any stage runs, and tiny taggers
through evaluation and ONNX export."""

import numpy as np
import pytest
import torch

from distill import DistillError
from distill.data.tasks import IGNORE_INDEX, get_task
from distill.recipe import validate_recipe
from distill.stages.pipeline import task_of
from distill.stages.preflight import check_stages_for_task


def recipe(**changes):
    raw = {"name": "r", "task": "wnut17", "stages": [{"kind": "teacher"}, {"kind": "distill"}]}
    raw.update(changes)
    return validate_recipe(raw)


def test_wnut17_is_a_built_in_token_task():
    task = task_of(recipe())
    assert task.is_token_classification and task.primary_metric == "f1"
    assert task.entity_types == ("corporation", "creative-work", "group", "location", "person", "product")


def test_token_settings_on_a_sentence_task_are_refused():
    with pytest.raises(DistillError, match="^data.label_all_subtokens: applies to token classification only"):
        task_of(recipe(task="sst2", data={"label_all_subtokens": True}))


def test_custom_token_task_needs_its_tags():
    raw = {"task_type": "token_classification", "train_file": "t.conll", "validation_file": "d.conll"}
    with pytest.raises(DistillError, match="needs data.train_file, data.validation_file .* and data.label_names"):
        task_of(recipe(task="mine", data=raw))


def test_custom_token_task_from_files():
    raw = {"task_type": "token_classification", "train_file": "t.conll", "validation_file": "d.conll",
           "label_names": ["O", "B-x", "I-x"]}
    task = task_of(recipe(task="mine", data=raw))
    assert task.is_token_classification and task.label_names == ("O", "B-x", "I-x")


def test_cached_teacher_logits_are_refused_for_taggers():
    r = recipe(stages=[{"kind": "teacher"}, {"kind": "distill", "cache_teacher_logits": True,
                                            "loss": {"alpha_cos": 0.0}}])
    with pytest.raises(DistillError, match=r"^stages\[1\]\.cache_teacher_logits: .* per token"):
        check_stages_for_task(r, task_of(r))


@pytest.fixture
def tiny_tagger():
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=64, num_labels=13)
    return BertForTokenClassification(config).eval()


def test_evaluation_scores_only_the_labelled_words(tiny_tagger):
    from accelerate import Accelerator
    from datasets import Dataset
    from helpers import wordpiece_tokenizer
    from transformers import DataCollatorForTokenClassification

    from distill.training.evaluation import evaluate_model, predict_tags

    tokenizer = wordpiece_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b"])
    rows = Dataset.from_dict({"input_ids": [[2, 4, 5, 3], [2, 4, 3]], "attention_mask": [[1] * 4, [1] * 3],
                              "labels": [[IGNORE_INDEX, 9, IGNORE_INDEX, IGNORE_INDEX], [IGNORE_INDEX, 0, IGNORE_INDEX]]})
    collator = DataCollatorForTokenClassification(tokenizer)
    predicted, gold = predict_tags(tiny_tagger, rows, collator, 1, Accelerator(cpu=True))
    assert gold == [[9], [0]] and [len(p) for p in predicted] == [1, 1]
    metrics = evaluate_model(tiny_tagger, rows, get_task("wnut17"), collator, 2, Accelerator(cpu=True))
    assert set(metrics) >= {"f1", "precision", "recall", "accuracy", "f1_person"}


def test_onnx_export_of_a_tagger_has_one_row_per_token_at_any_length(tiny_tagger, tmp_path):
    pytest.importorskip("onnxruntime")
    from distill.quantize.ort import export_onnx
    from distill.quantize.ort_session import onnx_session

    path = export_onnx(tiny_tagger, tmp_path / "model.onnx")
    ids = np.array([[2, 5, 6, 7, 8, 9, 10, 11, 12, 3]], dtype=np.int64)  # longer than the export's dummy
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    (logits,) = onnx_session(path).run(None, feed)
    with torch.no_grad():
        expected = tiny_tagger(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()
    assert logits.shape == (1, 10, 13)
    np.testing.assert_allclose(logits, expected, atol=1e-5)

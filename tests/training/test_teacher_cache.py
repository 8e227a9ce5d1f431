"""Cached teacher logits are the live teacher's logits, and a cached distillation step computes
the same loss as a live one."""

import pytest
import torch
from accelerate import Accelerator
from datasets import Dataset
from helpers import word_collator
from transformers import BertConfig, BertForSequenceClassification

from distill.training.losses import DistillationLoss, LossWeights
from distill.training.steps import distillation_step
from distill.training.teacher_cache import INDEX_COLUMN, cached_distillation_step, teacher_logits, with_example_index


@pytest.fixture(scope="module")
def collator():
    return word_collator()


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(2, 10, (40,), generator=g).tolist()
    ids = [torch.randint(2, 42, (n,), generator=g).tolist() for n in lengths]
    return Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * n for n in lengths],
                              "labels": [i % 2 for i in range(40)]})


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=42, hidden_size=16, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=24)).eval()
    folder = tmp_path_factory.mktemp("teacher")
    model.save_pretrained(folder)
    return model, folder


def test_cached_logits_equal_live_teacher_logits_in_row_order(teacher, data, collator, tmp_path):
    model, folder = teacher
    logits, info = teacher_logits(model, folder, data, collator, 16, Accelerator(cpu=True), tmp_path)
    assert not info["cache_hit"]
    with torch.no_grad():
        for i in range(len(data)):  # rows of 2-9 tokens: the cache pass sorts them by length
            live = model(input_ids=torch.tensor([data[i]["input_ids"]])).logits[0]
            assert torch.allclose(logits[i], live, atol=1e-5)


def test_second_call_reads_the_cache(teacher, data, collator, tmp_path):
    model, folder = teacher
    first, _ = teacher_logits(model, folder, data, collator, 16, Accelerator(cpu=True), tmp_path)
    second, info = teacher_logits(model, folder, data, collator, 16, Accelerator(cpu=True), tmp_path)
    assert info["cache_hit"] and torch.equal(first, second)


def test_cache_key_changes_with_the_data(teacher, data, collator, tmp_path):
    model, folder = teacher
    teacher_logits(model, folder, data, collator, 16, Accelerator(cpu=True), tmp_path)
    _, info = teacher_logits(model, folder, data.select(range(10)), collator, 16, Accelerator(cpu=True), tmp_path)
    assert not info["cache_hit"]


def test_cached_step_loss_equals_live_step_loss(teacher, data, collator, tmp_path):
    model, folder = teacher
    table, _ = teacher_logits(model, folder, data, collator, 16, Accelerator(cpu=True), tmp_path)
    torch.manual_seed(1)
    student = BertForSequenceClassification(model.config).eval()
    loss_fn = DistillationLoss(LossWeights(alpha_cos=0.0), is_regression=False, layer_map=None,
                               student_hidden_size=16, teacher_hidden_size=16)
    indexed = with_example_index(data)
    batch = collator([indexed[i] for i in (3, 8, 21)])
    live_batch = {k: v for k, v in batch.items() if k != INDEX_COLUMN}
    live, _ = distillation_step(model, loss_fn)(student, dict(live_batch))
    cached, _ = cached_distillation_step(table, loss_fn)(student, dict(batch))
    assert torch.allclose(live, cached, atol=1e-5)

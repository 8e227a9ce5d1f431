"""Scoring: batches in length order with results in dataset order, and a training run that says
which dev metrics already belong to the weights it returns (so a stage does not score them twice)."""

import pytest
import torch
from accelerate import Accelerator
from datasets import Dataset
from helpers import word_collator
from transformers import BertConfig, BertForSequenceClassification

from distill.recipe import TrainConfig
from distill.training.evaluation import predict_logits, scoring_order
from distill.training.loop import train_model
from distill.training.steps import hard_label_step


@pytest.fixture(scope="module")
def collator():
    return word_collator()


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(2)
    lengths = torch.randint(2, 14, (48,), generator=g).tolist()
    ids = [torch.randint(2, 42, (n,), generator=g).tolist() for n in lengths]
    return Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * n for n in lengths],
                              "labels": [sum(row) % 2 for row in ids]})


def tiny_model():
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(vocab_size=42, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                                    intermediate_size=24, hidden_dropout_prob=0.0)).eval()


def test_scoring_order_runs_shortest_rows_first(data):
    lengths = [len(data[int(i)]["input_ids"]) for i in scoring_order(data, tiny_model())]
    assert lengths == sorted(lengths)


def test_a_model_that_is_no_torch_module_is_scored_in_row_order(data):
    # ONNX Runtime's dynamic int8 takes each batch's activation range: other batches, other scores.
    assert scoring_order(data, lambda **batch: None) is None


def test_logits_come_back_in_dataset_order(data, collator):
    model = tiny_model()
    logits, labels = predict_logits(model, data, collator, 16, Accelerator(cpu=True))
    assert labels.tolist() == data["labels"]
    with torch.no_grad():
        for i in range(len(data)):  # each row alone, unpadded
            alone = model(input_ids=torch.tensor([data[i]["input_ids"]])).logits[0]
            assert torch.allclose(torch.from_numpy(logits[i]), alone, atol=1e-5)


def accuracy(model, data, collator):
    logits, labels = predict_logits(model, data, collator, 16, Accelerator(cpu=True))
    return {"accuracy": float((logits.argmax(-1) == labels).mean())}


def train(data, collator, mixed_precision="no", **cfg):
    config = TrainConfig(epochs=2, batch_size=16, learning_rate=1e-3, checkpoint_every=None, **cfg)
    return train_model(tiny_model(), data, cfg=config, accelerator=Accelerator(cpu=True, mixed_precision=mixed_precision),
                       collator=collator, step_loss=hard_label_step(False), evaluate=lambda m: accuracy(m, data, collator),
                       primary_metric="accuracy", seed=0)


@pytest.mark.parametrize("keep_best", [True, False])
def test_final_metrics_are_the_returned_weights_scores(data, collator, keep_best):
    model, outcome = train(data, collator, keep_best=keep_best, eval_every=2)
    assert outcome.final_metrics == accuracy(model, data, collator)


def test_no_final_metrics_when_evaluation_ran_under_autocast(data, collator):
    _, outcome = train(data, collator, mixed_precision="bf16")
    assert outcome.history and outcome.final_metrics is None


def test_a_bitsandbytes_model_is_scored_in_row_order(data):
    # bitsandbytes' int8 picks its outlier columns per batch: other batches, other scores.
    model = tiny_model()
    model.config.quantization_config = {"quant_method": "bitsandbytes", "load_in_8bit": True}
    assert scoring_order(data, model) is None

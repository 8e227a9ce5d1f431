"""A training run interrupted after a checkpoint continues to exactly the result of an
uninterrupted one (same data order, RNG, optimizer and schedule)."""

import json

import pytest
import torch
from accelerate import Accelerator
from datasets import Dataset
from helpers import word_collator
from transformers import BertConfig, BertForSequenceClassification

from distill.recipe import TrainConfig
from distill.training.loop import train_model
from distill.training.steps import hard_label_step


class Interrupted(Exception):
    pass


@pytest.fixture
def accelerator():  # per test: conftest resets Accelerate's state after each one
    return Accelerator(cpu=True, mixed_precision="no")


@pytest.fixture(scope="module")
def collator():
    return word_collator()


def dataset(n=96):
    g = torch.Generator().manual_seed(0)
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    for _ in range(n):
        length = int(torch.randint(3, 12, (1,), generator=g))
        ids = torch.randint(2, 42, (length,), generator=g).tolist()
        rows["input_ids"].append(ids)
        rows["attention_mask"].append([1] * length)
        rows["labels"].append(int(sum(ids) % 2))
    return Dataset.from_dict(rows)


def fresh_model():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=42, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=24, num_labels=2, hidden_dropout_prob=0.1)
    return BertForSequenceClassification(config)


CFG = TrainConfig(epochs=2.5, batch_size=16, learning_rate=1e-3, checkpoint_every=4, eval_every=5, log_every=1)


def train(accelerator, collator, tmp_path, step_loss=None, name="run"):
    data = dataset()
    return train_model(
        fresh_model(), data, cfg=CFG, accelerator=accelerator, collator=collator,
        step_loss=step_loss or hard_label_step(False), evaluate=lambda m: {"accuracy": _accuracy(m, data, collator)},
        primary_metric="accuracy", seed=3, log_path=tmp_path / name / "log.jsonl", checkpoint_dir=tmp_path / name / "ckpt",
    )


def _accuracy(model, data, collator):
    model.eval()
    with torch.no_grad():
        batch = collator([data[i] for i in range(len(data))])
        labels = batch.pop("labels")
        return float((model(**batch).logits.argmax(-1) == labels).float().mean())


def test_interrupted_run_resumes_to_the_same_weights(accelerator, collator, tmp_path):
    reference, ref_outcome = train(accelerator, collator, tmp_path, name="reference")

    calls = {"n": 0}
    plain = hard_label_step(False)

    def dies_at_step_10(model, batch):
        calls["n"] += 1
        if calls["n"] == 10:  # after the checkpoints at steps 4 and 8
            raise Interrupted
        return plain(model, batch)

    with pytest.raises(Interrupted):
        train(accelerator, collator, tmp_path, step_loss=dies_at_step_10, name="resumed")
    assert (tmp_path / "resumed" / "ckpt" / "latest").read_text() == "step-8"
    resumed, outcome = train(accelerator, collator, tmp_path, name="resumed")

    assert outcome.steps == ref_outcome.steps == 15
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert outcome.history == ref_outcome.history


def test_resumed_log_has_each_step_once(accelerator, collator, tmp_path):
    def dies(model, batch, state={"n": 0}):
        state["n"] += 1
        if state["n"] == 7:
            raise Interrupted
        return hard_label_step(False)(model, batch)

    with pytest.raises(Interrupted):
        train(accelerator, collator, tmp_path, step_loss=dies)
    train(accelerator, collator, tmp_path)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
             if "eval" not in json.loads(line)]
    assert steps == list(range(1, 16))


def test_a_model_trained_in_bf16_is_returned_running_in_its_own_fp32(collator, tmp_path):
    # Accelerate wraps forward in autocast for mixed precision; the returned model must not keep it,
    # or stages would score a bf16 forward of weights that run in fp32 once saved.
    model, _ = train(Accelerator(cpu=True, mixed_precision="bf16"), collator, tmp_path)
    reloaded = fresh_model().eval()
    reloaded.load_state_dict(model.state_dict())
    batch = collator([dataset()[i] for i in range(8)])
    batch.pop("labels")
    with torch.no_grad():
        assert model.eval()(**batch).logits.dtype == torch.float32
        assert torch.equal(model(**batch).logits, reloaded(**batch).logits)

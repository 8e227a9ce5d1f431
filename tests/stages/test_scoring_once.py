"""Fixed costs of a run: each artifact's dev split is scored once, the saved-and-reloaded model is
checked on a few rows instead of a second scoring, and `distill validate` imports no torch."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import wordpiece_tokenizer
from transformers import BertConfig, BertForSequenceClassification

from distill import DistillError

WORDS = ["the", "movie", "film", "is", "was", "good", "great", "bad", "dull", "a", "not", "fun", "plot", ".", ","]


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    tokenizer = wordpiece_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=4, intermediate_size=37, max_position_embeddings=64))
    folder = tmp_path_factory.mktemp("tiny_teacher")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run(tmp_path, teacher, glue_data_dir, student_stage, monkeypatch):
    """Run teacher (evaluate only) + one student stage; return how many times each dataset size was scored."""
    from distill.cli import main
    from distill.stages import context

    scored = []
    real = context.evaluate_model
    monkeypatch.setattr(context, "evaluate_model", lambda model, dataset, *a, **k: scored.append(len(dataset)) or real(model, dataset, *a, **k))
    recipe = {"name": "once", "task": "sst2", "seed": 0, "mixed_precision": "no",
              "data": {"max_length": 32, "train_limit": 32, "eval_limit": 24}, "model": {"model": str(teacher)},
              "stages": [{"kind": "teacher", "skip_training": True}, student_stage]}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["run", str(path), f"output_dir={tmp_path / 'runs'}", "--data-dir", str(glue_data_dir)]) == 0
    return scored, json.loads((tmp_path / "runs" / "once" / "report.json").read_text())["stages"][-1]


def test_a_student_scored_on_dev_while_training_is_not_scored_again(tmp_path, tiny_teacher, glue_data_dir, monkeypatch):
    stage = {"kind": "distill", "student": {"layers": [0]}, "train": {"max_steps": 2, "batch_size": 16}}
    scored, record = run(tmp_path, tiny_teacher, glue_data_dir, stage, monkeypatch)
    assert scored == [24, 24]  # the teacher once, the student once (its end-of-training evaluation)
    assert record["metric_value"] == record["metrics"]["accuracy"]


def test_a_student_trained_with_the_attention_loss_is_scored_as_reloaded(tmp_path, tiny_teacher, glue_data_dir, monkeypatch):
    # Its training ran the eager attention kernel; the reloaded artifact runs sdpa: scored again, as saved.
    stage = {"kind": "distill", "student": {"layers": [0, 1]}, "loss": {"alpha_attention": 1.0},
             "train": {"max_steps": 2, "batch_size": 16}}
    scored, _ = run(tmp_path, tiny_teacher, glue_data_dir, stage, monkeypatch)
    assert scored == [24, 24, 24]


def test_a_saved_model_that_does_not_reload_to_the_trained_one_is_an_error(tiny_teacher):
    from types import SimpleNamespace

    from datasets import Dataset
    from transformers import AutoTokenizer, DataCollatorWithPadding

    from distill.stages.common import check_reload

    model = BertForSequenceClassification.from_pretrained(tiny_teacher).eval()
    other = BertForSequenceClassification.from_pretrained(tiny_teacher).eval()
    with torch.no_grad():
        other.classifier.bias.add_(0.1)
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    rows = Dataset.from_dict(dict(tokenizer(["the movie is good .", "a dull plot ."]), labels=[1, 0]))
    ctx = SimpleNamespace(data=SimpleNamespace(validation=rows, collator=DataCollatorWithPadding(tokenizer)),
                          accelerator=SimpleNamespace(device="cpu"))
    check_reload(ctx, model, BertForSequenceClassification.from_pretrained(tiny_teacher), tiny_teacher)
    with pytest.raises(DistillError, match="does not reload to the trained one"):
        check_reload(ctx, model, other, tiny_teacher)


def test_validate_imports_neither_torch_nor_transformers():
    repo = Path(__file__).resolve().parents[2]
    code = ("import sys; from distill.cli import main; code = main(['validate', 'recipes/quickstart.yaml']); "
            "heavy = sorted(m for m in ('torch', 'transformers', 'datasets', 'accelerate') if m in sys.modules); "
            "print('HEAVY', heavy, file=sys.stderr); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stderr

"""A tagger through the chain from the command line: the real MiniLM on a slice of real WNUT-17."""

import json
import os

import pytest
import yaml

from distill.cli import main

SMALL_NER_RUN = {
    "name": "ner",
    "task": "wnut17",
    "seed": 0,
    "data": {"max_length": 64, "train_limit": 1000, "eval_limit": 300},
    "model": {"model": "minilm-l6"},
    "stages": [
        {"kind": "teacher", "train": {"max_steps": 120, "batch_size": 16, "learning_rate": 2e-4}},
        {"kind": "distill", "student": {"layers": [0, 2, 4]}, "loss": {"alpha_hidden": 1.0, "alpha_attention": 1.0},
         "train": {"max_steps": 60, "batch_size": 16, "learning_rate": 2e-4}},
        {"kind": "prune", "heads": {"share": 0.5}, "ffn": {"share": 0.5}, "importance": {"batches": 4}},
        {"kind": "trim_vocab"},
        {"kind": "onnx", "name": "int8", "quantization": "dynamic"},
    ],
}


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory, glue_data_dir):
    root = tmp_path_factory.mktemp("ner")
    recipe = root / "ner.yaml"
    recipe.write_text(yaml.safe_dump(SMALL_NER_RUN))
    os.environ["HF_HUB_OFFLINE"] = "1"
    assert main(["run", str(recipe), f"output_dir={root / 'runs'}", "--data-dir", str(glue_data_dir)]) == 0
    return root / "runs" / "ner"


def stage_metrics(run_dir, stage):
    return json.loads((run_dir / stage / "metrics.json").read_text())


@pytest.mark.integration
def test_distilled_tagger_beats_an_all_outside_tagger(ner_run):
    # Tagging every word O finds no entity: entity F1 0.
    assert stage_metrics(ner_run, "student")["metrics"]["f1"] > 0.05
    assert {"f1_person", "f1_location", "precision", "recall"} <= set(stage_metrics(ner_run, "student")["metrics"])


@pytest.mark.integration
@pytest.mark.parametrize("stage", ["teacher", "student", "pruned", "trimmed"])
def test_every_torch_artifact_tags_in_a_pipeline(ner_run, stage):
    from transformers import AutoTokenizer, pipeline

    from distill.data.tasks import get_task
    from distill.quantize.artifacts import load_task_model, loads_with_from_pretrained

    folder = ner_run / stage
    # Head-pruned folders do not load with plain from_pretrained on transformers 5: our loader builds them.
    model = str(folder) if loads_with_from_pretrained(folder) else load_task_model(str(folder), get_task("wnut17"))
    tag = pipeline("token-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(folder),
                   aggregation_strategy="simple")
    entities = tag("Alex and Maria flew from London to New York to see the Yankees on Monday")
    assert all(e["entity_group"] in get_task("wnut17").entity_types for e in entities)
    assert all(0.0 <= e["score"] <= 1.0 and e["word"] for e in entities)


@pytest.mark.integration
def test_eval_reproduces_the_int8_stage_metric_on_dev(ner_run, glue_data_dir, capsys):
    assert main(["eval", str(ner_run / "int8"), "--task", "wnut17", "--data-dir", str(glue_data_dir),
                 "--max-length", "64", "--limit", "300"]) == 0
    measured = json.loads(capsys.readouterr().out)
    # The recipe's eval_limit and --limit draw the same 300 sentences (same seed, 0).
    assert measured["backend"] == "onnxruntime"
    assert measured["f1"] == pytest.approx(stage_metrics(ner_run, "int8")["metrics"]["f1"], abs=1e-9)


@pytest.mark.integration
def test_eval_scores_the_labelled_test_split(ner_run, glue_data_dir, capsys):
    assert main(["eval", str(ner_run / "student"), "--task", "wnut17", "--split", "test", "--data-dir",
                 str(glue_data_dir), "--max-length", "64", "--limit", "200"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["split"] == "test" and measured["examples"] == 200 and "f1_person" in measured


@pytest.mark.integration
def test_onnx_tagger_gives_one_row_per_token_through_our_runtime_and_optimum(ner_run):
    import importlib.util

    import numpy as np
    from transformers import AutoTokenizer

    from distill.quantize.ort_session import load_onnx_classifier

    folder = ner_run / "int8"
    encoded = AutoTokenizer.from_pretrained(folder)(["Maria flew to London", "the Yankees won"], padding=True, return_tensors="np")
    ours = load_onnx_classifier(folder)(**encoded).logits
    assert ours.shape == (*encoded["input_ids"].shape, 13)
    if importlib.util.find_spec("optimum") is not None:  # optimum-onnx: the legacy stack only
        from optimum.onnxruntime import ORTModelForTokenClassification

        theirs = ORTModelForTokenClassification.from_pretrained(folder)(**encoded).logits
        np.testing.assert_allclose(np.asarray(theirs), ours, atol=1e-5)

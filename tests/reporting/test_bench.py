"""Benchmark and report: latency comes from timing real calls, inputs are real dev sentences at a
fixed length, memory from a fresh process, ratios to the teacher from the same measurements, and
`distill run` / `distill bench` write report.md, report.json and report.png."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import wordpiece_tokenizer
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

import distill
from distill.cli import main
from distill.data.tasks import get_task
from distill.models.loading import label_config, save_model
from distill.quantize.ort import build_onnx_classifier
from distill.recipe import BenchmarkConfig, validate_recipe
from distill.reporting.bench import (
    benchmark_folders,
    dev_texts,
    fixed_length_inputs,
    median_latencies,
    peak_memories,
    peak_memory_bytes,
)
from distill.reporting.report import with_teacher_ratios, write_report

WORDS = "a the film movie is was good great bad dull boring fun funny long short and but not very too it".split()
DELAY_S = 0.025


@pytest.fixture(scope="module")
def tokenizer() -> BertTokenizerFast:
    return wordpiece_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])


@pytest.fixture(scope="module")
def artifacts(tokenizer, tmp_path_factory) -> dict[str, Path]:
    """Two tiny torch classifiers and the ONNX Runtime int8 export of the first."""
    root = tmp_path_factory.mktemp("artifacts")
    folders = {}
    for name, seed in (("fast", 0), ("slow", 1)):
        torch.manual_seed(seed)
        config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                            vocab_size=len(tokenizer), **label_config(get_task("sst2")))
        folders[name] = root / name
        save_model(BertForSequenceClassification(config).eval(), tokenizer, folders[name])
    folders["int8"] = root / "int8"
    build_onnx_classifier(BertForSequenceClassification.from_pretrained(folders["fast"]), tokenizer, folders["int8"])
    return folders


# ---------------------------------------------------------------- timing and inputs


def test_median_latency_is_the_measured_time_of_each_call():
    latencies = median_latencies({"noop": lambda: None, "sleepy": lambda: time.sleep(DELAY_S)}, warmup=1, repeats=5)
    assert latencies["sleepy"] >= DELAY_S > latencies["noop"]


def test_a_model_with_an_injected_delay_measures_slower(artifacts, monkeypatch):
    from distill.quantize import artifacts as artifact_module

    real_load = artifact_module.load_artifact

    def load_with_delay(folder, threads=None):
        model, kind = real_load(folder, threads=threads)
        if Path(folder).name == "slow":
            model.register_forward_pre_hook(lambda module, args: time.sleep(DELAY_S))
        return model, kind

    monkeypatch.setattr(artifact_module, "load_artifact", load_with_delay)
    texts = [("a great fun film",), ("the movie was too long",), ("not very good",), ("it is funny",)]
    cfg = BenchmarkConfig(batch_sizes=[1, 4], seq_length=16, warmup=1, repeats=3, threads=1, memory=False)
    results, settings = benchmark_folders(artifacts, texts, cfg)

    for b in (1, 4):
        assert results["slow"][f"latency_ms_bs{b}"] >= 1000 * DELAY_S > results["fast"][f"latency_ms_bs{b}"]
        for r in results.values():
            assert r[f"throughput_bs{b}"] == pytest.approx(b / (r[f"latency_ms_bs{b}"] / 1000))
    assert {n: (r["backend"], r["precision"]) for n, r in results.items()} == {
        "fast": ("torch", "fp32"), "slow": ("torch", "fp32"), "int8": ("onnxruntime", "int8")}
    assert settings["threads"] == 1 and "16 tokens" in settings["inputs"] and settings["baseline_memory_bytes"] is None


def test_latency_inputs_are_real_dev_sentences_padded_to_a_fixed_length(glue_data_dir, minilm_dir):
    from transformers import AutoTokenizer

    texts = dev_texts(get_task("sst2"), glue_data_dir, 4)
    first = (glue_data_dir / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1].split("\t")[0]
    assert texts[0] == (first,)
    tok = AutoTokenizer.from_pretrained(minilm_dir)
    inputs = fixed_length_inputs(tok, texts, 24)
    assert inputs["input_ids"].shape == (4, 24)
    lengths = [min(len(tok(t[0])["input_ids"]), 24) for t in texts]
    assert inputs["attention_mask"].sum(dim=1).tolist() == lengths


def test_sentence_pair_tasks_keep_both_sentences(glue_data_dir):
    texts = dev_texts(get_task("mrpc"), glue_data_dir, 2)
    assert all(len(t) == 2 and all(t) for t in texts)


@pytest.mark.integration
def test_peak_memory_of_a_loaded_model_is_above_the_library_baseline(minilm_dir, glue_data_dir):
    texts = dev_texts(get_task("sst2"), glue_data_dir, 2)
    baseline = peak_memory_bytes(None, texts, 32, threads=1)
    with_model = peak_memory_bytes(Path(minilm_dir), texts, 32, threads=1)
    assert with_model - baseline > 60 * 2**20  # MiniLM's fp32 weights alone are 87 MiB


@pytest.mark.integration
def test_peaks_measured_side_by_side_are_each_process_own_and_in_order(minilm_dir, glue_data_dir):
    texts = dev_texts(get_task("sst2"), glue_data_dir, 2)
    first_baseline, with_model, second_baseline = peak_memories([None, Path(minilm_dir), None], texts, 32, threads=1)
    assert abs(first_baseline - second_baseline) < 30 * 2**20
    assert with_model - max(first_baseline, second_baseline) > 60 * 2**20


# ---------------------------------------------------------------- report


def timed_records() -> list[dict]:
    base = {"metric": "accuracy", "metrics": {}, "params": 1000, "train_seconds": 0.0}
    return [
        {**base, "stage": "teacher", "kind": "teacher", "metric_value": 0.90, "size_bytes": 4000, "latency_ms_bs1": 8.0,
         "latency_ms_bs32": 64.0, "backend": "torch", "precision": "fp32", "peak_memory_bytes": 600 * 2**20},
        {**base, "stage": "int8", "kind": "onnx", "metric_value": 0.87, "size_bytes": 1000, "latency_ms_bs1": 2.0,
         "latency_ms_bs32": 32.0, "backend": "onnxruntime", "precision": "int8", "peak_memory_bytes": 500 * 2**20},
    ]


def test_ratios_to_the_teacher_come_from_the_measured_numbers():
    teacher, int8 = with_teacher_ratios(timed_records())
    assert (teacher["share_of_teacher"], teacher["speedup_vs_teacher_bs1"]) == (1.0, 1.0)
    assert int8["share_of_teacher"] == pytest.approx(0.87 / 0.90)
    assert (int8["speedup_vs_teacher_bs1"], int8["speedup_vs_teacher_bs32"], int8["size_reduction_vs_teacher"]) == (4.0, 2.0, 4.0)
    assert with_teacher_ratios(timed_records(), reference="int8")[0]["speedup_vs_teacher_bs1"] == 0.25


def test_share_of_teacher_is_left_out_for_a_stage_measured_on_another_metric():
    teacher, mlm = with_teacher_ratios([{"stage": "teacher", "metric": "accuracy", "metric_value": 0.9},
                                        {"stage": "mlm", "metric": "perplexity", "metric_value": 12.0}])
    assert teacher["share_of_teacher"] == 1.0 and mlm["share_of_teacher"] is None


def test_report_writes_a_table_json_and_a_plot(tmp_path):
    recipe = validate_recipe({"name": "r", "task": "sst2", "stages": [{"kind": "teacher"}, {"kind": "onnx"}]})
    settings = {"threads": 2, "seq_length": 64, "batch_sizes": [1, 32], "timing": "median of 5 calls",
                "inputs": "first 32 dev examples", "baseline_memory_bytes": 400 * 2**20}
    write_report(tmp_path, recipe, get_task("sst2"), timed_records(), "distill run r.yaml", benchmark=settings)

    table = (tmp_path / "report.md").read_text()
    assert "| stage | kind | backend | params | size | metric | % teacher | ms b=1 | × b=1 | ms b=32 | × b=32 | peak RSS |" in table
    assert "| int8 | onnx | onnxruntime int8 | 0.00M | 0.0 MiB | 87.00 | 96.7 | 2.0 | 4.00× | 32.0 | 2.00× | 500 MiB |" in table
    assert "2 threads" in table and "torch and transformers alone: 400 MiB" in table
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["benchmark"] == settings and report["reference"] == "teacher"
    assert report["stages"][1]["speedup_vs_teacher_bs32"] == 2.0
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_names_the_commit_of_the_code_that_ran(tmp_path):
    recipe = validate_recipe({"name": "r", "task": "sst2", "stages": [{"kind": "teacher"}]})
    write_report(tmp_path, recipe, get_task("sst2"), timed_records(), "distill run r.yaml")
    package = Path(distill.__file__).parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("distill is not running from a git checkout")
    assert json.loads((tmp_path / "report.json").read_text())["commit"].removesuffix("+dirty") == head.stdout.strip()


def test_report_without_timings_has_no_latency_columns_and_no_plot(tmp_path):
    recipe = validate_recipe({"name": "r", "task": "sst2", "stages": [{"kind": "teacher"}]})
    records = [{k: v for k, v in r.items() if not k.startswith("latency")} for r in timed_records()]
    write_report(tmp_path, recipe, get_task("sst2"), records, "distill run r.yaml")
    assert "ms b=1" not in (tmp_path / "report.md").read_text() and not (tmp_path / "report.png").exists()


# ---------------------------------------------------------------- `distill run` and `distill bench`


def test_run_measures_every_stage_at_the_end(artifacts, tmp_path):
    from distill.stages.pipeline import Pipeline

    rows = ["sentence,label"] + [f"{s},{i % 2}" for i, s in enumerate(
        ["a great fun film", "the movie was too long", "not very good", "it is funny", "dull and boring", "very good fun"])]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    recipe = validate_recipe({
        "name": "timed", "task": "tiny", "output_dir": str(tmp_path / "runs"), "mixed_precision": "no",
        "data": {"train_file": str(tmp_path / "data.csv"), "validation_file": str(tmp_path / "data.csv"),
                 "text_fields": ["sentence"], "label_names": ["negative", "positive"], "max_length": 16},
        "model": {"model": str(artifacts["fast"])},
        "benchmark": {"enabled": True, "batch_sizes": [1, 2], "seq_length": 16, "warmup": 1, "repeats": 2, "memory": False},
        "stages": [{"kind": "teacher", "skip_training": True, "train": {"eval_batch_size": 4}},
                   {"kind": "onnx", "name": "int8"}, {"kind": "cast", "name": "half", "dtype": "fp16", "input": "teacher"}],
    })
    Pipeline(recipe, command="pytest").run()

    run = tmp_path / "runs" / "timed"
    report = json.loads((run / "report.json").read_text())
    assert [r["stage"] for r in report["stages"]] == ["teacher", "int8", "half"]
    for r in report["stages"]:
        assert r["latency_ms_bs1"] > 0 and r["latency_ms_bs2"] > 0 and r["share_of_teacher"] is not None
    assert [r["backend"] + " " + r["precision"] for r in report["stages"]] == ["torch fp32", "onnxruntime int8", "torch fp16"]
    assert report["stages"][0]["speedup_vs_teacher_bs1"] == 1.0 and report["benchmark"]["threads"] >= 1
    assert (run / "report.png").is_file() and "ms b=2" in (run / "report.md").read_text()


def test_bench_command_evaluates_and_times_saved_folders(artifacts, glue_data_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", str(artifacts["int8"]), str(artifacts["fast"]), "--task", "sst2", "--data-dir", str(glue_data_dir),
                 "--reference", str(artifacts["fast"]), "--batch-sizes", "1", "2", "--seq-length", "16", "--warmup", "1",
                 "--repeats", "2", "--no-memory", "--output-dir", str(out)])
    assert code == 0 and "report:" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert [r["stage"] for r in report["stages"]] == ["fast", "int8"] and report["reference"] == "fast"
    for r in report["stages"]:  # no metrics.json in these folders: evaluated on the 872 SST-2 dev sentences
        assert 0 <= r["metric_value"] <= 1 and r["metric"] == "accuracy" and r["latency_ms_bs2"] > 0
    assert (out / "report.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["--batch-sizes", "0"], "--batch-sizes: Value error, must be distinct positive integers"),
    (["--repeats", "0"], "--repeats: Input should be greater than or equal to 1"),
])
def test_bench_command_rejects_bad_settings_in_one_line(artifacts, args, message, capsys):
    assert main(["bench", str(artifacts["fast"]), "--task", "sst2", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("distill: error: " + message) and len(err.strip().splitlines()) == 1


def test_bench_command_refuses_a_folder_without_a_model(tmp_path, capsys):
    assert main(["bench", str(tmp_path), "--task", "sst2"]) == 2
    assert "not a model folder (no config.json)" in capsys.readouterr().err


def test_bench_command_refuses_a_model_folder_without_its_tokenizer(artifacts, glue_data_dir, tmp_path, capsys):
    # Its metrics.json spares the evaluation, so only the timing path reads the tokenizer: without its
    # files transformers 5 would build one of special tokens only and time the model on [UNK]s.
    folder = tmp_path / "no_tokenizer"
    shutil.copytree(artifacts["fast"], folder)
    for path in folder.iterdir():
        if "token" in path.name or path.name == "vocab.txt":
            path.unlink()
    (folder / "metrics.json").write_text(json.dumps({"metric": "accuracy", "metric_value": 0.5,
                                                     "metrics": {"accuracy": 0.5}, "params": 1}))
    code = main(["bench", str(folder), "--task", "sst2", "--data-dir", str(glue_data_dir), "--batch-sizes", "1",
                 "--seq-length", "16", "--warmup", "1", "--repeats", "1", "--no-memory", "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and f"tokenizer of '{folder}'" in err and len(err.strip().splitlines()) == 1

"""Publishing: model cards from a run's report and recipe, `distill push` and the `publish` stage,
against a loopback Hub endpoint (tests/publish/loopback_hub.py) started by the tests."""

from __future__ import annotations

import json
import logging
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
import torch
import yaml
from helpers import wordpiece_tokenizer
from huggingface_hub import ModelCard, snapshot_download
from loopback_hub import LoopbackHub
from packaging.version import Version
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification, pipeline

from distill import DistillError
from distill.cli import main
from distill.data.tasks import get_task
from distill.models.loading import count_parameters, label_config, save_model, weights_size_bytes
from distill.models.student import copy_layers_student
from distill.publish import load_run, push_run, render_card
from distill.recipe import dump_recipe, validate_recipe
from distill.reporting.report import markdown_table, write_report

TOKEN = "hf_distillTestToken7Q2xKp9Vw4ZrL8mN"  # distinctive, so a leak anywhere is found by search
REPO = "distill-test/tiny-student"
WORDS = ["a", "the", "film", "plot", "is", "was", "gripping", "dull", "great", "boring", "not", "very", "acting", "and"]
SENTENCES = ["a gripping film", "the plot is dull", "not very great acting", "the film was boring and dull"]


def _uploaded(run_dir: Path) -> list[str]:
    """What a push of the student must upload: the artifact's files except its training log, plus the
    card and the recipe. Which tokenizer files an artifact holds depends on the transformers
    release (5.x writes only tokenizer.json + tokenizer_config.json)."""
    names = {p.name for p in (run_dir / "student").iterdir()} - {"train_log.jsonl"}
    assert {"config.json", "metrics.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    return sorted(names | {"README.md", "recipe.yaml"})


def _record(stage: str, kind: str, model, folder: Path, metrics: dict[str, float], steps: int) -> dict:
    """A report record shaped like distill.stages.common.stage_record's; the first metric is the primary one."""
    metric = next(iter(metrics))
    return {"stage": stage, "kind": kind, "metric": metric, "metric_value": metrics[metric],
            "metrics": metrics, "params": count_parameters(model),
            "size_bytes": weights_size_bytes(folder), "train_seconds": 1.0, "samples_per_second": 100.0,
            "train_steps": steps, "best_step": steps, "checkpoint_selected_on": "validation", "seed": 42}


def make_run(tmp_path: Path, task: str = "sst2", model_class=BertForSequenceClassification,
             metrics=lambda value: {"accuracy": value}, data: dict | None = None) -> Path:
    """A finished run laid out as `distill run` writes it: recipe.yaml, report.json, and a folder
    with an evaluated artifact per stage (a tiny random BERT teacher of `model_class` and its
    1-layer student, with a WordPiece tokenizer built offline). `metrics(value)`: a stage's
    metrics, primary first; the values are fixture inputs (teacher 0.75, student 0.7), not results."""
    tokenizer = wordpiece_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                        vocab_size=len(tokenizer), **label_config(get_task(task)))
    teacher = model_class(config).eval()
    student = copy_layers_student(teacher, [0]).eval()
    recipe = validate_recipe({"name": "tiny", "task": task, "output_dir": str(tmp_path / "runs"), "data": data or {}, "stages": [
        {"kind": "teacher", "train": {"max_steps": 4}},
        {"kind": "distill", "name": "student", "student": {"layers": [0]}, "train": {"max_steps": 4}}]})
    run = tmp_path / "runs" / "tiny"
    records = []
    for stage, kind, model, value in (("teacher", "teacher", teacher, 0.75), ("student", "distill", student, 0.7)):
        folder = run / stage
        save_model(model, tokenizer, folder)
        record = _record(stage, kind, model, folder, metrics(value), steps=4)
        (folder / "metrics.json").write_text(json.dumps(record))
        (folder / "train_log.jsonl").write_text('{"step": 4, "loss": 0.5}\n')
        records.append(record)
    dump_recipe(recipe, run / "recipe.yaml")
    write_report(run, recipe, get_task(task), records, "distill run recipes/tiny.yaml")
    return run


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return make_run(tmp_path)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The loopback Hub, online mode, HF_ENDPOINT and a fake HF_TOKEN pointing at it."""
    import huggingface_hub.constants as constants
    import huggingface_hub.file_download as file_download
    from huggingface_hub import utils as hub_utils

    # hub 0.x caches one requests session per thread, 1.x+ one shared httpx client
    reset_sessions = getattr(hub_utils, "reset_sessions", None) or hub_utils.close_session
    server = LoopbackHub(TOKEN).start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # huggingface_hub reads HF_HUB_OFFLINE and HF_ENDPOINT once, at import: patch what they set.
    # The URL template lives in constants; 0.x's file_download also holds its own copy.
    url_template = server.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url_template)
    if hasattr(file_download, "HUGGINGFACE_CO_URL_TEMPLATE"):
        monkeypatch.setattr(file_download, "HUGGINGFACE_CO_URL_TEMPLATE", url_template)
    # The loopback Hub has no Xet storage. Hub 0.x offers Xet in the LFS batch request and takes the
    # server's "basic" answer; 2.x (1.x untested) uploads through Xet whenever hf_xet is installed.
    if Version(huggingface_hub.__version__).major >= 1:
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_login_cache"))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    reset_sessions()  # sessions made in offline mode refuse every request
    yield server
    server.stop()
    reset_sessions()


def _download(hub: LoopbackHub, tmp_path: Path, revision: str | None = None) -> Path:
    return Path(snapshot_download(REPO, revision=revision, endpoint=hub.url, cache_dir=tmp_path / "download_cache"))


def test_pushed_artifact_downloads_back_and_predicts_the_same(run_dir, hub, tmp_path):
    result = push_run(run_dir, REPO)
    downloaded = _download(hub, tmp_path)

    assert result.stage == "student" and result.commit_url.startswith(hub.url)
    assert sorted(p.name for p in downloaded.iterdir()) == _uploaded(run_dir)
    assert hub.lfs_blobs, "the safetensors weights should travel through the LFS upload path"
    local = pipeline("text-classification", model=str(run_dir / "student"))
    remote = pipeline("text-classification", model=str(downloaded))
    assert remote(SENTENCES) == local(SENTENCES)
    tokenizer = AutoTokenizer.from_pretrained(downloaded)
    inputs = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert tokenizer.unk_token_id not in inputs["input_ids"]  # real words in, so equal outputs mean something
    with torch.no_grad():
        remote_logits = AutoModelForSequenceClassification.from_pretrained(downloaded)(**inputs).logits
        local_logits = AutoModelForSequenceClassification.from_pretrained(run_dir / "student")(**inputs).logits
    assert torch.equal(remote_logits, local_logits)


def test_token_is_used_but_never_written_or_printed(run_dir, hub, capfd, caplog):
    hub_logger = logging.getLogger("huggingface_hub")
    hub_logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")
    try:
        assert main(["push", str(run_dir), "--repo-id", REPO]) == 0
    finally:
        hub_logger.removeHandler(caplog.handler)
    out, err = capfd.readouterr()

    assert any(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in hub.requests)
    assert TOKEN not in out + err + caplog.text
    for data in [*hub.files(REPO).values(), *hub.lfs_blobs.values()]:
        assert TOKEN.encode() not in data
    for path in run_dir.rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes()


def test_rejected_push_fails_with_exit_2_and_no_token_in_the_message(run_dir, hub, monkeypatch, capfd):
    monkeypatch.setenv("HF_TOKEN", TOKEN + "Wrong")

    assert main(["push", str(run_dir), "--repo-id", REPO]) == 2
    out, err = capfd.readouterr()
    assert err.startswith("distill: error: push to distill-test/tiny-student") and len(err.strip().splitlines()) == 1
    assert TOKEN not in out + err


def test_unreachable_hub_fails_with_exit_2_and_one_line(run_dir, hub, monkeypatch, capfd):
    with socket.socket() as sock:  # a port nothing listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", closed)

    assert main(["push", str(run_dir), "--repo-id", REPO]) == 2
    out, err = capfd.readouterr()
    assert err.startswith(f"distill: error: push to {REPO} at {closed} failed: ") and len(err.strip().splitlines()) == 1
    assert TOKEN not in out + err


def test_failed_weights_upload_names_the_file_and_the_cause_in_one_line(run_dir, hub, capfd):
    hub.refuse_lfs_uploads = True

    assert main(["push", str(run_dir), "--repo-id", REPO]) == 2
    out, err = capfd.readouterr()
    assert err.startswith(f"distill: error: push to {REPO}") and len(err.strip().splitlines()) == 1
    assert "model.safetensors" in err and "403" in err and TOKEN not in out + err
    assert hub.files(REPO) == {}  # nothing committed


def test_card_metadata_parses_back_with_the_model_index(run_dir, hub, tmp_path):
    push_run(run_dir, REPO)
    card = ModelCard.load(_download(hub, tmp_path) / "README.md")

    data = card.data
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert data.base_model_relation == "finetune"
    assert (data.library_name, data.pipeline_tag, data.license) == ("transformers", "text-classification", "apache-2.0")
    assert data.datasets == ["nyu-mll/glue"]
    assert {"distillation", "knowledge-distillation"} <= set(data.tags)
    [result] = data.eval_results
    assert (result.task_type, result.dataset_type, result.dataset_config, result.dataset_split) == (
        "text-classification", "nyu-mll/glue", "sst2", "validation")
    assert (result.metric_type, result.metric_value) == ("accuracy", 0.7)
    assert data.model_name == "tiny-student"


def test_card_body_has_lineage_results_recipe_and_reproduce_command(run_dir):
    run = load_run(run_dir)
    run.records["student"] = json.loads((run_dir / "student" / "metrics.json").read_text())
    text = str(render_card(run, "student", REPO))

    assert "`sentence-transformers/all-MiniLM-L6-v2` → `teacher` (teacher) → `student` (distill)" in text
    assert "| **student** (this model) | distill | `teacher` | 70.00 | 93.3 % |" in text
    assert (run_dir / "recipe.yaml").read_text().rstrip("\n") in text
    assert f"hf download {REPO} recipe.yaml --local-dir tiny && distill run tiny/recipe.yaml output_dir=runs" in text
    assert f'pipeline("text-classification", model="{REPO}")' in text
    assert "ORTModelForSequenceClassification" not in text  # no ONNX file in this artifact


def test_dry_run_writes_the_upload_folder_and_sends_no_request(run_dir, hub, tmp_path, capsys):
    dest = tmp_path / "would_upload"

    assert main(["push", str(run_dir), "--repo-id", REPO, "--dry-run", str(dest)]) == 0
    assert hub.requests == []
    assert sorted(p.name for p in dest.iterdir()) == _uploaded(run_dir)
    assert (dest / "recipe.yaml").read_text() == (run_dir / "recipe.yaml").read_text()
    assert ModelCard.load(dest / "README.md").data.eval_results[0].metric_value == 0.7
    assert "nothing uploaded" in capsys.readouterr().out


def test_training_logs_are_uploaded_only_when_asked(run_dir, tmp_path):
    without = push_run(run_dir, REPO, dry_run_dir=tmp_path / "default")
    with_logs = push_run(run_dir, REPO, dry_run_dir=tmp_path / "logs", include_logs=True)

    assert "train_log.jsonl" not in without.files
    assert "train_log.jsonl" in with_logs.files


@pytest.mark.parametrize("damage", ["no metrics.json", "no metric_value"])
def test_push_refuses_an_artifact_without_evaluation(run_dir, tmp_path, capsys, damage):
    metrics = run_dir / "student" / "metrics.json"
    if damage == "no metrics.json":
        metrics.unlink()
    else:
        metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "metric_value": None}))

    assert main(["push", str(run_dir), "--repo-id", REPO, "--stage", "student", "--dry-run", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "stage 'student'" in err and "metrics.json" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_revision_pushes_to_a_new_branch(run_dir, hub, tmp_path):
    push_run(run_dir, REPO, revision="dev")

    assert "model.safetensors" in hub.files(REPO, "dev")
    assert "model.safetensors" not in hub.files(REPO, "main")
    assert (_download(hub, tmp_path, revision="dev") / "model.safetensors").is_file()
    assert 'model="distill-test/tiny-student", revision="dev")' in hub.files(REPO, "dev")["README.md"].decode()


def test_stage_option_picks_the_artifact(run_dir, tmp_path):
    result = push_run(run_dir, REPO, stage="teacher", dry_run_dir=tmp_path / "out")
    card = ModelCard.load(tmp_path / "out" / "README.md")

    assert result.stage == "teacher"
    assert card.data.eval_results[0].metric_value == 0.75
    assert "distillation" not in card.data.tags


def test_push_refuses_in_offline_mode(run_dir):
    with pytest.raises(DistillError, match="HF_HUB_OFFLINE"):
        push_run(run_dir, REPO)


def test_push_without_a_token_refuses(run_dir, hub, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")

    with pytest.raises(DistillError, match="no Hugging Face token"):
        push_run(run_dir, REPO)
    assert hub.requests == []


def test_multi_seed_stage_publishes_its_saved_seed_not_the_mean(run_dir, tmp_path):
    metrics = run_dir / "student" / "metrics.json"
    record = json.loads(metrics.read_text())
    record.update(metric_value=0.7, metric_std=0.02, artifact_seed=1, seeds=[
        {"seed": 1, "metric_value": 0.72, "metrics": {"accuracy": 0.72}, "train_seconds": 1.0},
        {"seed": 2, "metric_value": 0.68, "metrics": {"accuracy": 0.68}, "train_seconds": 1.0}])
    metrics.write_text(json.dumps(record))
    push_run(run_dir, REPO, dry_run_dir=tmp_path / "out")
    card = ModelCard.load(tmp_path / "out" / "README.md")

    assert card.data.eval_results[0].metric_value == 0.72
    assert "70.00 ± 2.00 (n=2)" in card.text and "seed 1" in card.text


def _add_onnx_stage(run_dir: Path, teacher_trained: bool = True) -> None:
    """A later int8 ONNX stage laid out as distill.stages.quantize leaves it (model.onnx,
    ort_config.json naming the quantization, a record with backend, precision and latencies).
    The card reads only file names, so model.onnx here is a placeholder, not a graph."""
    int8 = run_dir / "int8"
    int8.mkdir()
    for path in (run_dir / "student").iterdir():  # config and tokenizer files
        if path.name not in ("model.safetensors", "metrics.json", "train_log.jsonl"):
            shutil.copy(path, int8 / path.name)
    (int8 / "model.onnx").write_bytes(b"placeholder")
    (int8 / "ort_config.json").write_text(json.dumps({"quantization": {"is_static": False, "format": "QOperator"}}))
    record = {**json.loads((run_dir / "student" / "metrics.json").read_text()), "stage": "int8", "kind": "onnx",
              "metric_value": 0.69, "metrics": {"accuracy": 0.69}, "train_steps": 0, "size_bytes": 11,
              "latency_ms_bs1": 1.25, "latency_ms_bs32": 20.5, "backend": "onnxruntime", "precision": "int8",
              "quantization": {"quantization": "dynamic", "isa": "avx512_vnni"}}
    (int8 / "metrics.json").write_text(json.dumps(record))
    report = json.loads((run_dir / "report.json").read_text())
    report["stages"].append(record)
    report["benchmark"] = {"threads": 2, "timing": "median of 20 calls after 3 warm-up calls"}
    report["stages"][0].update(latency_ms_bs1=5.0, latency_ms_bs32=41.0, backend="torch", precision="fp32")
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    recipe["stages"].append({"kind": "onnx", "name": "int8"})
    if not teacher_trained:
        for r in report["stages"]:
            r["train_steps"] = 0
        report["stages"] = [r for r in report["stages"] if r["stage"] != "student"]
        recipe["stages"][-1]["input"] = "teacher"
    (run_dir / "report.json").write_text(json.dumps(report))
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))


def test_onnx_artifact_card_has_ort_usage_latency_and_hardware(run_dir, tmp_path):
    _add_onnx_stage(run_dir)
    result = push_run(run_dir, REPO, dry_run_dir=tmp_path / "out")
    card = ModelCard.load(tmp_path / "out" / "README.md")

    assert result.stage == "int8" and {"model.onnx", "ort_config.json"} <= set(result.files)
    assert card.data.library_name == "onnx" and {"onnx", "quantization", "int8", "distillation"} <= set(card.data.tags)
    assert 'from_pretrained("distill-test/tiny-student", file_name="model.onnx")' in card.text
    assert 'pipeline("text-classification", model="distill-test/tiny-student")' not in card.text  # no torch weights
    assert "latency b=1 (ms) | latency b=32 (ms) | backend |" in card.text
    assert "| 1.25 | 20.50 | onnxruntime int8 |" in card.text
    assert "runs at 4.0× (batch size 1), 2.0× (batch size 32) the teacher's speed" in card.text
    report = json.loads((run_dir / "report.json").read_text())
    assert f"2 threads, measured on: {report['machine']}" in card.text and "median of 20 calls" in card.text
    assert "`teacher` (teacher) → `student` (distill) → `int8` (onnx)" in card.text


def test_int8_card_names_the_cpu_its_scores_were_measured_on(run_dir, tmp_path):
    _add_onnx_stage(run_dir)
    push_run(run_dir, REPO, dry_run_dir=tmp_path / "out")
    machine = json.loads((run_dir / "report.json").read_text())["machine"]
    text = ModelCard.load(tmp_path / "out" / "README.md").text
    assert f"The int8 scores were measured with ONNX Runtime on {machine}, built for avx512_vnni." in text


def test_quantized_only_artifact_relates_to_its_base_as_quantized(run_dir, tmp_path):
    _add_onnx_stage(run_dir, teacher_trained=False)
    push_run(run_dir, REPO, stage="int8", dry_run_dir=tmp_path / "out")

    assert ModelCard.load(tmp_path / "out" / "README.md").data.base_model_relation == "quantized"


def test_pruned_model_that_needs_distills_loader_gets_that_snippet(run_dir, tmp_path):
    structure = pytest.importorskip("distill.pruning.structure")
    config_path = run_dir / "student" / "config.json"
    config = json.loads(config_path.read_text())
    config[structure.PRUNING_KEY] = {"heads_kept": [[]], "intermediate_sizes": [37]}  # its one layer lost every head
    config_path.write_text(json.dumps(config))
    push_run(run_dir, REPO, dry_run_dir=tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()

    assert "model=load_pruned(folder)" in text
    assert 'pipeline("text-classification", model="distill-test/tiny-student")' not in text


def test_onnx_artifact_of_a_pruned_model_gets_no_torch_loader_snippet(run_dir, tmp_path):
    structure = pytest.importorskip("distill.pruning.structure")
    config_path = run_dir / "student" / "config.json"
    config = json.loads(config_path.read_text())
    config[structure.PRUNING_KEY] = {"heads_kept": [[0, 1]], "intermediate_sizes": [37]}  # heads removed
    config_path.write_text(json.dumps(config))
    _add_onnx_stage(run_dir)  # copies that config: the int8 folder has no torch weights to load
    push_run(run_dir, REPO, dry_run_dir=tmp_path / "out")
    text = (tmp_path / "out" / "README.md").read_text()

    assert "load_pruned" not in text
    assert "onnxruntime.InferenceSession" in text


def test_publish_stage_validates_in_a_recipe():
    base = {"name": "r", "task": "sst2", "stages": [{"kind": "teacher"}]}
    recipe = validate_recipe({**base, "stages": [*base["stages"], {"kind": "publish", "repo_id": "org/model", "stage": "teacher"}]})

    assert recipe.stages[1].name == "publish" and recipe.stages[1].license == "apache-2.0"
    with pytest.raises(DistillError, match=r"stages\[1\]\.repo_id: must be ORG/NAME"):
        validate_recipe({**base, "stages": [*base["stages"], {"kind": "publish", "repo_id": "no-org"}]})
    with pytest.raises(DistillError, match=r"stages\[1\]\.stage: no earlier stage named 'student'"):
        validate_recipe({**base, "stages": [*base["stages"], {"kind": "publish", "repo_id": "org/m", "stage": "student"}]})


def test_publish_stage_dry_run_writes_its_upload_folder_and_a_report_record(run_dir):
    from distill.stages.publish import run_publish_stage

    raw = json.loads(json.dumps(load_run(run_dir).recipe))
    raw["stages"].append({"kind": "publish", "repo_id": REPO, "dry_run": True})
    recipe = validate_recipe(raw)
    accelerator = SimpleNamespace(is_main_process=True, wait_for_everyone=lambda: None, print=lambda *a: None)
    ctx = SimpleNamespace(recipe=recipe, run_dir=run_dir, accelerator=accelerator)
    record = run_publish_stage(ctx, recipe.stages[-1], run_dir / "publish", "hash0")

    assert record["published_stage"] == "student" and record["metric_value"] == 0.7 and record["commit_url"] is None
    assert sorted(p.name for p in (run_dir / "publish" / "upload").iterdir()) == _uploaded(run_dir)
    assert json.loads((run_dir / "publish" / "metrics.json").read_text())["stage_hash"] == "hash0"
    report = json.loads((run_dir / "report.json").read_text())
    assert "| publish | publish |" in markdown_table({**report, "stages": [*report["stages"], record]})


def test_card_describes_each_stage_kind_by_what_it_did(run_dir):
    """A benchmark gives every record a backend, but only onnx/bnb/cast stages are conversions;
    compression and raw-text stages say what they removed or trained."""
    from distill.publish.card import describe_stage

    report = json.loads((run_dir / "report.json").read_text())
    report["stages"] += [
        {"stage": "pruned", "kind": "prune", "backend": "torch", "precision": "fp32", "train_steps": 120, "metric": "accuracy",
         "metric_value": 0.7, "heads_pruned": 6, "heads_total": 12, "ffn_pruned": 30, "ffn_total": 37},
        {"stage": "trimmed", "kind": "trim_vocab", "backend": "torch", "precision": "fp32", "train_steps": 0,
         "metric": "accuracy", "metric_value": 0.7, "vocab_before": 30522, "vocab_after": 12037},
        {"stage": "general", "kind": "general_distill", "train_steps": 396, "metric": "perplexity", "metric_value": 233.2,
         "student_layers": [0, 2], "teacher_perplexity": 766.5, "loss": {"temperature": 2.0, "alpha_ce": 5.0, "alpha_mlm": 2.0}},
    ]
    (run_dir / "report.json").write_text(json.dumps(report))
    run = load_run(run_dir)

    pruned, trimmed = describe_stage(run, "pruned", "sst2"), describe_stage(run, "trimmed", "sst2")
    assert pruned.startswith("structured pruning: 6 of 12 attention heads and 30 of 37 FFN neurons removed, then 120 recovery")
    assert trimmed.startswith("vocabulary trimmed to the tokens the task's data uses, 30,522 → 12,037")
    assert "converted" not in pruned + trimmed
    general = describe_stage(run, "general", "sst2")
    assert general.startswith("a student made of teacher layers [0, 2] distilled on raw text (396 steps; temperature 2.0; "
                              "loss weights: ce 5, mlm 2); its teacher's held-out perplexity: 766.5")
    assert "recovery" not in general


def test_card_template_ships_inside_the_package_and_is_model_cards_template():
    """Installed from a wheel there is no model_cards/ folder: the template lives in the package
    (a symlink in the repository, so model_cards/template.md stays the one file to edit)."""
    import distill
    from distill.publish.card import TEMPLATE_PATH

    assert TEMPLATE_PATH.parent.is_relative_to(Path(distill.__file__).parent) and TEMPLATE_PATH.is_file()
    assert TEMPLATE_PATH.read_text() == (Path(__file__).parents[2] / "model_cards" / "template.md").read_text()


def test_lineage_of_a_baseline_from_pretrained_layers_starts_at_the_base_model(tmp_path):
    from distill.publish.run_info import RunInfo, lineage

    recipe = {"stages": [
        {"kind": "teacher", "name": "teacher"},
        {"kind": "distill", "name": "student", "student": {"init_from": "pretrained"}},
        {"kind": "baseline", "name": "baseline", "student": {"init_from": "pretrained"}},
        {"kind": "baseline", "name": "baseline_teacher_init", "student": {"init_from": "teacher"}},
    ]}
    run = RunInfo(tmp_path, report={}, recipe=recipe, recipe_text="", records={})
    assert lineage(run, "baseline") == ["baseline"]
    assert lineage(run, "baseline_teacher_init") == ["teacher", "baseline_teacher_init"]
    assert lineage(run, "student") == ["teacher", "student"]  # a teacher still teaches it

"""The command line end to end: the real MiniLM teacher on a small slice of real SST-2."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from distill.cli import main

SMALL_RUN = {
    "name": "small",
    "task": "sst2",
    "seed": 0,
    "data": {"max_length": 48, "train_limit": 1200},
    "model": {"model": "minilm-l6"},
    "stages": [
        {"kind": "teacher", "train": {"max_steps": 60, "batch_size": 16, "learning_rate": 1e-4}},
        {
            "kind": "distill",
            "student": {"layers": [0, 2, 4]},
            "loss": {"alpha_hidden": 1.0, "alpha_attention": 1.0},
            "train": {"max_steps": 40, "batch_size": 16, "learning_rate": 1e-4},
        },
        {"kind": "baseline", "student": {"layers": [0, 2, 4]}, "train": {"max_steps": 20, "batch_size": 16}},
    ],
}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, glue_data_dir):
    """Runs the small recipe once for the whole module (about a minute on 2 cores)."""
    root = tmp_path_factory.mktemp("cli")
    recipe = root / "small.yaml"
    recipe.write_text(yaml.safe_dump(SMALL_RUN))
    os.environ["HF_HUB_OFFLINE"] = "1"
    args = ["run", str(recipe), f"output_dir={root / 'runs'}", "--data-dir", str(glue_data_dir)]
    assert main(args) == 0
    return root / "runs" / "small", args


def report(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())


@pytest.mark.integration
def test_run_reports_every_stage_in_order(small_run):
    run_dir, _ = small_run
    data = report(run_dir)
    assert [s["kind"] for s in data["stages"]] == ["teacher", "distill", "baseline"]
    assert data["task"] == "sst2" and data["metric"] == "accuracy"
    for key in ("recipe", "recipe_hash", "command", "machine", "date"):
        assert data[key]
    for stage in data["stages"]:
        assert stage["params"] > 0 and stage["size_bytes"] > 0 and stage["train_seconds"] > 0


@pytest.mark.integration
def test_distilled_student_beats_chance(small_run):
    run_dir, _ = small_run
    student = next(s for s in report(run_dir)["stages"] if s["kind"] == "distill")
    assert student["params"] < 0.8 * report(run_dir)["stages"][0]["params"]
    # SST-2 dev is 444/872 positive: chance (majority) is 50.9 %.
    assert student["metric_value"] > 0.6


@pytest.mark.integration
def test_every_stage_output_loads_in_a_pipeline(small_run):
    from transformers import pipeline

    run_dir, _ = small_run
    for stage in ("teacher", "student", "baseline"):
        classify = pipeline("text-classification", model=str(run_dir / stage))
        out = classify(["a gorgeous, witty, seductive movie.", "the plot is a dull mess."])
        assert {o["label"] for o in out} <= {"negative", "positive"}
        saved = json.loads((run_dir / stage / "metrics.json").read_text())
        assert saved["stage"] == stage
        assert (run_dir / stage / "recipe.yaml").is_file()
        assert (run_dir / stage / "model.safetensors").is_file()


@pytest.mark.integration
def test_train_log_is_jsonl_with_evaluations(small_run):
    run_dir, _ = small_run
    records = [json.loads(line) for line in (run_dir / "student" / "train_log.jsonl").read_text().splitlines()]
    assert any("eval" in r for r in records)
    assert all("step" in r for r in records)


@pytest.mark.integration
def test_rerun_reuses_finished_stages(small_run, capsys):
    run_dir, args = small_run
    before = report(run_dir)
    assert main(args) == 0
    assert capsys.readouterr().out.count("already done") == 3
    assert [s["metric_value"] for s in report(run_dir)["stages"]] == [s["metric_value"] for s in before["stages"]]


@pytest.mark.integration
def test_eval_command_reproduces_the_stage_metric(small_run, capsys, glue_data_dir):
    run_dir, _ = small_run
    assert main(["eval", str(run_dir / "student"), "--task", "sst2", "--data-dir", str(glue_data_dir),
                 "--max-length", "48"]) == 0
    measured = json.loads(capsys.readouterr().out)
    recorded = json.loads((run_dir / "student" / "metrics.json").read_text())["metric_value"]
    assert measured["accuracy"] == pytest.approx(recorded, abs=1e-9)


@pytest.fixture
def copied_run(small_run, tmp_path):
    """A private copy of the small run's folder (its stages can be deleted and re-run) and its args."""
    run_dir, args = small_run
    copy = tmp_path / "runs" / "small"
    shutil.copytree(run_dir, copy)
    return copy, [a if not a.startswith("output_dir=") else f"output_dir={tmp_path / 'runs'}" for a in args]


@pytest.mark.integration
def test_stages_option_runs_only_the_named_stages(copied_run, capsys):
    run_dir, args = copied_run
    original_hash = json.loads((run_dir / "baseline" / "metrics.json").read_text())["stage_hash"]
    shutil.rmtree(run_dir / "student")
    shutil.rmtree(run_dir / "baseline")
    assert main([*args, "--stages", "baseline"]) == 0
    assert "[student] not finished and not in --stages: skipped" in capsys.readouterr().out
    assert not (run_dir / "student").exists()
    # Trained alone, the baseline has the fingerprint a full run gives it, so a full run reuses it.
    assert json.loads((run_dir / "baseline" / "metrics.json").read_text())["stage_hash"] == original_hash
    assert [s["stage"] for s in report(run_dir)["stages"]] == ["teacher", "baseline"]


@pytest.mark.integration
def test_stages_option_names_an_unfinished_stage_it_needs(copied_run):
    run_dir, args = copied_run
    shutil.rmtree(run_dir / "teacher")
    shutil.rmtree(run_dir / "student")
    result = run_cli(*args[:3], "--stages", "student", *args[3:])
    assert result.returncode == 2, result.stderr
    assert "stage 'teacher' is not finished" in result.stderr and "Traceback" not in result.stderr
    assert not (run_dir / "student").exists()


@pytest.mark.integration
def test_baseline_from_pretrained_layers_runs_before_any_teacher(copied_run):
    run_dir, args = copied_run
    for stage in ("teacher", "student", "baseline"):
        shutil.rmtree(run_dir / stage)
    assert main([*args, "stages.baseline.student.init_from=pretrained", "--stages", "baseline"]) == 0
    assert (run_dir / "baseline" / "model.safetensors").is_file()
    assert not (run_dir / "teacher").exists()


def test_stages_option_rejects_an_unknown_stage_name(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(SMALL_RUN))
    result = run_cli("run", str(recipe), f"output_dir={tmp_path / 'runs'}", "--stages", "studnet")
    assert result.returncode == 2
    assert "--stages: no stage named studnet" in result.stderr and "teacher, student, baseline" in result.stderr


def test_stages_option_rejects_an_empty_list(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(SMALL_RUN))
    result = run_cli("run", str(recipe), f"output_dir={tmp_path / 'runs'}", "--stages", ",")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--stages: name at least one stage" in result.stderr
    assert not (tmp_path / "runs").exists()


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "distill", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_bad_recipe_exits_2_with_one_line_and_no_traceback(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump({**SMALL_RUN, "stages": [{"kind": "distill", "loss": {"temperature": 0}}]}))
    result = run_cli("run", str(recipe), f"output_dir={tmp_path / 'runs'}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "bad.yaml: stages[0].loss.temperature" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_missing_data_folder_exits_2(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(SMALL_RUN))
    result = run_cli("run", str(recipe), "--data-dir", str(tmp_path / "nowhere"), f"output_dir={tmp_path / 'runs'}")
    assert result.returncode == 2, result.stderr
    assert "nowhere" in result.stderr and "Traceback" not in result.stderr


def test_validate_prints_the_resolved_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(SMALL_RUN))
    result = run_cli("validate", str(recipe), "stages.student.loss.temperature=4")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["stages"][1]["loss"]["temperature"] == 4


def test_help_works_for_every_command():
    for command in ([], ["run"], ["validate"], ["eval"]):
        result = run_cli(*command, "--help")
        assert result.returncode == 0 and "usage: distill" in result.stdout

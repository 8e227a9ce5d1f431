"""`kill -9` in the middle of a stage, run the same command again: the run continues from its
last checkpoint and ends with the same metrics as a run that was never interrupted."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

RECIPE = {
    "name": "killed",
    "task": "sst2",
    "seed": 5,
    "data": {"max_length": 32, "train_limit": 480, "eval_limit": 96},
    "model": {"model": "minilm-l6"},
    "stages": [
        {"kind": "teacher", "train": {"max_steps": 24, "batch_size": 16, "learning_rate": 1e-4, "checkpoint_every": 4,
                                      "eval_every": 8}},
        {"kind": "distill", "student": {"layers": [0, 3]}, "train": {"max_steps": 8, "batch_size": 16}},
    ],
}


def start(recipe_path, out_dir, data_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "distill", "run", str(recipe_path), f"output_dir={out_dir}", "--data-dir", str(data_dir)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(path, process, timeout=600):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def metrics(out_dir):
    report = json.loads((out_dir / "killed" / "report.json").read_text())
    return [(s["stage"], s["metrics"]) for s in report["stages"]]


@pytest.mark.integration
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, glue_data_dir):
    recipe = tmp_path / "killed.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))

    reference = start(recipe, tmp_path / "reference", glue_data_dir)
    victim = start(recipe, tmp_path / "resumed", glue_data_dir)
    checkpoints = tmp_path / "resumed" / "killed" / "teacher.partial" / "checkpoints"
    wait_for(checkpoints / "latest", victim)
    while (checkpoints / "latest").read_text().strip() == "step-4" and victim.poll() is None:
        time.sleep(0.1)  # past the second checkpoint, in the middle of training
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "resumed" / "killed" / "teacher").exists()  # never marked done

    resumed = start(recipe, tmp_path / "resumed", glue_data_dir)
    output = resumed.communicate(timeout=900)[0]
    assert resumed.returncode == 0, output
    assert "resuming at step" in output
    assert reference.wait(timeout=900) == 0, reference.stdout.read()

    assert metrics(tmp_path / "resumed") == metrics(tmp_path / "reference")
    assert not (tmp_path / "resumed" / "killed" / "teacher" / "checkpoints").exists()

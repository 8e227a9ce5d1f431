"""`accelerate launch` with 2 CPU processes trains exactly like 1 process with the same global
batch (gradients synced, batches split, evaluation gathered once), and only rank 0 writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("multiprocess_train.py")


def run(args, out_dir):
    out_dir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "PYTHONPATH": str(SCRIPT.parents[2])}
    result = subprocess.run([*args, str(SCRIPT), str(out_dir)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.integration
def test_two_processes_match_one_process(tmp_path):
    run([sys.executable], tmp_path / "one")
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    run(launcher, tmp_path / "two")

    one, two = load_file(str(tmp_path / "one" / "weights.safetensors")), load_file(str(tmp_path / "two" / "weights.safetensors"))
    for name in one:
        assert torch.allclose(one[name], two[name], atol=1e-5), name

    logs = {n: [json.loads(line) for line in (tmp_path / n / "log.jsonl").read_text().splitlines()] for n in ("one", "two")}
    # Written once (rank 0 only), and evaluation counted every one of the 101 examples exactly once.
    assert [r["step"] for r in logs["two"]] == [r["step"] for r in logs["one"]]
    evals = [r["eval"] for r in logs["two"] if "eval" in r]
    assert evals and all(e["examples"] == 101 for e in evals)
    assert evals == [r["eval"] for r in logs["one"] if "eval" in r]

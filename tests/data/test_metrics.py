"""Offline GLUE metrics (local evaluate module) against sklearn / scipy on fixed arrays."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from distill import DistillError
from distill.data import metrics
from distill.data.metrics import compute_metrics, predictions_from_logits

REPO = Path(__file__).resolve().parents[2]

PREDS = np.array([0, 1, 1, 0, 1, 1, 0, 0, 1, 1, 0, 1])
REFS = np.array([0, 1, 0, 0, 1, 1, 1, 0, 1, 0, 0, 1])
MULTI_PREDS = np.array([0, 2, 1, 2, 2, 0, 1, 1, 0, 2])
MULTI_REFS = np.array([0, 2, 2, 2, 1, 0, 1, 0, 0, 2])
SCORES = np.array([0.2, 1.5, 3.9, 2.2, 4.8, 0.9, 3.1, 2.7])
GOLD = np.array([0.0, 1.0, 4.2, 2.0, 5.0, 1.4, 2.6, 3.0])

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.fixture(scope="module", autouse=True)
def offline_hf_home(tmp_path_factory):
    """HF_HOME in a scratch folder and every HF offline switch on, for the whole module.

    evaluate reads HF_HOME once, at its first import; distill.data.metrics imports it lazily, so
    setting the variables here (before any metric is loaded) keeps its caches out of ~.
    """
    home = tmp_path_factory.mktemp("hf_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HOME", str(home))
        for key, value in OFFLINE_ENV.items():
            mp.setenv(key, value)
        metrics.clear_metric_cache()
        yield home
        metrics.clear_metric_cache()


_FRESH_PROCESS_CODE = """
import json
import evaluate
from distill.data.metrics import compute_metrics
out = compute_metrics("mrpc", [0, 1, 1, 0], [0, 1, 0, 0], False)
print(json.dumps({"result": out, "modules": str(evaluate.config.HF_MODULES_CACHE)}))
"""


@pytest.fixture(scope="module", autouse=True)
def fresh_process(offline_hf_home, tmp_path_factory):
    """Starts, at module setup, a separate Python process that computes a metric with its own
    scratch HF_HOME and the offline switches (taken from the environment `offline_hf_home` set,
    HF_HOME overridden). It imports evaluate (~6 s) on the second core while the other tests
    run; the test named for it checks the result."""
    home = tmp_path_factory.mktemp("hf_home_fresh")
    env = {**os.environ, "HF_HOME": str(home), "PYTHONPATH": str(REPO)}
    assert all(env[key] == value for key, value in OFFLINE_ENV.items())
    proc = subprocess.Popen(
        [sys.executable, "-c", _FRESH_PROCESS_CODE],
        cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    yield proc, home
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


@pytest.mark.parametrize("task", ["sst2", "rte", "qnli", "wnli"])
def test_accuracy_tasks_match_sklearn(task):
    result = compute_metrics(task, PREDS, REFS, is_regression=False)
    assert result == {"accuracy": pytest.approx(accuracy_score(REFS, PREDS))}


def test_mrpc_returns_f1_and_accuracy():
    result = compute_metrics("mrpc", PREDS, REFS, is_regression=False)
    assert set(result) == {"f1", "accuracy"}
    assert result["f1"] == pytest.approx(f1_score(REFS, PREDS))
    assert result["accuracy"] == pytest.approx(accuracy_score(REFS, PREDS))


def test_cola_returns_matthews_correlation():
    result = compute_metrics("cola", PREDS, REFS, is_regression=False)
    assert result == {"matthews_correlation": pytest.approx(matthews_corrcoef(REFS, PREDS))}


def test_stsb_returns_pearson_and_spearman():
    result = compute_metrics("stsb", SCORES, GOLD, is_regression=True)
    assert set(result) == {"pearson", "spearmanr"}
    # the metric's features are float32, like the Hub module's: compare at float32 precision
    assert result["pearson"] == pytest.approx(pearsonr(SCORES, GOLD)[0], rel=1e-5)
    assert result["spearmanr"] == pytest.approx(spearmanr(SCORES, GOLD)[0], rel=1e-5)


def test_unknown_classification_task_falls_back_to_custom_classification():
    result = compute_metrics("my_reviews", MULTI_PREDS, MULTI_REFS, is_regression=False)
    assert result == {
        "accuracy": pytest.approx(accuracy_score(MULTI_REFS, MULTI_PREDS)),
        "f1_macro": pytest.approx(f1_score(MULTI_REFS, MULTI_PREDS, average="macro")),
    }


def test_unknown_regression_task_falls_back_to_custom_regression():
    result = compute_metrics("my_scores", SCORES, GOLD, is_regression=True)
    assert result["pearson"] == pytest.approx(pearsonr(SCORES, GOLD)[0], rel=1e-5)
    assert result["spearmanr"] == pytest.approx(spearmanr(SCORES, GOLD)[0], rel=1e-5)


def test_results_are_plain_python_floats():
    for task, p, r, reg in [("mrpc", PREDS, REFS, False), ("cola", PREDS, REFS, False), ("stsb", SCORES, GOLD, True)]:
        assert all(type(v) is float for v in compute_metrics(task, p, r, reg).values())


def test_task_name_is_case_insensitive():
    assert compute_metrics("SST2", PREDS, REFS, False) == compute_metrics("sst2", PREDS, REFS, False)


def test_metric_module_loaded_once_per_config():
    assert metrics.load_metric("rte") is metrics.load_metric("rte")


def test_glue_task_with_wrong_regression_flag_raises():
    with pytest.raises(DistillError, match="is_regression"):
        compute_metrics("stsb", PREDS, REFS, is_regression=False)


def test_mismatched_lengths_raise():
    with pytest.raises(DistillError, match="predictions"):
        compute_metrics("sst2", PREDS[:-1], REFS, is_regression=False)


def test_predictions_from_logits_argmax_for_classification():
    logits = np.array([[0.1, 2.0], [3.0, -1.0], [0.0, 0.5]], dtype=np.float32)
    np.testing.assert_array_equal(predictions_from_logits(logits, is_regression=False), [1, 0, 1])


def test_predictions_from_logits_squeezes_for_regression():
    logits = np.array([[0.5], [4.25], [1.0]], dtype=np.float32)
    preds = predictions_from_logits(logits, is_regression=True)
    assert preds.shape == (3,)
    np.testing.assert_allclose(preds, [0.5, 4.25, 1.0])


def test_metrics_load_offline_in_fresh_process_with_scratch_hf_home(fresh_process):
    """A fresh process (as the CLI runs) with HF_HOME in a tmp dir and HF_HUB_OFFLINE=1: the local
    module loads without network and evaluate's module copy lands under that HF_HOME."""
    proc, home = fresh_process
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr
    data = json.loads(stdout.strip().splitlines()[-1])
    assert data["result"] == {"accuracy": pytest.approx(0.75), "f1": pytest.approx(2 / 3)}
    assert Path(data["modules"]).is_relative_to(home)
    assert list(home.glob("modules/evaluate_modules/metrics/glue/*/glue.py"))

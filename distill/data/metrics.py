"""Offline task metrics through `evaluate`, backed by local modules: metric_modules/glue (GLUE and
custom sentence tasks) and metric_modules/squad (SQuAD v1.1 exact match and F1, `qa_metrics`).
Token tasks use seqeval (`token_metrics`).

`evaluate.load("glue", ...)` needs the Hub; `evaluate.load(<local dir>, config)` does not. The
loaded module is cached per config for the life of the process. evaluate copies the module into
its modules cache (``$HF_HOME/modules``, read when evaluate is first imported): set HF_HOME before
the first call to keep it out of the home folder. evaluate is imported lazily, on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from distill import DistillError

__all__ = [
    "GLUE_CONFIGS",
    "GLUE_METRIC_DIR",
    "REGRESSION_CONFIGS",
    "SQUAD_METRIC_DIR",
    "clear_metric_cache",
    "compute_metrics",
    "load_metric",
    "metric_config_name",
    "predictions_from_logits",
    "qa_metrics",
    "token_metrics",
]

GLUE_METRIC_DIR = Path(__file__).resolve().parent / "metric_modules" / "glue"
SQUAD_METRIC_DIR = Path(__file__).resolve().parent / "metric_modules" / "squad"
GLUE_CONFIGS = ("sst2", "mrpc", "rte", "cola", "stsb", "qnli", "wnli", "custom_classification", "custom_regression")
REGRESSION_CONFIGS = frozenset({"stsb", "custom_regression"})

_CACHE: dict[str, Any] = {}
_LOCK = threading.Lock()


def metric_config_name(task_name: str | None, is_regression: bool) -> str:
    """The metric config for a task: the GLUE config of that name, else the custom fallback.

    Raises DistillError when a GLUE task's kind contradicts ``is_regression`` (stsb is the only
    regression task), since its metric would be meaningless.
    """
    name = (task_name or "").strip().lower().replace("-", "")
    if name in GLUE_CONFIGS:
        if (name in REGRESSION_CONFIGS) != bool(is_regression):
            kind = "a regression" if name in REGRESSION_CONFIGS else "a classification"
            raise DistillError(
                f"task.name: {task_name!r} is {kind} task but is_regression={bool(is_regression)}"
            )
        return name
    return "custom_regression" if is_regression else "custom_classification"


def load_metric(config_name: str):
    """The evaluate module for ``config_name`` (one of GLUE_CONFIGS), loaded once and cached."""
    if config_name not in GLUE_CONFIGS:
        raise DistillError(f"metric config: unknown {config_name!r}; expected one of {list(GLUE_CONFIGS)}")
    return _load_module(GLUE_METRIC_DIR, config_name)


def _load_module(directory: Path, config_name: str | None):
    with _LOCK:
        key = f"{directory.name}:{config_name}"
        metric = _CACHE.get(key)
        if metric is None:
            import evaluate

            # keep_in_memory: no Arrow cache files / file locks under HF_HOME/metrics.
            metric = evaluate.load(str(directory), config_name, keep_in_memory=True)
            _CACHE[key] = metric
        return metric


def clear_metric_cache() -> None:
    """Forget the loaded metric modules (tests)."""
    with _LOCK:
        _CACHE.clear()


def _flat(values, name: str, dtype) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DistillError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    return arr.astype(dtype)


def compute_metrics(task_name: str, predictions, references, is_regression: bool) -> dict[str, float]:
    """GLUE metrics for ``task_name`` as plain floats.

    sst2/rte/qnli/wnli -> accuracy; mrpc -> accuracy, f1; cola -> matthews_correlation;
    stsb -> pearson, spearmanr. Unknown tasks fall back to custom_classification
    (accuracy, f1_macro) or custom_regression (pearson, spearmanr) by ``is_regression``.
    ``predictions`` are class ids (see `predictions_from_logits`) or regression scores.
    """
    config = metric_config_name(task_name, is_regression)
    dtype = np.float64 if is_regression else np.int64
    preds = _flat(predictions, "predictions", dtype)
    refs = _flat(references, "references", dtype)
    if len(preds) != len(refs):
        raise DistillError(f"predictions: {len(preds)} values but {len(refs)} references")
    if len(preds) == 0:
        raise DistillError("predictions: empty (no evaluation examples)")
    metric = load_metric(config)
    with _LOCK:  # an EvaluationModule holds per-call state: one compute at a time
        result = metric.compute(predictions=preds, references=refs)
    return {key: float(value) for key, value in result.items()}


def predictions_from_logits(logits, is_regression: bool) -> np.ndarray:
    """Class ids (argmax over the last axis) or, for regression, the scores (``squeeze(-1)``)."""
    arr = np.asarray(logits)
    if is_regression:
        return arr.squeeze(-1) if arr.ndim >= 1 and arr.shape[-1] == 1 else arr
    if arr.ndim < 2:
        raise DistillError(f"logits: expected [N, num_labels] for classification, got shape {arr.shape}")
    return arr.argmax(axis=-1)


def token_metrics(predictions: list[list[str]], references: list[list[str]], *, scheme: str = "BIO") -> dict[str, float]:
    """Entity-level micro precision, recall and F1 from seqeval (conlleval's rules), per-type F1 as
    ``f1_<type>``, and per-token accuracy beside them. ``scheme`` "none": tags carry no B-/I- prefix,
    and each run of one tag is one entity (read as IO)."""
    from seqeval.metrics import accuracy_score, classification_report

    if len(predictions) != len(references):
        raise DistillError(f"predictions: {len(predictions)} sentences but {len(references)} references")
    if not references:
        raise DistillError("predictions: empty (no evaluation sentences)")
    for number, (pred, ref) in enumerate(zip(predictions, references)):
        if len(pred) != len(ref):
            raise DistillError(f"predictions: sentence {number} has {len(pred)} tags but {len(ref)} references")
    if scheme == "none":
        predictions, references = ([[t if t == "O" else f"I-{t}" for t in s] for s in seqs] for seqs in (predictions, references))
    report = classification_report(references, predictions, output_dict=True, zero_division=0)
    micro = report["micro avg"]
    result = {"f1": micro["f1-score"], "precision": micro["precision"], "recall": micro["recall"],
              "accuracy": accuracy_score(references, predictions)}
    for name, scores in report.items():
        if not name.endswith(" avg"):
            result[f"f1_{name}"] = scores["f1-score"]
    return {key: float(value) for key, value in result.items()}


def qa_metrics(predictions: Mapping[str, str], references: Mapping[str, Sequence[str] | Mapping[str, Sequence]]) -> dict[str, float]:
    """The official SQuAD v1.1 exact match and F1, 0..100 (metric_modules/squad), of `predictions`
    ({question id: answer text}, e.g. from distill.data.qa_answers.extract_answers) against `references`
    ({question id: its reference answer texts, or a row's `answers` {text, answer_start}}). The two
    must name the same questions: a missing answer is a caller's bug here, not a zero."""
    if not references:
        raise DistillError("predictions: empty (no evaluation questions)")
    missing = [question for question in references if question not in predictions]
    extra = [question for question in predictions if question not in references]
    if missing or extra:
        which = f"no answer for question {missing[0]!r}" if missing else f"an answer for unknown question {extra[0]!r}"
        raise DistillError(f"predictions: {which} ({len(missing)} missing, {len(extra)} unknown)")
    rows = []
    for question, answers in references.items():
        texts = [] if isinstance(answers, str) else list(answers["text"] if isinstance(answers, Mapping) else answers)
        if not texts:
            raise DistillError(f"references: question {question!r} needs a list of reference answers")
        rows.append({"id": question, "answers": {"text": texts, "answer_start": [-1] * len(texts)}})  # not scored
    metric = _load_module(SQUAD_METRIC_DIR, None)
    with _LOCK:
        result = metric.compute(predictions=[{"id": q, "prediction_text": predictions[q]} for q in references],
                                references=rows)
    return {key: float(value) for key, value in result.items()}

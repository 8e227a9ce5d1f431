"""Reload checks for one stage artifact of scripts/architecture_matrix.py, made outside the run.

- Every model artifact: the accuracy `distill eval` recomputes from the saved folder equals the one
  the stage reported (to 1e-9).
- torch artifacts: `from_pretrained` (where transformers can build the shapes) gives the logits of
  distill's loader within RELOAD_TOLERANCE, and `pipeline("text-classification")` on the loaded
  model gives the same probabilities within RELOAD_TOLERANCE.
- ONNX artifacts: plain onnxruntime (default session) on model.onnx predicts as distill's session
  does. Post-training int8 (weights fixed): against the fp32 torch model it was made from, its
  predictions agree on at least ONNX_AGREEMENT of the dev rows checked and its logits differ by at
  most ONNX_LOGIT_TOLERANCE. QAT trains its weights, so there the agreement is recorded, not bounded.

Each check returns (status, details): status "ok" or "failed: <why>"; details the measured numbers.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

RELOAD_TOLERANCE = 1e-5
ONNX_AGREEMENT = 0.9
ONNX_LOGIT_TOLERANCE = 0.25  # int8 weights and activations: absolute, on logits of magnitude ~1-3
ROWS = 64
MAX_LENGTH = 32


class CheckFailed(Exception):
    pass


def dev_sentences(data_dir: str, rows: int = ROWS) -> list[str]:
    with (Path(data_dir) / "sst2" / "dev.tsv").open(encoding="utf-8") as lines:
        next(lines)
        return [line.split("\t")[0] for _, line in zip(range(rows), lines)]


def _logits(model, batch) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(**batch).logits.float().cpu().numpy()


def _inputs(folder: Path, sentences: list[str], accepted) -> dict:
    from transformers import AutoTokenizer

    encoded = AutoTokenizer.from_pretrained(folder)(sentences, padding=True, truncation=True, max_length=MAX_LENGTH,
                                                    return_tensors="pt")
    return {k: v for k, v in encoded.items() if k in accepted}


def _require(ok: bool, why: str) -> None:
    if not ok:
        raise CheckFailed(why)


def check_metric(folder: Path, record: dict, data_dir: str) -> dict:
    """The accuracy `distill eval` recomputes from the saved artifact, against the stage's own."""
    reported = (record.get("metrics") or {}).get("accuracy")
    if reported is None:
        return {}
    out = subprocess.run([sys.executable, "-m", "distill", "eval", str(folder), "--task", "sst2", "--max-length", str(MAX_LENGTH),
                          "--data-dir", data_dir], capture_output=True, text=True, check=False)
    _require(out.returncode == 0, f"distill eval: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    recomputed = json.loads(out.stdout).get("accuracy")
    _require(recomputed is not None and abs(recomputed - reported) <= 1e-9, f"reloaded accuracy {recomputed} != reported {reported}")
    return {"accuracy": reported}


def check_torch(folder: Path, sentences: list[str]) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from distill.quantize.artifacts import load_artifact, loads_with_from_pretrained

    model, kind = load_artifact(folder)
    batch = _inputs(folder, sentences, inspect.signature(model.forward).parameters)
    ours = _logits(model, batch)
    details = {"backend": kind.label}
    if kind.backend == "torch" and loads_with_from_pretrained(folder):
        native = _logits(AutoModelForSequenceClassification.from_pretrained(folder).eval(), batch)
        details["from_pretrained_max_diff"] = float(np.abs(native - ours).max())
        _require(details["from_pretrained_max_diff"] <= RELOAD_TOLERANCE,
                 f"from_pretrained logits differ by {details['from_pretrained_max_diff']:.2g}")
    elif kind.backend == "torch":
        details["from_pretrained"] = "shapes not native: distill's loader only"
    if kind.backend == "torch":
        classify = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(folder), top_k=None)
        probabilities = np.exp(ours - ours.max(1, keepdims=True))
        probabilities /= probabilities.sum(1, keepdims=True)
        worst = 0.0
        for row, scores in zip(probabilities, classify(sentences[:8], batch_size=1, truncation=True, max_length=MAX_LENGTH)):
            by_label = {s["label"]: s["score"] for s in scores}
            piped = np.array([by_label[model.config.id2label[i]] for i in range(len(row))])
            worst = max(worst, float(np.abs(piped - row).max()))
        details["pipeline_max_diff"] = worst
        _require(worst <= RELOAD_TOLERANCE, f"pipeline() probabilities differ by {worst:.2g}")
    return details


def check_onnx(folder: Path, source: Path, sentences: list[str], *, trained: bool) -> dict:
    import onnxruntime

    from distill.quantize.artifacts import load_artifact

    session = onnxruntime.InferenceSession(str(next(folder.glob("*.onnx"))), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    batch = _inputs(folder, sentences, names)
    if "token_type_ids" in names and "token_type_ids" not in batch:  # RoBERTa takes them, its tokenizer makes none
        batch["token_type_ids"] = batch["input_ids"] * 0
    plain = session.run(["logits"], {k: v.numpy() for k, v in batch.items()})[0]
    ours = _logits(load_artifact(folder)[0], batch)  # distill's session leaves one load-time fusion off: rounding differs
    _require(bool((ours.argmax(1) == plain.argmax(1)).all()), "plain onnxruntime and distill's session predict differently")
    torch_model, _ = load_artifact(source)
    reference = _logits(torch_model, _inputs(source, sentences, inspect.signature(torch_model.forward).parameters))
    details = {"max_logit_diff_to_distill_session": float(np.abs(ours - plain).max()),
               "agreement_with_fp32": float((reference.argmax(1) == plain.argmax(1)).mean()),
               "max_logit_diff_to_fp32": float(np.abs(reference - plain).max())}
    if trained:
        return details
    _require(details["agreement_with_fp32"] >= ONNX_AGREEMENT,
             f"int8 predictions agree with fp32 on {details['agreement_with_fp32']:.0%} of rows (< {ONNX_AGREEMENT:.0%})")
    _require(details["max_logit_diff_to_fp32"] <= ONNX_LOGIT_TOLERANCE,
             f"int8 logits differ from fp32 by {details['max_logit_diff_to_fp32']:.2g} (> {ONNX_LOGIT_TOLERANCE})")
    return details


def check_artifact(run_dir: Path, stage: str, record: dict, data_dir: str, source: str | None) -> tuple[str, dict]:
    folder = run_dir / stage
    try:
        if stage == "publish":
            card = folder / "upload" / "README.md"
            _require(card.is_file(), "no upload/README.md")
            return "ok", {"card_bytes": card.stat().st_size}
        details = check_metric(folder, record, data_dir)
        sentences = dev_sentences(data_dir)
        if any(folder.glob("*.onnx")):
            details |= check_onnx(folder, run_dir / source, sentences, trained=stage == "qat")
        else:
            details |= check_torch(folder, sentences)
        return "ok", details
    except CheckFailed as failed:
        return f"failed: {failed}", {}
    except Exception as err:  # noqa: BLE001 (a check that cannot run is a failed check, named in the matrix)
        return f"failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", {}

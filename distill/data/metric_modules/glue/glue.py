# Offline copy of the GLUE metric, in the shape of the Hugging Face Hub's `evaluate-metric/glue`
# module (same configs and output keys), plus two fallbacks for custom data sets.
# Loaded with `evaluate.load("<path to this directory>", config_name)`: no network needed.
# NOTE: evaluate's import scanner reads each import line: keep one module per import statement.
"""GLUE benchmark metric, local and offline."""

import datasets
import evaluate
import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

_CITATION = """\
@inproceedings{wang2019glue,
  title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer and Bowman, Samuel R.},
  note={In the Proceedings of ICLR.},
  year={2019}
}
"""

_DESCRIPTION = """\
GLUE metric: accuracy (sst2, rte, qnli, wnli), f1 and accuracy (mrpc), Matthews correlation (cola),
Pearson and Spearman correlation (stsb). Extra configs for custom data:
custom_classification (accuracy and macro F1) and custom_regression (Pearson and Spearman).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted labels (ints), or scores (floats) for stsb / custom_regression.
    references: gold labels (ints), or scores (floats) for stsb / custom_regression.
Returns: a dict with, depending on the config,
    "accuracy", "f1" (mrpc: binary F1 of class 1; custom_classification: "f1_macro"),
    "matthews_correlation" (cola), "pearson" and "spearmanr" (stsb, custom_regression).
Examples:
    >>> glue_metric = evaluate.load("distill/metric_modules/glue", "mrpc")
    >>> glue_metric.compute(predictions=[0, 1], references=[0, 1])
    {'accuracy': 1.0, 'f1': 1.0}
"""

ACCURACY_CONFIGS = ("sst2", "rte", "qnli", "wnli")
REGRESSION_CONFIGS = ("stsb", "custom_regression")
CONFIGS = ACCURACY_CONFIGS + ("mrpc", "cola", "custom_classification") + REGRESSION_CONFIGS


def simple_accuracy(preds, labels):
    return float((np.asarray(preds) == np.asarray(labels)).mean())


def acc_and_f1(preds, labels):
    return {
        "accuracy": simple_accuracy(preds, labels),
        "f1": float(f1_score(y_true=labels, y_pred=preds)),
    }


def acc_and_macro_f1(preds, labels):
    return {
        "accuracy": simple_accuracy(preds, labels),
        "f1_macro": float(f1_score(y_true=labels, y_pred=preds, average="macro")),
    }


def pearson_and_spearman(preds, labels):
    preds = np.asarray(preds, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    return {
        "pearson": float(pearsonr(preds, labels)[0]),
        "spearmanr": float(spearmanr(preds, labels)[0]),
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Glue(evaluate.Metric):
    def _info(self):
        if self.config_name not in CONFIGS:
            raise KeyError(f"Unknown GLUE config {self.config_name!r}; expected one of {list(CONFIGS)}")
        value_type = "float32" if self.config_name in REGRESSION_CONFIGS else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value(value_type),
                    "references": datasets.Value(value_type),
                }
            ),
            codebase_urls=[],
            reference_urls=[],
            format="numpy",
        )

    def _compute(self, predictions, references):
        if self.config_name == "cola":
            return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}
        if self.config_name in REGRESSION_CONFIGS:
            return pearson_and_spearman(predictions, references)
        if self.config_name == "mrpc":
            return acc_and_f1(predictions, references)
        if self.config_name == "custom_classification":
            return acc_and_macro_f1(predictions, references)
        return {"accuracy": simple_accuracy(predictions, references)}

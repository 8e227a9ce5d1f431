# Offline copy of the SQuAD v1.1 metric: the official evaluation script `evaluate-v1.1.py` (Rajpurkar et
# al., from the SQuAD explorer site), in the shape of the Hugging Face Hub's `evaluate-metric/squad` module
# (same inputs and output keys). Loaded with `evaluate.load("<path to this directory>")`: no network needed.
# Written out because no installed package has it: evaluate fetches its `squad` module from the Hub, and
# transformers 5 dropped data/metrics/squad_metrics.py.
# NOTE: evaluate's import scanner reads each import line: keep one module per import statement.
"""SQuAD v1.1 exact match and F1, local and offline: the official evaluate-v1.1.py scoring."""

import re
import string
from collections import Counter

import datasets
import evaluate

_CITATION = """\
@inproceedings{rajpurkar-etal-2016-squad,
  title={{SQ}u{AD}: 100,000+ Questions for Machine Comprehension of Text},
  author={Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy},
  booktitle={Proceedings of the 2016 Conference on Empirical Methods in Natural Language Processing},
  year={2016}
}
"""

_DESCRIPTION = """\
The official SQuAD v1.1 scores. Answers are normalised (lower case; punctuation, the articles a / an / the
and extra whitespace removed); exact_match is 100 when a prediction equals a reference answer, f1 is the
token-overlap F1 with it; each question takes its best reference, and both are averaged over the
questions and reported x100, as evaluate-v1.1.py prints them.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: a list of {"id": question id, "prediction_text": the predicted answer}.
    references: a list of {"id": question id, "answers": {"text": [reference answers], "answer_start": [ints]}}.
Returns:
    "exact_match" and "f1", each 0..100. A question without a prediction scores 0 on both.
Examples:
    >>> squad_metric = evaluate.load("distill/data/metric_modules/squad")
    >>> squad_metric.compute(predictions=[{"id": "q1", "prediction_text": "the Broncos"}],
    ...                      references=[{"id": "q1", "answers": {"text": ["Broncos"], "answer_start": [0]}}])
    {'exact_match': 100.0, 'f1': 100.0}
"""


def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace (evaluate-v1.1.py)."""

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction, ground_truth):
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    return max(metric_fn(prediction, ground_truth) for ground_truth in ground_truths)


def score(predictions_by_id, answers_by_id):
    """evaluate-v1.1.py's evaluate(), over {id: reference texts} instead of the nested dataset."""
    exact_match = f1 = 0.0
    for question_id, ground_truths in answers_by_id.items():
        if question_id not in predictions_by_id:
            continue  # unanswered: scores 0 (the official script prints a message)
        prediction = predictions_by_id[question_id]
        exact_match += metric_max_over_ground_truths(exact_match_score, prediction, ground_truths)
        f1 += metric_max_over_ground_truths(f1_score, prediction, ground_truths)
    total = len(answers_by_id)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Squad(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                    "references": {
                        "id": datasets.Value("string"),
                        "answers": {
                            "text": datasets.Sequence(datasets.Value("string")),
                            "answer_start": datasets.Sequence(datasets.Value("int32")),
                        },
                    },
                }
            ),
            codebase_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(self, predictions, references):
        predictions_by_id = {p["id"]: p["prediction_text"] for p in predictions}
        answers_by_id = {r["id"]: list(r["answers"]["text"]) for r in references}
        return score(predictions_by_id, answers_by_id)

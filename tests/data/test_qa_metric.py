"""The official SQuAD v1.1 exact match and F1 (local evaluate module), on cases computed by hand."""

import pytest

from distill import DistillError
from distill.data.metrics import qa_metrics


def score(prediction: str, *references: str) -> dict[str, float]:
    return qa_metrics({"q": prediction}, {"q": list(references)})


def test_identical_answer_scores_100_on_both():
    assert score("Denver Broncos", "Denver Broncos") == {"exact_match": 100.0, "f1": 100.0}


def test_case_punctuation_articles_and_whitespace_are_normalised_away():
    assert score("  The  Denver-Broncos!", "denver broncos") == {"exact_match": 0.0, "f1": 0.0}  # "-" is removed, not spaced
    assert score("  The  Denver Broncos!", "an denver, broncos.") == {"exact_match": 100.0, "f1": 100.0}


def test_partial_overlap_f1_is_computed_on_normalised_tokens():
    # prediction "carolina panthers won" vs reference "carolina panthers" ("the" dropped): 2 common tokens,
    # precision 2/3, recall 2/2, F1 = 2 * (2/3 * 1) / (2/3 + 1) = 0.8
    assert score("the Carolina Panthers won", "Carolina Panthers") == {"exact_match": 0.0, "f1": pytest.approx(80.0)}


def test_repeated_tokens_count_once_per_match():
    # "b b c" vs "b c c": common tokens = min counts, b 1 + c 1 = 2; precision 2/3, recall 2/3, F1 2/3
    assert score("b b c", "b c c")["f1"] == pytest.approx(200 / 3)


def test_best_reference_answer_counts():
    # "Santa Clara" scores 0 against "Levi's Stadium", F1 0.8 against "Santa Clara, California" and EM against
    # "Santa Clara": the best one, 100 on both
    assert score("Santa Clara", "Levi's Stadium", "Santa Clara, California", "Santa Clara") == {"exact_match": 100.0, "f1": 100.0}
    # "in santa clara" vs "santa clara california": 2 common tokens of 3 each, F1 2/3; vs "levis stadium": 0
    assert score("in Santa Clara", "Levi's Stadium", "Santa Clara, California") == {
        "exact_match": 0.0,
        "f1": pytest.approx(200 / 3),
    }


def test_empty_prediction_scores_zero():
    assert score("", "Denver Broncos") == {"exact_match": 0.0, "f1": 0.0}


def test_scores_are_means_over_questions_times_100():
    predictions = {"a": "Denver Broncos", "b": "the Carolina Panthers won"}
    references = {"a": ["Denver Broncos"], "b": {"text": ["Carolina Panthers"], "answer_start": [7]}}  # a row's answers
    assert qa_metrics(predictions, references) == {"exact_match": 50.0, "f1": pytest.approx(90.0)}  # (100 + 80) / 2


def test_a_question_without_an_answer_is_refused():
    with pytest.raises(DistillError, match="no answer for question 'b'"):
        qa_metrics({"a": "x"}, {"a": ["x"], "b": ["y"]})

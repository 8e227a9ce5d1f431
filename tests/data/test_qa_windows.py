"""Question-answering windows (question first, the context cut with doc_stride overlap, answer token
targets) on WordPiece, byte-level BPE and Unigram tokenizers, and answer extraction from logits."""

import ast
import itertools
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import bpe_tokenizer, unigram_tokenizer

from distill import DistillError
from distill.data.metrics import qa_metrics
from distill.data.qa import NOT_CONTEXT, check_windows, load_qa_file, qa_features
from distill.data.qa_answers import extract_answers

REPO = Path(__file__).resolve().parents[2]
FILLER = (
    "this film is a good movie with a fine cast and a simple story about love and loss , "
    "and the music is never too loud for the quiet scenes . "
)
ANSWER_SENTENCE = "the story takes place in new york during a cold winter with 4 friends . "
WINDOWS = {"max_length": 48, "doc_stride": 12, "max_query_length": 16}


def example(question: str, answer_at: int, fillers: int = 8, answer: str = "new york") -> dict:
    """A long lowercase context (words every test tokenizer knows) with ANSWER_SENTENCE after `answer_at` fillers."""
    context = FILLER * answer_at + ANSWER_SENTENCE + FILLER * (fillers - answer_at)
    return {
        "id": f"q{answer_at}",
        "question": question,
        "context": context,
        "answers": {"text": [answer], "answer_start": [context.index(answer)]},
    }


def batch(*examples: dict) -> dict:
    return {key: [e[key] for e in examples] for key in examples[0]}


EXAMPLES = batch(
    example("where does the story take place ?", 0),
    example("where is the film set ?", 4),
    example("which city is it in ?", 8),
    example("how many friends ?", 6, answer="4"),  # a lone digit: Unigram cuts " 4" into "▁" and "4", both on the "4"
)


@pytest.fixture(scope="module", params=["wordpiece", "bpe", "bpe_untrimmed_offsets", "unigram"])
def tokenizer(request, minilm_dir, tmp_path_factory):
    from transformers import AutoTokenizer

    if request.param == "wordpiece":
        return AutoTokenizer.from_pretrained(minilm_dir)
    if request.param == "unigram":
        return unigram_tokenizer(tmp_path_factory.mktemp("unigram"))
    folder = tmp_path_factory.mktemp("bpe")
    bpe = bpe_tokenizer(folder)
    if request.param == "bpe":
        return bpe
    # Offsets that keep the space before a word ("Ġnew" -> " new"), as RoBERTa's with trim_offsets off.
    untrimmed = AutoTokenizer.from_pretrained(folder / "bpe", trim_offsets=False)
    spans = untrimmed(FILLER, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert any(FILLER[start:end].startswith(" ") for start, end in spans)
    return untrimmed


@pytest.fixture(scope="module")
def wordpiece(minilm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir)


def context_holds(offsets, start_char: int, end_char: int) -> bool:
    spans = [span for span in offsets if tuple(span) != NOT_CONTEXT]
    return spans[0][0] <= start_char and end_char <= spans[-1][1]


# --- windows --------------------------------------------------------------------------------


def test_train_targets_decode_to_the_answer_or_point_at_cls_outside_it(tokenizer):
    train = qa_features(EXAMPLES, tokenizer, **WINDOWS)
    windows = qa_features(EXAMPLES, tokenizer, for_eval=True, **WINDOWS)  # the same windows, with offsets
    assert train["input_ids"] == windows["input_ids"]
    held = 0
    for ids, start, end, offsets, example_id in zip(
        train["input_ids"], train["start_positions"], train["end_positions"], windows["offset_mapping"], windows["example_id"]
    ):
        answers = EXAMPLES["answers"][EXAMPLES["id"].index(example_id)]
        answer, answer_start = answers["text"][0], answers["answer_start"][0]
        if context_holds(offsets, answer_start, answer_start + len(answer)):
            held += 1
            assert tokenizer.decode(ids[start : end + 1]).strip() == answer
        else:
            assert start == end == ids.index(tokenizer.cls_token_id)
    assert 4 <= held < len(train["input_ids"])  # each example's answer in some windows, not in all


def test_long_context_makes_windows_that_overlap_by_doc_stride(tokenizer):
    windows = qa_features(batch(example("where ?", 4)), tokenizer, for_eval=True, **WINDOWS)
    contexts = [[tuple(span) for span in offsets if tuple(span) != NOT_CONTEXT] for offsets in windows["offset_mapping"]]
    assert len(contexts) >= 3
    for before, after in itertools.pairwise(contexts):
        assert before[-WINDOWS["doc_stride"] :] == after[: WINDOWS["doc_stride"]]
    assert all(len(ids) <= WINDOWS["max_length"] for ids in windows["input_ids"])


def test_question_comes_first_cut_to_max_query_length(tokenizer):
    question = "where does the story of this good film with a fine cast and a simple story about love take place in winter"
    assert len(tokenizer(question, add_special_tokens=False)["input_ids"]) > WINDOWS["max_query_length"]
    window = qa_features(batch(example(question, 4)), tokenizer, for_eval=True, **WINDOWS)
    first_context = next(i for i, span in enumerate(window["offset_mapping"][0]) if tuple(span) != NOT_CONTEXT)
    separators = tokenizer.num_special_tokens_to_add(pair=True) - 2  # between question and context: [SEP] or </s></s>
    question_ids = window["input_ids"][0][1 : first_context - separators]  # after [CLS] / <s>
    assert len(question_ids) == WINDOWS["max_query_length"]
    assert question.startswith(tokenizer.decode(question_ids).strip())


def test_leading_whitespace_of_a_question_is_dropped(tokenizer):
    plain = qa_features(batch(example("where is it ?", 4)), tokenizer, **WINDOWS)
    padded = qa_features(batch(example("   \t where is it ?", 4)), tokenizer, **WINDOWS)
    assert padded["input_ids"] == plain["input_ids"]


def test_windows_of_a_tokenizer_without_token_type_ids_still_find_the_answer(tmp_path):
    roberta = bpe_tokenizer(tmp_path)
    assert "token_type_ids" not in roberta.model_input_names
    train = qa_features(batch(example("where ?", 0)), roberta, **WINDOWS)
    assert "token_type_ids" not in train
    start, end = train["start_positions"][0], train["end_positions"][0]
    assert roberta.decode(train["input_ids"][0][start : end + 1]).strip() == "new york"


def test_padding_fills_every_window_to_max_length_with_no_context_offsets(wordpiece):
    examples = batch(example("where ?", 4), example("where ?", 0, fillers=0))  # several windows, and one short one
    plain = qa_features(examples, wordpiece, for_eval=True, **WINDOWS)
    padded = qa_features(examples, wordpiece, for_eval=True, padding=True, **WINDOWS)
    assert {len(ids) for ids in padded["input_ids"]} == {WINDOWS["max_length"]}
    assert len(plain["input_ids"][-1]) < WINDOWS["max_length"]
    for ids, offsets, padded_ids, padded_offsets in zip(
        plain["input_ids"], plain["offset_mapping"], padded["input_ids"], padded["offset_mapping"]
    ):
        assert padded_ids[: len(ids)] == ids and set(padded_ids[len(ids) :]) <= {wordpiece.pad_token_id}
        assert padded_offsets[: len(ids)] == offsets and all(tuple(span) == NOT_CONTEXT for span in padded_offsets[len(ids) :])


def test_doc_stride_without_room_for_new_context_is_refused(wordpiece):
    with pytest.raises(DistillError, match=r"doc_stride 30 must be below the context's room .* = 29"):
        check_windows(wordpiece, max_length=48, doc_stride=30, max_query_length=16)


# --- answer extraction ----------------------------------------------------------------------

# [CLS] q q [SEP] red green blue [SEP]
HAND_FEATURES = {"example_id": ["c1"], "offset_mapping": [[NOT_CONTEXT] * 4 + [(0, 3), (4, 9), (10, 14), NOT_CONTEXT]]}
HAND_EXAMPLES = {"id": ["c1"], "context": ["red green blue"]}


def logits(**values) -> np.ndarray:
    """One window's logits over HAND_FEATURES' 8 tokens, named by position: t1=.., t4=.."""
    row = np.zeros((1, 8), dtype=np.float32)
    for name, value in values.items():
        row[0, int(name[1:])] = value
    return row


def test_extraction_ignores_spans_in_the_question():
    answers = extract_answers(logits(t1=100, t5=2, t4=1), logits(t2=100, t5=3, t6=1), HAND_FEATURES, HAND_EXAMPLES)
    assert answers == {"c1": "green"}  # start green (2) + end green (3) beats red..green (1 + 3)


def test_extraction_ignores_spans_longer_than_max_answer_length():
    start, end = logits(t4=10), logits(t6=10, t5=1)
    assert extract_answers(start, end, HAND_FEATURES, HAND_EXAMPLES, max_answer_length=3) == {"c1": "red green blue"}
    assert extract_answers(start, end, HAND_FEATURES, HAND_EXAMPLES, max_answer_length=2) == {"c1": "red green"}


def test_extraction_never_ends_a_span_before_it_starts():
    assert extract_answers(logits(t6=10), logits(t4=10), HAND_FEATURES, HAND_EXAMPLES) == {"c1": "blue"}  # 10 + 0, not 20


def test_extraction_finds_the_gold_answer_on_a_later_window(wordpiece):
    examples = batch(example("where does the story take place ?", 8))
    windows = qa_features(examples, wordpiece, for_eval=True, **WINDOWS)
    cls = windows["input_ids"][0].index(wordpiece.cls_token_id)
    holding = [row for row, start in enumerate(windows["start_positions"]) if start != cls]
    assert holding and holding[0] > 0  # the answer is only in later windows
    row = holding[-1]
    width = max(len(ids) for ids in windows["input_ids"])
    start, end = np.zeros((len(windows["input_ids"]), width)), np.zeros((len(windows["input_ids"]), width))
    start[row, windows["start_positions"][row]] = end[row, windows["end_positions"][row]] = 10.0
    assert extract_answers(start, end, windows, examples) == {"q8": "new york"}


def test_round_trip_of_200_real_questions_with_perfect_logits_scores_em_99(wordpiece, glue_data_dir):
    """Windows of real dev questions, logits one-hot on their gold tokens, extraction and the official
    metric: checks preprocessing, extraction and the metric together."""
    path = glue_data_dir / "squad" / "dev-v1.1.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    examples = load_qa_file(path, (38, 48)).shuffle(seed=0).select(range(200))
    windows = qa_features(examples[:], wordpiece, for_eval=True, max_length=128, doc_stride=48, max_query_length=32)
    assert len(windows["input_ids"]) > 300  # many questions span several windows
    width = max(len(ids) for ids in windows["input_ids"])
    start, end = np.zeros((len(windows["input_ids"]), width)), np.zeros((len(windows["input_ids"]), width))
    for row, (first, last) in enumerate(zip(windows["start_positions"], windows["end_positions"])):
        start[row, first], end[row, last] = 10.0, 10.0  # on CLS where the window lacks the answer: never a context span
    answers = extract_answers(start, end, windows, examples)
    scores = qa_metrics(answers, dict(zip(examples["id"], examples["answers"])))
    assert scores["exact_match"] >= 99.0 and scores["f1"] >= 99.0, scores


def test_readme_snippet_answers_from_a_saved_model(minilm_dir, tmp_path, capsys):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    AutoModelForQuestionAnswering.from_pretrained(minilm_dir).save_pretrained(tmp_path)  # an untrained QA head
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(tmp_path)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"## Question answering.*?```python\n(.*?)```", readme, re.DOTALL).group(1)
    snippet = re.sub(r"^folder = .*$", f"folder = {str(tmp_path)!r}", snippet, count=1, flags=re.MULTILINE)
    exec(snippet, {})  # noqa: S102 (the README's own code, run as a reader would)
    answers = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(answers) == ["q1"] and answers["q1"] in "Hamlet is a tragedy written by William Shakespeare around 1600."

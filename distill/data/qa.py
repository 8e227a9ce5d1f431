"""Extractive question answering data: SQuAD rows as datasets, and the windows a model reads.

Rows (every source): the Hub's rajpurkar/squad schema, id, title, context, question, answers
{text: [...], answer_start: [...]} (local files are read and checked by distill/data/qa_files.py).

Windows (features): the question first, cut to `max_query_length` tokens, then as much of the context
as fits in `max_length`; a longer context continues in further windows that overlap the previous one
by `doc_stride` tokens (the tokenizer's `return_overflowing_tokens` / `stride`). Training windows carry
`start_positions` / `end_positions`, the first answer's first and last token, or the CLS token where
the window does not hold the whole answer. Evaluation windows also keep `example_id` and
`offset_mapping` (character spans of the context, (-1, -1) on the question, special and padding tokens),
which distill/data/qa_answers.py turns back into answer text. Needs a fast tokenizer (offsets);
written here because transformers 5 has no question-answering pipeline and no library function for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import datasets

from distill import DistillError
from distill.data.qa_files import QA_COLUMNS, read_qa_file

NOT_CONTEXT = (-1, -1)  # the offsets of a token that is not in the context


def qa_row_features() -> datasets.Features:
    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "title": datasets.Value("string"),
            "context": datasets.Value("string"),
            "question": datasets.Value("string"),
            "answers": {
                "text": datasets.Sequence(datasets.Value("string")),
                "answer_start": datasets.Sequence(datasets.Value("int32")),
            },
        }
    )


def load_qa_file(path: Path, articles: tuple[int, int] | None = None) -> datasets.Dataset:
    """A SQuAD JSON or JSON Lines file's questions (`articles`: that range of a SQuAD file's articles)."""
    return datasets.Dataset.from_dict(read_qa_file(path, articles), features=qa_row_features())


def conform_hub_qa(dataset: datasets.Dataset, name: str) -> datasets.Dataset:
    """A Hub split (rajpurkar/squad) in the local schema."""
    missing = [column for column in QA_COLUMNS if column not in dataset.column_names]
    if missing:
        raise DistillError(f"{name}: no column {missing[0]!r} (columns: {', '.join(dataset.column_names)})")
    dataset = dataset.select_columns(list(QA_COLUMNS))
    return dataset if dataset.features == qa_row_features() else dataset.cast(qa_row_features())


def qa_features(
    examples: Mapping[str, list],
    tokenizer,
    *,
    max_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
    for_eval: bool = False,
    padding: bool = False,
) -> dict[str, list]:
    """The windows of a batch of examples (columns id, question, context and, for targets, answers):
    the tokenizer's inputs, `start_positions` / `end_positions` where the examples have answers, and
    with `for_eval` `example_id` and `offset_mapping`. `padding`: pad every window to max_length
    (fixed shapes, e.g. for a static ONNX graph); otherwise a collator pads each batch. The defaults are
    BERT's run_squad.py settings."""
    check_windows(tokenizer, max_length, doc_stride, max_query_length)
    # Leading whitespace (some SQuAD questions have a lot) would only take room from the context.
    questions = _cut_questions([question.lstrip() for question in examples["question"]], tokenizer, max_query_length)
    encoded = tokenizer(
        questions,
        list(examples["context"]),
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length" if padding else False,
    )
    example_of = encoded.pop("overflow_to_sample_mapping")
    all_offsets = encoded.pop("offset_mapping")
    features = {name: list(values) for name, values in encoded.items()}
    context_offsets = [
        [tuple(span) if sequence == 1 else NOT_CONTEXT for sequence, span in zip(encoded.sequence_ids(row), offsets)]
        for row, offsets in enumerate(all_offsets)
    ]
    if "answers" in examples:
        targets = [
            _answer_tokens(offsets, examples["answers"][example], _cls_index(features["input_ids"][row], tokenizer))
            for row, (offsets, example) in enumerate(zip(context_offsets, example_of))
        ]
        features["start_positions"] = [start for start, _ in targets]
        features["end_positions"] = [end for _, end in targets]
    if for_eval:
        features["example_id"] = [examples["id"][example] for example in example_of]
        features["offset_mapping"] = [[list(span) for span in offsets] for offsets in context_offsets]
    return features


def tokenize_qa(
    dataset: datasets.Dataset,
    tokenizer,
    *,
    for_eval: bool = False,
    max_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
    padding: bool = False,
) -> datasets.Dataset:
    """`qa_features` over a whole split: one row per window, the example columns dropped."""
    return dataset.map(
        qa_features,
        batched=True,
        batch_size=1000,
        remove_columns=dataset.column_names,
        keep_in_memory=True,
        fn_kwargs={
            "tokenizer": tokenizer,
            "max_length": max_length,
            "doc_stride": doc_stride,
            "max_query_length": max_query_length,
            "for_eval": for_eval,
            "padding": padding,
        },
        desc="Cutting questions and contexts into windows",
    )


def check_windows(tokenizer, max_length: int, doc_stride: int, max_query_length: int) -> None:
    """A fast tokenizer, and windows with room for more context than they share with the previous one."""
    if not getattr(tokenizer, "is_fast", False):
        raise DistillError(f"question answering needs a fast tokenizer (offset mappings); {type(tokenizer).__name__} is not one")
    for name, value, least in (
        ("max_length", max_length, 2),
        ("doc_stride", doc_stride, 0),
        ("max_query_length", max_query_length, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise DistillError(f"{name} must be an integer of at least {least}, got {value!r}")
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    room = max_length - max_query_length - specials
    if doc_stride >= room:
        raise DistillError(
            f"doc_stride {doc_stride} must be below the context's room in a window: max_length {max_length} "
            f"- max_query_length {max_query_length} - {specials} special tokens = {room}"
        )


def _cut_questions(questions: list[str], tokenizer, max_query_length: int) -> list[str]:
    """Each question cut after its max_query_length-th token (the text up to that token's end)."""
    offsets = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return [
        question[: spans[max_query_length - 1][1]] if len(spans) > max_query_length else question
        for question, spans in zip(questions, offsets)
    ]


def _cls_index(input_ids: list[int], tokenizer) -> int:
    cls = tokenizer.cls_token_id
    return input_ids.index(cls) if cls is not None and cls in input_ids else 0


def _answer_tokens(offsets: list[tuple[int, int]], answers: Mapping[str, list], cls_index: int) -> tuple[int, int]:
    """The first and last token of the first answer, or (cls_index, cls_index) when the window does not
    hold all of it: the first context token that ends after the answer's start, the last that starts
    before its end. So a token whose offsets include the space before it (byte-level BPE without trimmed
    offsets) counts as the word it holds, and Unigram's lone "▁", which shares its offsets with the next
    character, never ends a span before it starts (the transformers example scripts' loops do that)."""
    start_char = answers["answer_start"][0]
    end_char = start_char + len(answers["text"][0])
    context = [index for index, span in enumerate(offsets) if span != NOT_CONTEXT]
    if offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return cls_index, cls_index
    start = next(index for index in context if offsets[index][1] > start_char)
    end = next(index for index in reversed(context) if offsets[index][0] < end_char)
    return (start, end) if start <= end else (cls_index, cls_index)  # no token holds the answer's characters

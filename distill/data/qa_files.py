"""Reading extractive question-answering files into checked columns: SQuAD's nested JSON
(`data` -> `paragraphs` -> `qas`) or rows in the Hub's flat schema (JSON Lines, or a JSON array).

Pure Python on purpose, like table_files.py: `distill run` / `validate` check the files with it before
datasets loads (distill/data/files.py), and distill/data/splits.py builds its datasets.Dataset from the
same columns. A bad question fails in one line naming the file, the question id and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from distill import DistillError
from distill.data.textfiles import json_array, json_lines, read_text

QA_COLUMNS = ("id", "title", "context", "question", "answers")  # the Hub's rajpurkar/squad schema
QA_SUFFIXES = (".json", ".jsonl")

Columns = dict[str, list]
Record = tuple[str, dict]  # (where it is in the file, the question as a flat row)


def read_qa_file(path: Path, articles: tuple[int, int] | None = None) -> Columns:
    """The questions of a SQuAD JSON or JSON Lines file, checked, as QA_COLUMNS -> values (answers as
    {"text": [...], "answer_start": [...]}). `articles` (first, stop) keeps those articles of a SQuAD file."""
    if not path.is_file():
        raise DistillError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in QA_SUFFIXES:
        raise DistillError(
            f"{path}: unsupported file type {suffix or '(none)'} for question answering; "
            f"use SQuAD JSON (.json) or JSON Lines (.jsonl)"
        )
    text = read_text(path)
    start = text.lstrip()[:1]
    if suffix == ".json" and start == "{":
        records = _squad_records(path, text, articles)
    elif articles is not None:
        raise DistillError(f'{path}: expected SQuAD\'s nested JSON ({{"data": [...]}}), which holds articles to split')
    else:
        records = _flat_records(path, json_array(path, text) if start == "[" else json_lines(path, text))
    return _checked_columns(path, records)


def _squad_records(path: Path, text: str, articles: tuple[int, int] | None) -> Iterator[Record]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise DistillError(f"{path}:{error.lineno}: invalid JSON: {error.msg}") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DistillError(f"{path}: expected SQuAD's JSON, an object whose 'data' is a list of articles")
    data = document["data"]
    first, stop = articles if articles is not None else (0, len(data))
    if stop > len(data):
        raise DistillError(f"{path}: has {len(data)} articles; articles {first}-{stop - 1} are asked for")
    for a in range(first, stop):
        article = data[a]
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DistillError(f"{path}: data[{a}]: missing field 'paragraphs' (a list)")
        for p, paragraph in enumerate(paragraphs):
            questions = paragraph.get("qas") if isinstance(paragraph, dict) else None
            if not isinstance(questions, list):
                raise DistillError(f"{path}: data[{a}].paragraphs[{p}]: missing field 'qas' (a list)")
            for q, question in enumerate(questions):
                where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                if not isinstance(question, dict):
                    raise DistillError(f"{path}: {where}: expected a JSON object, found {type(question).__name__}")
                row = {key: question[key] for key in ("id", "question") if key in question}
                if "context" in paragraph:
                    row["context"] = paragraph["context"]
                row["title"] = article.get("title", "")
                if "answers" in question:
                    row["answers"] = _nested_answers(path, where, question)
                yield where, row


def _nested_answers(path: Path, where: str, question: dict) -> dict:
    """SQuAD's list of {text, answer_start} as the Hub's {text: [...], answer_start: [...]}."""
    answers = question["answers"]
    if not isinstance(answers, list) or not all(isinstance(answer, dict) for answer in answers):
        raise DistillError(f"{path}: {_who(where, question)}: field 'answers' must be a list of objects")
    for i, answer in enumerate(answers):
        if missing := [key for key in ("text", "answer_start") if key not in answer]:
            raise DistillError(f"{path}: {_who(where, question)}: missing field 'answers[{i}].{missing[0]}'")
    return {"text": [answer["text"] for answer in answers], "answer_start": [answer["answer_start"] for answer in answers]}


def _flat_records(path: Path, records: Iterator[tuple[int, object]]) -> Iterator[Record]:
    for number, record in records:
        if not isinstance(record, dict):
            raise DistillError(f"{path}:{number}: expected a JSON object, found {type(record).__name__}")
        yield f"line {number}", record


def _who(where: str, row: dict) -> str:
    """A question as errors name it: its id and where it is in the file (or only where, without an id)."""
    question_id = row.get("id")
    return f"question {question_id!r} ({where})" if isinstance(question_id, str) and question_id else where


def _checked_columns(path: Path, records: Iterator[Record]) -> Columns:
    columns: Columns = {name: [] for name in QA_COLUMNS}
    seen: dict[str, str] = {}
    for where, row in records:
        try:
            values = _checked_row(row)
        except (TypeError, ValueError) as error:
            raise DistillError(f"{path}: {_who(where, row)}: {error}") from None
        if values["id"] in seen:
            raise DistillError(
                f"{path}: question {values['id']!r} ({where}): the id is used twice (also at {seen[values['id']]})"
            )
        seen[values["id"]] = where
        for name in QA_COLUMNS:
            columns[name].append(values[name])
    if not columns["id"]:
        raise DistillError(f"{path}: no questions")
    return columns


def _checked_row(row: dict) -> dict:
    """One question's fields, or TypeError / ValueError naming the field that is wrong."""
    for name in ("id", "question", "context", "answers"):
        if name not in row:
            raise ValueError(f"missing field {name!r}")
    for name in ("id", "question", "context"):
        if not isinstance(row[name], str):
            raise TypeError(f"field {name!r} must be text, found {type(row[name]).__name__}")
        if not row[name].strip():
            raise ValueError(f"empty {name}")
    title = row.get("title") or ""
    if not isinstance(title, str):
        raise TypeError(f"field 'title' must be text, found {type(title).__name__}")
    answers, context = row["answers"], row["context"]
    if not isinstance(answers, dict) or not all(isinstance(answers.get(key), list) for key in ("text", "answer_start")):
        raise ValueError("field 'answers' must hold the lists 'text' and 'answer_start'")
    texts, starts = answers["text"], answers["answer_start"]
    if len(texts) != len(starts):
        raise ValueError(f"field 'answers' has {len(texts)} texts but {len(starts)} answer_start values")
    if not texts:
        raise ValueError("field 'answers' is empty (extractive QA as in SQuAD v1.1: every question has an answer)")
    for i, (answer, start) in enumerate(zip(texts, starts)):
        if not isinstance(answer, str) or not answer.strip():
            raise ValueError(f"field 'answers.text[{i}]' must be non-empty text")
        if isinstance(start, bool) or not isinstance(start, int):
            raise TypeError(f"field 'answers.answer_start[{i}]' must be an integer, found {start!r}")
        found = context[start : start + len(answer)] if start >= 0 else ""
        if found != answer:
            raise ValueError(
                f"field 'answers.answer_start[{i}]' = {start} does not point at its text {answer!r} "
                f"(the context there reads {found!r})"
            )
    return {
        "id": row["id"],
        "title": title,
        "context": context,
        "question": row["question"],
        "answers": {"text": list(texts), "answer_start": list(starts)},
    }

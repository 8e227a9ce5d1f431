"""Reading a sentence or pair task's table files (GLUE TSV, user CSV/TSV/JSON) into checked columns.

Pure Python on purpose (no datasets, torch or transformers): `distill run` checks the files with it
before those libraries load (distill/data/files.py), and distill/data/splits.py builds its datasets.Dataset
from the same columns. Bad rows fail with "path:LINE: reason" instead of surfacing as a shape error
mid-training.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

from distill import DistillError
from distill.data.tasks import TableColumns, TaskSpec
from distill.data.textfiles import json_array, json_lines, read_text

FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")

Row = tuple[int, list]  # (1-based line number, [text values..., raw label]) in TableColumns order
Columns = dict[str, list]  # the task's text_fields and "label" (class index or float) -> values


class RowError(ValueError):
    """A reason a row is invalid; the caller adds the file name and line number."""


def read_glue_table(task: TaskSpec, path: Path) -> Columns:
    """A task's local GLUE TSV, in the task's own layout (MRPC's column names, CoLA's missing header)."""
    columns = task.local_format
    rows = table_rows(path, tsv_lines(path), columns, headerless=columns.headerless_columns)
    return checked_columns(task, path, rows, columns)


def read_user_table(task: TaskSpec, path: Path) -> Columns:
    """A user's .csv/.tsv/.json/.jsonl file with named columns: a GLUE task's Hub names, else the custom task's."""
    if not path.is_file():
        raise DistillError(f"data file not found: {path}")
    columns = task.local_format if task.hub_dataset is None else TableColumns(task.text_fields, "label")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = table_rows(path, csv_lines(path), columns)
    elif suffix == ".tsv":
        rows = table_rows(path, tsv_lines(path), columns)
    elif suffix in (".json", ".jsonl"):
        rows = json_rows(path, columns)
    else:
        raise DistillError(f"{path}: unsupported file type {suffix or '(none)'}; use one of {', '.join(FILE_SUFFIXES)}")
    return checked_columns(task, path, rows, columns)


def tsv_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    # Hand-written instead of csv/pandas/datasets' csv loader: GLUE TSVs contain unmatched quotes
    # (a quote-aware reader silently merges rows), MRPC starts with a BOM, CoLA has no header,
    # and errors must cite the 1-based line number of the bad row.
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        line = line.removesuffix("\r")
        if line:
            yield number, line.split("\t")


def csv_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    first_line = 1  # a quoted field may span lines: report the line the row starts on
    try:
        for fields in reader:
            if fields:
                yield first_line, fields
            first_line = reader.line_num + 1
    except csv.Error as error:
        raise DistillError(f"{path}:{first_line}: {error}") from None


def table_rows(path: Path, lines: Iterable[tuple[int, list[str]]], columns: TableColumns,
               headerless: tuple[str, ...] | None = None) -> Iterator[Row]:
    """Pick the task's columns out of header-named (or, for CoLA, position-named) fields."""
    lines = iter(lines)
    if headerless is None:
        first = next(lines, None)
        if first is None:
            raise DistillError(f"{path}: empty file, expected a header row")
        header = [name.strip() for name in first[1]]
    else:
        header = list(headerless)
    wanted = [*columns.text_columns, columns.label_column]
    missing = [name for name in wanted if name not in header]
    if missing:
        raise DistillError(f"{path}:1: no column named {missing[0]!r} (columns: {', '.join(header)})")
    positions = [header.index(name) for name in wanted]
    for number, fields in lines:
        if len(fields) != len(header):
            raise DistillError(f"{path}:{number}: expected {len(header)} columns "
                               f"({', '.join(header)}), found {len(fields)}")
        yield number, [fields[position] for position in positions]


def json_rows(path: Path, columns: TableColumns) -> Iterator[Row]:
    """JSON Lines, or one JSON array of objects; both give each record's starting line."""
    text = read_text(path)
    records = json_array(path, text) if text.lstrip().startswith("[") else json_lines(path, text)
    wanted = [*columns.text_columns, columns.label_column]
    for number, record in records:
        if not isinstance(record, dict):
            raise DistillError(f"{path}:{number}: expected a JSON object, found {type(record).__name__}")
        missing = [name for name in wanted if name not in record]
        if missing:
            raise DistillError(f"{path}:{number}: missing field {missing[0]!r}")
        yield number, [record[name] for name in wanted]


def checked_columns(task: TaskSpec, path: Path, rows: Iterable[Row], columns: TableColumns) -> Columns:
    """Every row's texts non-empty strings and its label valid, else "path:LINE: reason"."""
    texts: list[list[str]] = [[] for _ in task.text_fields]
    labels: list = []
    parse_label = label_parser(task)
    number = 0
    try:
        for number, values in rows:
            for column, value, values_out in zip(columns.text_columns, values, texts):
                if not isinstance(value, str):
                    raise RowError(f"column {column!r} must be text, found {type(value).__name__}")
                if not value.strip():
                    raise RowError(f"empty text in column {column!r}")
                values_out.append(value)
            labels.append(parse_label(values[-1]))
    except RowError as error:
        raise DistillError(f"{path}:{number}: {error}") from None
    if not labels:
        raise DistillError(f"{path}: no data rows")
    return {**dict(zip(task.text_fields, texts)), "label": labels}


def label_parser(task: TaskSpec):
    """A function from a raw label (text or JSON value) to a class index or a float target."""
    if task.is_regression:
        return lambda raw: regression_label(raw, task.label_range)
    index_of = {name: index for index, name in enumerate(task.label_names)}
    allowed = f"{', '.join(task.label_names)} or an index 0..{len(index_of) - 1}"

    def parse(raw):
        if isinstance(raw, str):
            raw = raw.strip()
            if raw in index_of:
                return index_of[raw]
            try:
                value = int(raw)
            except ValueError:
                raise RowError(f"missing label (expected {allowed})" if not raw
                               else f"label {raw!r} is not one of {allowed}") from None
        elif isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif isinstance(raw, float) and raw.is_integer():
            value = int(raw)
        else:
            raise RowError(f"label {raw!r} is not one of {allowed}")
        if not 0 <= value < len(index_of):
            raise RowError(f"label {value} is out of range; expected {allowed}")
        return value

    return parse


def regression_label(raw, label_range: tuple[float, float] | None) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise RowError(f"label {raw!r} is not a number")
    if isinstance(raw, str) and not raw.strip():
        raise RowError("missing label (expected a number)")
    try:
        value = float(raw)
    except ValueError:
        raise RowError(f"label {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise RowError(f"label {raw!r} is not a finite number")
    if label_range is not None and not label_range[0] <= value <= label_range[1]:
        raise RowError(f"label {value:g} is outside {label_range[0]:g}..{label_range[1]:g}")
    return value

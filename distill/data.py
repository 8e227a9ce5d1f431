"""Task data as datasets.DatasetDict with one schema, whatever the source.

Sources: the Hub (nyu-mll/glue), a local GLUE folder <data_dir>/<task>/{train,dev}.tsv (this
machine has no Hub access), or user files (.csv/.tsv/.json/.jsonl) for custom tasks. Every split
comes out as the task's text_fields plus "label" (ClassLabel, or float32 for regression), so
training and evaluation never need to know where the data came from. Bad rows fail early with
"path:LINE: reason" instead of surfacing as a shape error mid-training.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import datasets

from distill.errors import DistillError
from distill.textfiles import json_array, json_lines, read_text
from distill.token_data import conform_hub_tokens, load_token_file, token_features, tokenize_words
from distill.tasks import TableColumns, TaskSpec

SPLITS = ("train", "validation", "test")  # test: only where it is labelled (wnut17)
DATA_DIR_ENV = "DISTILL_DATA_DIR"
DATA_DIR_HINT = f"--data-dir / {DATA_DIR_ENV} must name a folder holding <task>/train.tsv and <task>/dev.tsv"
FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")

Row = tuple[int, list]  # (1-based line number, [text values..., raw label]) in TableColumns order


class _RowError(ValueError):
    """A reason a row is invalid; the caller adds the file name and line number."""


def resolve_data_dir(explicit: str | Path | None) -> Path | None:
    """The local GLUE folder to read: explicit argument, else $DISTILL_DATA_DIR, else None (Hub)."""
    if explicit is not None and str(explicit) != "":
        path, source = Path(explicit).expanduser(), "the data_dir argument"
    elif os.environ.get(DATA_DIR_ENV):
        path, source = Path(os.environ[DATA_DIR_ENV]).expanduser(), DATA_DIR_ENV
    else:
        return None
    if not path.is_dir():
        raise DistillError(f"data directory {path} (from {source}) does not exist or is not a folder")
    return path


def task_features(task: TaskSpec) -> datasets.Features:
    """The schema every split of the task has: text columns plus "label"."""
    if task.is_token_classification:
        return token_features(task)
    label = datasets.Value("float32") if task.is_regression else datasets.ClassLabel(names=list(task.label_names))
    return datasets.Features({**{field: datasets.Value("string") for field in task.text_fields}, "label": label})


def load_task_splits(
    task: TaskSpec,
    data_dir: Path | None,
    *,
    train_file: str | Path | None = None,
    validation_file: str | Path | None = None,
    splits: Sequence[str] = ("train", "validation"),
) -> datasets.DatasetDict:
    """Load the requested splits; per split an explicit file wins, then data_dir, then the Hub.

    Explicit files have named columns: task.text_fields and "label" for GLUE tasks (the Hub's
    names), the custom task's own columns otherwise. `splits` lets evaluation-only callers skip a
    train file that does not exist locally (QNLI).
    """
    explicit_files = {"train": train_file, "validation": validation_file, "test": None}
    unknown = [split for split in splits if split not in explicit_files]
    if unknown:
        raise DistillError(f"unknown split {unknown[0]!r}; known: {', '.join(SPLITS)}")
    loaded: dict[str, datasets.Dataset] = {}
    hub_splits = None
    for split in splits:
        if explicit_files[split] is not None:
            path = Path(explicit_files[split])
            loaded[split] = load_token_file(task, path) if task.is_token_classification else _load_user_file(task, path)
        elif task.hub_dataset is None:
            suffixes = ".conll or .jsonl" if task.is_token_classification else ".csv, .tsv, .json or .jsonl"
            raise DistillError(f"custom task {task.name!r} needs a {split}_file ({suffixes})")
        elif split not in task.splits:
            raise DistillError(f"task {task.name} has no labelled {split} split (labelled: {', '.join(task.splits)})")
        elif data_dir is not None:
            path = Path(data_dir) / task.name / dict(task.local_files)[split]
            if not path.is_file():  # e.g. QNLI's train split, which the offline data lacks
                raise DistillError(f"{task.name}: the {split} split is missing: no file {path} ({DATA_DIR_HINT}, "
                                   f"or give the split as a file; with a network and no data folder it loads from the Hub)")
            loaded[split] = load_token_file(task, path) if task.is_token_classification else _load_glue_tsv(task, path)
        else:
            hub_splits = hub_splits or _load_hub(task)
            loaded[split] = _conform_hub_split(task, hub_splits, split)
    return datasets.DatasetDict(loaded)


def tokenize_splits(splits: datasets.DatasetDict, tokenizer, task: TaskSpec, max_length: int, *,
                    label_all_subtokens: bool = False) -> datasets.DatasetDict:
    """Tokenize with truncation and no padding: the collator (`make_collator`) pads each batch later,
    which keeps batches of short GLUE sentences short. Text columns are replaced by the
    tokenizer outputs plus "labels" (the name Transformers models expect). Token tasks: see
    distill/token_data.py; `label_all_subtokens` applies to the train split only."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise DistillError(f"max_length must be an integer of at least 2, got {max_length!r}")
    if task.is_token_classification:
        tokenized = {}
        for split, dataset in splits.items():
            tokenized[split], cut = tokenize_words(dataset, tokenizer, task, max_length, description=f"Tokenizing {task.name} {split}",
                                                   label_all_subtokens=label_all_subtokens and split == "train")
            if cut:
                print(f"note: {task.name} {split}: {cut} of {sum(map(len, dataset['label'])):,} words lie beyond "
                      f"max_length={max_length} and are neither trained on nor scored", file=sys.stderr)
        return datasets.DatasetDict(tokenized)

    def encode(batch):
        encoded = dict(tokenizer(*(batch[field] for field in task.text_fields),
                                 truncation=True, max_length=max_length))
        encoded["labels"] = batch["label"]
        return encoded

    tokenized = {}
    for split, dataset in splits.items():
        result = dataset.map(encode, batched=True, batch_size=1000, remove_columns=dataset.column_names,
                             keep_in_memory=True, desc=f"Tokenizing {task.name} {split}")
        label_type = datasets.Value("float32") if task.is_regression else datasets.Value("int64")
        if result.features["labels"] != label_type:
            result = result.cast_column("labels", label_type)
        tokenized[split] = result
    return datasets.DatasetDict(tokenized)


def make_collator(task: TaskSpec, tokenizer):
    """Pads each batch: labels too (with -100) for token classification."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    return DataCollatorForTokenClassification(tokenizer) if task.is_token_classification else DataCollatorWithPadding(tokenizer)


def take_subset(ds: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    """A deterministic random subset of `limit` rows (for quick runs); None or a larger limit => all."""
    if limit is None:
        return ds
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise DistillError(f"limit must be a positive integer or null, got {limit!r}")
    if limit >= len(ds):
        return ds
    return ds.shuffle(seed=seed, keep_in_memory=True).select(range(limit), keep_in_memory=True)


# --- sources -------------------------------------------------------------------------------


def _load_hub(task: TaskSpec) -> datasets.DatasetDict:
    try:
        return datasets.load_dataset(*task.hub_dataset, revision=task.hub_revision)
    except Exception as error:  # network, auth and cache failures have no common base class
        raise DistillError(f"could not load {_hub_name(task)} from the Hub "
                           f"({type(error).__name__}: {error}); offline, {DATA_DIR_HINT}") from error


def _hub_name(task: TaskSpec) -> str:
    return "/".join(part for part in task.hub_dataset if part)


def _conform_hub_split(task: TaskSpec, hub_splits: datasets.DatasetDict, split: str) -> datasets.Dataset:
    if split not in hub_splits:
        raise DistillError(f"{_hub_name(task)} has no {split!r} split (has: {', '.join(hub_splits)})")
    if task.is_token_classification:
        return conform_hub_tokens(task, hub_splits[split])
    dataset = hub_splits[split].select_columns([*task.text_fields, "label"])  # drops "idx"
    features = task_features(task)
    return dataset if dataset.features == features else dataset.cast(features)


def _load_glue_tsv(task: TaskSpec, path: Path) -> datasets.Dataset:
    columns = task.local_format
    rows = _table_rows(path, _tsv_lines(path), columns, headerless=columns.headerless_columns)
    return _rows_to_dataset(task, path, rows, columns)


def _load_user_file(task: TaskSpec, path: Path) -> datasets.Dataset:
    if not path.is_file():
        raise DistillError(f"data file not found: {path}")
    columns = task.local_format if task.hub_dataset is None else TableColumns(task.text_fields, "label")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _table_rows(path, _csv_lines(path), columns)
    elif suffix == ".tsv":
        rows = _table_rows(path, _tsv_lines(path), columns)
    elif suffix in (".json", ".jsonl"):
        rows = _json_rows(path, columns)
    else:
        raise DistillError(f"{path}: unsupported file type {suffix or '(none)'}; use one of {', '.join(FILE_SUFFIXES)}")
    return _rows_to_dataset(task, path, rows, columns)


# --- parsing -------------------------------------------------------------------------------


def _tsv_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    # Hand-written instead of csv/pandas/datasets' csv loader: GLUE TSVs contain unmatched quotes
    # (a quote-aware reader silently merges rows), MRPC starts with a BOM, CoLA has no header,
    # and errors must cite the 1-based line number of the bad row.
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        line = line.removesuffix("\r")
        if line:
            yield number, line.split("\t")


def _csv_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    first_line = 1  # a quoted field may span lines: report the line the row starts on
    try:
        for fields in reader:
            if fields:
                yield first_line, fields
            first_line = reader.line_num + 1
    except csv.Error as error:
        raise DistillError(f"{path}:{first_line}: {error}") from None


def _table_rows(path: Path, lines: Iterable[tuple[int, list[str]]], columns: TableColumns,
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


def _json_rows(path: Path, columns: TableColumns) -> Iterator[Row]:
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


def _rows_to_dataset(task: TaskSpec, path: Path, rows: Iterable[Row], columns: TableColumns) -> datasets.Dataset:
    texts: list[list[str]] = [[] for _ in task.text_fields]
    labels: list = []
    parse_label = _label_parser(task)
    number = 0
    try:
        for number, values in rows:
            for column, value, values_out in zip(columns.text_columns, values, texts):
                if not isinstance(value, str):
                    raise _RowError(f"column {column!r} must be text, found {type(value).__name__}")
                if not value.strip():
                    raise _RowError(f"empty text in column {column!r}")
                values_out.append(value)
            labels.append(parse_label(values[-1]))
    except _RowError as error:
        raise DistillError(f"{path}:{number}: {error}") from None
    if not labels:
        raise DistillError(f"{path}: no data rows")
    data = {**dict(zip(task.text_fields, texts)), "label": labels}
    return datasets.Dataset.from_dict(data, features=task_features(task))


def _label_parser(task: TaskSpec):
    """A function from a raw label (text or JSON value) to a class index or a float target."""
    if task.is_regression:
        return lambda raw: _regression_label(raw, task.label_range)
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
                raise _RowError(f"missing label (expected {allowed})" if not raw
                                else f"label {raw!r} is not one of {allowed}") from None
        elif isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif isinstance(raw, float) and raw.is_integer():
            value = int(raw)
        else:
            raise _RowError(f"label {raw!r} is not one of {allowed}")
        if not 0 <= value < len(index_of):
            raise _RowError(f"label {value} is out of range; expected {allowed}")
        return value

    return parse


def _regression_label(raw, label_range: tuple[float, float] | None) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise _RowError(f"label {raw!r} is not a number")
    if isinstance(raw, str) and not raw.strip():
        raise _RowError("missing label (expected a number)")
    try:
        value = float(raw)
    except ValueError:
        raise _RowError(f"label {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise _RowError(f"label {raw!r} is not a finite number")
    if label_range is not None and not label_range[0] <= value <= label_range[1]:
        raise _RowError(f"label {value:g} is outside {label_range[0]:g}..{label_range[1]:g}")
    return value

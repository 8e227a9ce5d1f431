"""Task data as datasets.DatasetDict with one schema, whatever the source.

Sources: the Hub (nyu-mll/glue), a local GLUE folder <data_dir>/<task>/{train,dev}.tsv (this
machine has no Hub access), or user files (.csv/.tsv/.json/.jsonl) for custom tasks. Every split
comes out as the task's text_fields plus "label" (ClassLabel, or float32 for regression; token and
question-answering tasks: see distill/data/token_data.py and distill/data/qa.py), so
training and evaluation never need to know where the data came from. Bad rows fail early with
"path:LINE: reason" (distill/data/table_files.py parses and checks the tables; distill/data/files.py
says which file each split comes from).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import datasets

from distill import DistillError
from distill.data.files import DATA_DIR_HINT, local_articles, resolve_data_dir, split_file  # noqa: F401 (resolve_data_dir: re-exported)
from distill.data.qa import conform_hub_qa, load_qa_file, qa_row_features
from distill.data.table_files import Columns, read_glue_table, read_user_table
from distill.data.tasks import TaskSpec
from distill.data.token_data import conform_hub_tokens, load_token_file, token_features, tokenize_words

SPLITS = ("train", "validation", "test")  # test: only where it is labelled (wnut17)


def task_features(task: TaskSpec) -> datasets.Features:
    """The schema every split of the task has: text columns plus "label"."""
    if task.is_token_classification:
        return token_features(task)
    if task.is_question_answering:
        return qa_row_features()
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
        source = split_file(task, split, data_dir, explicit_files[split])
        if source is None:
            hub_splits = hub_splits or _load_hub(task)
            loaded[split] = _conform_hub_split(task, hub_splits, split)
        elif task.is_question_answering:
            loaded[split] = load_qa_file(source.path, None if source.explicit else local_articles(task, split))
        elif task.is_token_classification:
            loaded[split] = load_token_file(task, source.path)
        else:
            read = read_user_table if source.explicit else read_glue_table
            loaded[split] = _table_dataset(task, read(task, source.path))
    return datasets.DatasetDict(loaded)


def tokenize_splits(splits: datasets.DatasetDict, tokenizer, task: TaskSpec, max_length: int, *,
                    label_all_subtokens: bool = False) -> datasets.DatasetDict:
    """Tokenize with truncation and no padding: the collator (`make_collator`) pads each batch later,
    which keeps batches of short GLUE sentences short. Text columns are replaced by the
    tokenizer outputs plus "labels" (the name Transformers models expect). Token tasks: see
    distill/data/token_data.py; `label_all_subtokens` applies to the train split only."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise DistillError(f"max_length must be an integer of at least 2, got {max_length!r}")
    if task.is_question_answering:  # windows and answer positions, not one row per example
        raise DistillError(f"task {task.name} is question answering: cut its splits with distill.data.qa.tokenize_qa")
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
    if task.is_question_answering:
        return conform_hub_qa(hub_splits[split], _hub_name(task))
    dataset = hub_splits[split].select_columns([*task.text_fields, "label"])  # drops "idx"
    features = task_features(task)
    return dataset if dataset.features == features else dataset.cast(features)


def _table_dataset(task: TaskSpec, columns: Columns) -> datasets.Dataset:
    return datasets.Dataset.from_dict(columns, features=task_features(task))

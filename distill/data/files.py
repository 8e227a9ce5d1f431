"""Where a task's splits come from (a user file, <data_dir>/<task>/<file>, or the Hub), and the early
check of those files. Light: stdlib and distill's own pure-Python modules only."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from distill import DistillError
from distill.data.qa_files import read_qa_file
from distill.data.table_files import read_glue_table, read_user_table
from distill.data.tasks import TaskSpec, task_of

DATA_DIR_ENV = "DISTILL_DATA_DIR"
DATA_DIR_HINT = f"--data-dir / {DATA_DIR_ENV} must name a folder holding <task>/train.tsv and <task>/dev.tsv"


@dataclass(frozen=True)
class SplitFile:
    path: Path
    explicit: bool  # a user's file (named columns), else the task's local file in the data folder


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


def split_file(task: TaskSpec, split: str, data_dir: Path | None, explicit_file: str | Path | None) -> SplitFile | None:
    """The file a split is read from (an explicit file wins, then data_dir), or None for the Hub."""
    if explicit_file is not None:
        return SplitFile(Path(explicit_file), explicit=True)
    if task.hub_dataset is None:
        suffixes = (".conll or .jsonl" if task.is_token_classification else ".json or .jsonl" if task.is_question_answering
                    else ".csv, .tsv, .json or .jsonl")
        raise DistillError(f"custom task {task.name!r} needs a {split}_file ({suffixes})")
    if split not in task.splits:
        raise DistillError(f"task {task.name} has no labelled {split} split (labelled: {', '.join(task.splits)})")
    if data_dir is None:
        return None
    path = Path(data_dir) / task.name / dict(task.local_files)[split]
    if not path.is_file():  # e.g. QNLI's train split, which the offline data lacks
        raise DistillError(f"{task.name}: the {split} split is missing: no file {path} ({DATA_DIR_HINT}, "
                           f"or give the split as a file; with a network and no data folder it loads from the Hub)")
    return SplitFile(path, explicit=False)


def check_task_files(recipe, data_dir: str | None) -> None:
    """Fail as the run's data loading would, on a recipe's missing or malformed train/validation files."""
    # Why early: the run reads its data only after ~10 s of importing transformers and datasets and
    # loading the tokenizer; a bad file should stop `distill run`/`validate` within a second.
    try:
        task = task_of(recipe)
    except DistillError:
        return  # a bad task setting: the full run reports it, in its usual order
    cfg = recipe.data
    folder = resolve_data_dir(cfg.dir or data_dir)
    for split, explicit in (("train", cfg.train_file), ("validation", cfg.validation_file)):
        source = split_file(task, split, folder, explicit)
        if source is None:
            continue  # the Hub: nothing to check locally
        if task.is_question_answering:
            read_qa_file(source.path, None if source.explicit else local_articles(task, split))
        elif task.is_token_classification:  # parsed at load time (distill/data/token_data.py, which needs datasets)
            if not source.path.is_file():
                raise DistillError(f"{task.name}: data file not found: {source.path}")  # load_token_file's message
        elif source.explicit:
            read_user_table(task, source.path)
        else:
            read_glue_table(task, source.path)


def local_articles(task: TaskSpec, split: str) -> tuple[int, int] | None:
    """The (first, stop) articles of a QA task's local file that make `split`; None: the whole file."""
    return next(((first, stop) for name, first, stop in task.answer_spans.local_articles if name == split), None)


def resolve_corpus_file(name: str, search_dirs: list[str | Path | None], field: str) -> Path:
    """An absolute path as is; a relative one in the first folder of `search_dirs` that has it."""
    path = Path(name).expanduser()
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [Path(d).expanduser() / path for d in search_dirs if d]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = ", ".join(str(c.parent) for c in candidates) or "nowhere"
    raise DistillError(f"{field}: text file '{name}' not found (looked in {where})")


def default_search_dirs(data_dir: str | None) -> list[str | None]:
    """Where relative corpus paths are looked up: working folder, data.dir, $DISTILL_DATA_DIR."""
    return [os.getcwd(), data_dir, os.environ.get("DISTILL_DATA_DIR")]

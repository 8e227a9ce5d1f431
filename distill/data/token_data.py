"""Token-classification data (NER): words with one tag each, read from CoNLL or JSON Lines files or
the Hub, and aligned to word pieces.

Every split comes out as the task's tokens field (a list of words) plus "label" (a list of tag
ids), the same schema whatever the source. Alignment: a word's first sub-token carries its tag;
the other sub-tokens and the special tokens get -100, which the loss and the metrics skip.
`label_all_subtokens` labels every sub-token of a training word instead (B-X continues as I-X);
evaluation always scores words by their first sub-token, so the metric stays word-level.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import datasets

from distill import DistillError
from distill.data.tasks import IGNORE_INDEX, TaskSpec
from distill.data.textfiles import json_array, json_lines, read_text

CONLL_SUFFIXES = (".conll", ".txt", ".tsv")
JSON_SUFFIXES = (".json", ".jsonl")

Sentence = tuple[int, list[str], list[tuple[object, int]]]  # (first line, words, [(tag, line)])


def token_features(task: TaskSpec) -> datasets.Features:
    return datasets.Features({
        task.text_fields[0]: datasets.Sequence(datasets.Value("string")),
        "label": datasets.Sequence(datasets.ClassLabel(names=list(task.label_names))),
    })


def load_token_file(task: TaskSpec, path: Path) -> datasets.Dataset:
    """A CoNLL file (`word<TAB>tag` lines, blank lines between sentences; for files with more columns
    the first is the word and the last the tag) or JSON records with the task's tokens/tags fields."""
    if not path.is_file():
        raise DistillError(f"{task.name}: data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in CONLL_SUFFIXES:
        sentences = conll_sentences(path)
    elif suffix in JSON_SUFFIXES:
        sentences = _json_sentences(path, task)
    else:
        raise DistillError(f"{path}: unsupported file type {suffix or '(none)'} for token classification; "
                           f"use one of {', '.join(CONLL_SUFFIXES + JSON_SUFFIXES)}")
    return _sentences_to_dataset(task, path, sentences)


def conll_sentences(path: Path) -> Iterator[Sentence]:
    words: list[str] = []
    tags: list[tuple[str, int]] = []
    first = 0
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():  # WNUT-17's separators are empty or a lone tab
            if words:
                yield first, words, tags
            words, tags = [], []
            continue
        if line.startswith("-DOCSTART-"):  # CoNLL-2003 document markers
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        fields = [f.strip() for f in fields]
        if len(fields) < 2 or not fields[-1]:
            raise DistillError(f"{path}:{number}: no tag on this line (expected word<TAB>tag)")
        if not words:
            first = number
        words.append(fields[0])
        tags.append((fields[-1], number))  # with its line, for errors
    if words:
        yield first, words, tags


def _json_sentences(path: Path, task: TaskSpec) -> Iterator[Sentence]:
    text = read_text(path)
    records = json_array(path, text) if text.lstrip().startswith("[") else json_lines(path, text)
    tokens_field, tags_field = task.text_fields[0], _tags_field(task)
    for number, record in records:
        if not isinstance(record, dict):
            raise DistillError(f"{path}:{number}: expected a JSON object, found {type(record).__name__}")
        for name in (tokens_field, tags_field):
            if not isinstance(record.get(name), list):
                raise DistillError(f"{path}:{number}: field {name!r} must be a list"
                                   + ("" if name in record else " (missing)"))
        words, tags = record[tokens_field], record[tags_field]
        if len(words) != len(tags):
            raise DistillError(f"{path}:{number}: {len(words)} tokens but {len(tags)} tags")
        if not all(isinstance(w, str) for w in words):
            raise DistillError(f"{path}:{number}: field {tokens_field!r} must hold strings")
        yield number, words, [(tag, number) for tag in tags]


def _tags_field(task: TaskSpec) -> str:
    return task.token_format.tags_field


def _sentences_to_dataset(task: TaskSpec, path: Path, sentences: Iterable[Sentence]) -> datasets.Dataset:
    index_of = {name: i for i, name in enumerate(task.label_names)}
    bio = task.token_format.scheme == "BIO"
    all_words, all_tags = [], []
    for _, words, tagged in sentences:
        ids, previous = [], "O"
        for word, (tag, number) in zip(words, tagged):
            if not word.strip():
                raise DistillError(f"{path}:{number}: empty token")
            tag_id = _tag_id(tag, index_of, task, path, number)
            name = task.label_names[tag_id]
            if bio and name.startswith("I-") and previous[2:] != name[2:]:
                raise DistillError(f"{path}:{number}: tag {name} follows {previous}, which is not BIO "
                                   f"(an I- tag continues an entity of its type; data.tag_scheme: none accepts any order)")
            ids.append(tag_id)
            previous = name
        all_words.append(list(words))
        all_tags.append(ids)
    if not all_words:
        raise DistillError(f"{path}: no sentences")
    return datasets.Dataset.from_dict({task.text_fields[0]: all_words, "label": all_tags}, features=token_features(task))


def _tag_id(tag, index_of: dict[str, int], task: TaskSpec, path: Path, number: int) -> int:
    if isinstance(tag, str) and tag in index_of:
        return index_of[tag]
    if isinstance(tag, int) and not isinstance(tag, bool) and 0 <= tag < len(index_of):
        return tag
    known = ", ".join(task.label_names)
    raise DistillError(f"{path}:{number}: unknown tag {tag!r} (the task's tags: {known})")


def conform_hub_tokens(task: TaskSpec, dataset: datasets.Dataset) -> datasets.Dataset:
    """A Hub split (e.g. wnut_17's tokens + ner_tags) in the local schema, with the same tag ids."""
    tokens_field, tags_field = task.text_fields[0], _tags_field(task)
    missing = [name for name in (tokens_field, tags_field) if name not in dataset.column_names]
    if missing:
        raise DistillError(f"{task.hub_dataset[0]}: no column {missing[0]!r} (columns: {', '.join(dataset.column_names)})")
    feature = dataset.features[tags_field]
    names = getattr(getattr(feature, "feature", None), "names", None)
    if names is not None and tuple(names) != tuple(task.label_names):
        raise DistillError(f"{task.hub_dataset[0]}: its tags {names} are not the task's {list(task.label_names)}")
    dataset = dataset.select_columns([tokens_field, tags_field])
    if tags_field != "label":
        dataset = dataset.rename_column(tags_field, "label")
    return dataset.cast(token_features(task))


def tokenize_words(dataset: datasets.Dataset, tokenizer, task: TaskSpec, max_length: int, *,
                   label_all_subtokens: bool = False, description: str = "") -> tuple[datasets.Dataset, int]:
    """Word pieces with aligned labels (see the module docstring), and how many words were cut off by
    max_length (those are neither trained on nor scored)."""
    if not getattr(tokenizer, "is_fast", False):
        raise DistillError(f"task {task.name}: token classification needs a fast tokenizer (word_ids); "
                           f"{type(tokenizer).__name__} is not one")
    continuation = _continuation_ids(task) if label_all_subtokens else None
    field = task.text_fields[0]

    def encode(batch):
        encoded = tokenizer(batch[field], is_split_into_words=True, truncation=True, max_length=max_length)
        labels, cut = [], []
        for row, word_tags in enumerate(batch["label"]):
            word_ids = encoded.word_ids(row)
            labels.append(align_labels(word_ids, word_tags, continuation))
            cut.append(len(word_tags) - len({w for w in word_ids if w is not None}))
        return {**encoded, "labels": labels, "cut_words": cut}

    result = dataset.map(encode, batched=True, batch_size=1000, remove_columns=dataset.column_names,
                         keep_in_memory=True, desc=description or f"Tokenizing {task.name}")
    cut_words = sum(result["cut_words"])
    return result.remove_columns("cut_words"), cut_words


def align_labels(word_ids: list[int | None], word_tags: list[int], continuation: list[int] | None = None) -> list[int]:
    """One label per word piece: the word's tag on its first piece; on later pieces IGNORE_INDEX, or
    with `continuation` (tag id -> tag id of a later piece) that tag; IGNORE_INDEX on special tokens."""
    labels, previous = [], None
    for word in word_ids:
        if word is None:
            labels.append(IGNORE_INDEX)
        elif word != previous:
            labels.append(word_tags[word])
        else:
            labels.append(IGNORE_INDEX if continuation is None else continuation[word_tags[word]])
        previous = word
    return labels


def _continuation_ids(task: TaskSpec) -> list[int]:
    """B-X -> I-X (a later piece of a word that begins an entity is inside it); other tags unchanged."""
    index_of = {name: i for i, name in enumerate(task.label_names)}
    return [index_of.get("I-" + name[2:], i) if name.startswith("B-") else i for i, name in enumerate(task.label_names)]

"""Raw text -> fixed-length token blocks for masked-language modelling, with a held-out split.

Lines of every source are tokenized without special tokens, concatenated in order (across
documents, as BERT's pre-training data and transformers' run_mlm example do), cut into blocks of
`block_size - 2` tokens (the incomplete tail is dropped) and wrapped with the tokenizer's own
special tokens ([CLS] ... [SEP] for BERT).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import chain

import datasets

from distill import DistillError
from distill.data.files import resolve_corpus_file

# WikiText's section markup: ` = Title = `, ` = = Section = = `, ...
HEADING = re.compile(r"^\s*(=\s)+.*(\s=)+\s*$")


@dataclass
class Corpus:
    train: datasets.Dataset  # column input_ids: blocks of exactly block_size tokens
    holdout: datasets.Dataset
    stats: dict


def corpus_lines(cfg, search_dirs: list, field: str) -> list[str]:
    """Every non-empty line of the configured sources, in order (headings dropped if asked)."""
    parts: list[datasets.Dataset] = []
    if cfg.files:
        paths = [str(resolve_corpus_file(f, search_dirs, f"{field}.files[{i}]")) for i, f in enumerate(cfg.files)]
        # The `text` builder splits on any line ending (the WikiText file ends lines with CRLF).
        parts.append(datasets.load_dataset("text", data_files=paths, split="train"))
    if cfg.hub:
        try:
            hub = datasets.load_dataset(cfg.hub, cfg.hub_config, split=cfg.hub_split)
        except Exception as err:  # offline, unknown name or config, missing split: all one message
            raise DistillError(f"{field}.hub: cannot load dataset '{cfg.hub}' ({str(err).splitlines()[0]})") from None
        if cfg.text_field not in hub.column_names:
            raise DistillError(f"{field}.text_field: '{cfg.text_field}' is not a column of '{cfg.hub}' "
                               f"(columns: {', '.join(hub.column_names)})")
        parts.append(hub.select_columns([cfg.text_field]).rename_column(cfg.text_field, "text"))
    lines = [line for part in parts for line in part["text"] if line and line.strip()]
    if cfg.drop_headings:
        lines = [line for line in lines if not HEADING.match(line)]
    return lines


def special_token_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after one sequence ([CLS] and [SEP] for BERT, <s> and
    </s> for RoBERTa), read off its own encoding of a one-token text: transformers 5 dropped
    `build_inputs_with_special_tokens`, and this works the same on 4.x."""
    probe = tokenizer.unk_token or tokenizer.all_special_tokens[0]
    body = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(body) + 1):
        if full[start : start + len(body)] == body:
            return full[:start], full[start + len(body) :]
    raise DistillError(f"{type(tokenizer).__name__}: cannot tell where its special tokens go around a sequence")


def pack_blocks(token_ids: list[list[int]], block_size: int, tokenizer) -> list[list[int]]:
    """Concatenate the token lists and cut them into blocks of `block_size` with special tokens."""
    before, after = special_token_frame(tokenizer)
    inner = block_size - len(before) - len(after)
    if inner < 1:
        raise DistillError(f"corpus.block_size: {block_size} leaves no room for text after the special tokens")
    stream = list(chain.from_iterable(token_ids))
    return [before + stream[i : i + inner] + after for i in range(0, len(stream) - inner + 1, inner)]


def load_corpus(cfg, tokenizer, *, seed: int, field: str, search_dirs: list) -> Corpus:
    """Read, tokenize and pack the corpus; hold out `cfg.holdout_blocks` random blocks."""
    lines = corpus_lines(cfg, search_dirs, field)
    if not lines:
        raise DistillError(f"{field}: the corpus has no text")
    # Whole paragraphs, longer than the model's limit: they are cut into blocks below.
    ids = tokenizer(lines, add_special_tokens=False, verbose=False)["input_ids"]
    blocks = pack_blocks(ids, cfg.block_size, tokenizer)
    if len(blocks) <= cfg.holdout_blocks:
        raise DistillError(f"{field}.holdout_blocks: {cfg.holdout_blocks} leaves no training blocks "
                           f"(the corpus makes {len(blocks)} blocks of {cfg.block_size} tokens)")
    split = datasets.Dataset.from_dict({"input_ids": blocks}).train_test_split(test_size=cfg.holdout_blocks, seed=seed)
    train = split["train"]
    if cfg.max_train_blocks is not None and cfg.max_train_blocks < len(train):
        train = train.shuffle(seed=seed).select(range(cfg.max_train_blocks))
    stats = {"lines": len(lines), "tokens": sum(map(len, ids)), "block_size": cfg.block_size,
             "train_blocks": len(train), "holdout_blocks": len(split["test"])}
    return Corpus(train, split["test"], stats)

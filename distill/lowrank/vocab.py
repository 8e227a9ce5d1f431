"""Vocabulary trimming (as TextPruner does): keep only the tokens a task's data uses.

    counts = token_counts(dataset["input_ids"], len(tokenizer))
    keep = tokens_to_keep(tokenizer, counts)                  # used + special + character tokens
    model, tokenizer = trim_vocabulary(model, tokenizer, keep)

For WordPiece (BERT, DistilBERT, ELECTRA, MiniLM), BPE (RoBERTa, GPT-2 style byte-level) and
Unigram (XLM-R, DeBERTa-v3) fast tokenizers. The tokenizer is rebuilt from its own `tokenizers`
JSON with the kept tokens only, renumbered in their original order. Text made of kept tokens
tokenizes to the same tokens as before (what each kind keeps for that: vocab_kinds.py), so the
model's outputs on it are unchanged. Other words still split into kept pieces: with `characters`,
the characters the data uses (for byte-level BPE, all 256 bytes) stay available, so unseen words
are spelled out instead of becoming the unknown-word token; characters never seen become it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from distill import DistillError
from distill.lowrank import vocab_kinds
from distill.lowrank.svd import FactorizedEmbedding


def token_counts(id_lists: Iterable[Sequence[int]], vocab_size: int) -> np.ndarray:
    """How often each token id occurs in the given tokenized examples."""
    ids = np.fromiter((i for example in id_lists for i in example), dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise DistillError(f"token ids must be in 0..{vocab_size - 1}")
    return np.bincount(ids, minlength=vocab_size)


def _tokenizer_state(tokenizer) -> dict:
    if not getattr(tokenizer, "is_fast", False):
        raise DistillError(f"trim_vocab needs a fast (tokenizers) tokenizer; {type(tokenizer).__name__} is not one")
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab_kinds.check_kind(state)
    return state


def tokens_to_keep(tokenizer, counts: np.ndarray, *, max_tokens: int | None = None, min_count: int = 1, characters: bool = True) -> list[int]:
    """Sorted ids of the tokens to keep: every special token and the unknown-word token; the
    tokens seen at least `min_count` times (only the `max_tokens` most frequent, if given); with
    `characters`, the pieces that spell out unseen words (vocab_kinds.character_tokens); for BPE,
    the parts every kept token is merged from."""
    state = _tokenizer_state(tokenizer)
    model = state["model"]
    vocab = tokenizer.get_vocab()
    id_to_token = {i: t for t, i in vocab.items()}
    special = set(tokenizer.all_special_ids) | {token["id"] for token in state["added_tokens"]}
    seen = [i for i in np.flatnonzero(counts >= 1).tolist() if i not in special]
    used = [i for i in seen if counts[i] >= min_count]
    if max_tokens is not None:
        used = sorted(used, key=lambda i: (-counts[i], i))[:max_tokens]
    keep = special | set(used) | {vocab[t] for t in vocab_kinds.required_tokens(model)}
    if characters:
        keep |= {vocab[t] for t in vocab_kinds.character_tokens(state, (id_to_token[i] for i in seen), vocab)}
    keep |= {vocab[t] for t in vocab_kinds.merge_parts(model, {id_to_token[i] for i in keep})}
    return sorted(keep)


def trim_tokenizer(tokenizer, keep_ids: Sequence[int]):
    """The same tokenizer (class, normalizer, pre-tokenizer, templates, settings) with only the
    kept tokens, renumbered 0..len(keep_ids)-1 in their original order."""
    state = _tokenizer_state(tokenizer)
    id_to_token = {i: t for t, i in tokenizer.get_vocab().items()}
    missing = [i for i in keep_ids if i not in id_to_token]
    if missing:
        raise DistillError(f"token ids {missing[:5]} are not in the tokenizer's vocabulary")
    new_id = {old: new for new, old in enumerate(sorted(keep_ids))}
    vocab_kinds.trim_model(state["model"], new_id, id_to_token)
    for token in state["added_tokens"]:
        token["id"] = _renumber(new_id, token["id"], token["content"])
    _renumber_templates(state.get("post_processor"), new_id)
    if state.get("padding"):
        state["padding"]["pad_id"] = _renumber(new_id, state["padding"]["pad_id"], state["padding"]["pad_token"])
    backend = Tokenizer.from_str(json.dumps(state))
    settings = {k: v for k, v in tokenizer.init_kwargs.items()
                if k not in {"vocab_file", "tokenizer_file", "added_tokens_decoder", "name_or_path"}}
    return type(tokenizer)(tokenizer_object=backend, **settings)


def _renumber(new_id: dict[int, int], old: int, token: str) -> int:
    if old not in new_id:
        raise DistillError(f"the special token {token} must be kept")
    return new_id[old]


def _renumber_templates(processor: dict | None, new_id: dict[int, int]) -> None:
    """Special-token ids inside post-processors (TemplateProcessing, BertProcessing, Sequence)."""
    if not processor:
        return
    for inner in processor.get("processors") or []:
        _renumber_templates(inner, new_id)
    for name, special in (processor.get("special_tokens") or {}).items():
        special["ids"] = [_renumber(new_id, i, name) for i in special["ids"]]
    for key in ("sep", "cls"):
        if isinstance(processor.get(key), list):
            token, old = processor[key]
            processor[key] = [token, _renumber(new_id, old, token)]


def trim_embeddings(model: nn.Module, keep_ids: Sequence[int]) -> nn.Module:
    """Keep only the rows of the kept tokens in the word embeddings (dense or factorized), in
    place; config.vocab_size and the special-token ids in the config follow."""
    if model.get_output_embeddings() is not None:
        raise DistillError(f"trim_vocab: {type(model).__name__} has output embeddings (a language-model head); only classifiers are supported")
    index = torch.tensor(sorted(keep_ids), dtype=torch.long)
    new_id = {old: new for new, old in enumerate(index.tolist())}
    embedding = model.get_input_embeddings()
    if embedding.num_embeddings <= int(index[-1]):
        raise DistillError(f"token id {int(index[-1])} is outside the model's {embedding.num_embeddings} embeddings")
    padding = new_id.get(embedding.padding_idx) if embedding.padding_idx is not None else None
    weight = embedding.weight.detach()[index].clone()
    if isinstance(embedding, FactorizedEmbedding):
        trimmed = FactorizedEmbedding(len(index), embedding.embedding_dim, embedding.rank, padding)
        trimmed.project = embedding.project
    elif isinstance(embedding, nn.Embedding):
        trimmed = nn.Embedding(len(index), embedding.embedding_dim, padding_idx=padding)
    else:
        raise DistillError(f"trim_vocab: cannot trim input embeddings of type {type(embedding).__name__}")
    trimmed.weight = nn.Parameter(weight, requires_grad=embedding.weight.requires_grad)
    model.set_input_embeddings(trimmed)
    config = model.config
    config.vocab_size = len(index)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id"):
        old = getattr(config, key, None)
        if isinstance(old, int):
            setattr(config, key, new_id.get(old))
    return model


def trim_vocabulary(model: nn.Module, tokenizer, keep_ids: Sequence[int]):
    """(model, tokenizer) with only the kept tokens; the model is changed in place."""
    new_tokenizer = trim_tokenizer(tokenizer, keep_ids)
    return trim_embeddings(model, keep_ids), new_tokenizer


# ---------------------------------------------------------------- models fed another vocabulary's ids


def token_id_map(source_tokenizer, target_tokenizer) -> torch.Tensor:
    """For each id of `source_tokenizer`, the id of the same token in `target_tokenizer` (its
    unknown-word id where it has no such token)."""
    source, target = source_tokenizer.get_vocab(), target_tokenizer.get_vocab()
    unk = target_tokenizer.unk_token_id
    id_map = torch.full((max(source.values()) + 1,), unk, dtype=torch.long)
    for token, i in source.items():
        id_map[i] = target.get(token, unk)
    return id_map


def same_vocabulary(a, b) -> bool:
    return a.get_vocab() == b.get_vocab()


class InputIdMap(nn.Module):
    """A classifier run on token ids of another vocabulary: they are translated first.

    The pipeline tokenizes the task data once, with the recipe model's tokenizer; a model whose
    vocabulary was trimmed takes other ids for the same tokens. Wrapping it lets it train and be
    evaluated on that data (exactly, for the tokens its vocabulary kept)."""

    def __init__(self, model: nn.Module, id_map: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("id_map", id_map.to(next(model.parameters()).device), persistent=False)

    @property
    def config(self):
        return self.model.config

    def forward(self, input_ids: torch.Tensor, **kwargs):
        return self.model(input_ids=self.id_map[input_ids], **kwargs)


def fed_ids_of(model: nn.Module, model_tokenizer, data_tokenizer) -> nn.Module:
    """`model` itself if both tokenizers share a vocabulary, else wrapped to take `data_tokenizer`'s ids."""
    if same_vocabulary(model_tokenizer, data_tokenizer):
        return model
    return InputIdMap(model, token_id_map(data_tokenizer, model_tokenizer))

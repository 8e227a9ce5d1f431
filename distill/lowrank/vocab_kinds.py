"""What vocabulary trimming (vocab.py) does per `tokenizers` model type, on the tokenizer's JSON state.

- WordPiece takes the longest vocabulary piece at each point of a word, so any kept piece still
  forms. Characters: `c` and `##c` for every character of a seen token.
- BPE forms a token only by merging its two parts, so a kept token needs its parts too, down to
  single symbols. The kept merges keep their order (their priority), so every merge the task's text
  used still wins where it won before. Characters: every single-symbol base token (for byte-level
  BPE, the 256-byte alphabet: any text can be spelled) and the `<0xNN>` pieces of byte fallback.
  Without them a byte-level BPE has no unk to fall back on: tokenizers drops the bytes it lacks.
- Unigram takes the best-scoring split into vocabulary pieces; with the pieces of that split kept
  (scores unchanged) it is still the best. Characters: `c` and `▁c` for every character of a seen
  piece, `▁` itself, and the `<0xNN>` pieces of byte fallback; unknown characters become the unk piece.
  (An unknown character costs the lowest piece score minus 10, which trimming can raise; that
  changes no split while each character of a kept piece is a piece too, as SentencePiece ensures.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from distill import DistillError

KINDS = ("WordPiece", "BPE", "Unigram")
_BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")


def check_kind(state: dict) -> None:
    kind = state["model"].get("type")
    if kind not in KINDS:
        raise DistillError(
            f"trim_vocab supports WordPiece (BERT, DistilBERT, ELECTRA, MiniLM), BPE (RoBERTa, GPT-2) and "
            f"Unigram (XLM-R, DeBERTa-v3, ALBERT) tokenizers; this one is {kind}"
        )


def required_tokens(model: dict) -> set[str]:
    """The model's unknown-word token, which it cannot work without."""
    if model["type"] == "Unigram":
        return set() if model.get("unk_id") is None else {model["vocab"][model["unk_id"]][0]}
    return {model["unk_token"]} if model.get("unk_token") in model["vocab"] else set()


def character_tokens(state: dict, seen: Iterable[str], vocab: dict[str, int]) -> set[str]:
    """The tokens that let words unseen in the task's data be spelled out (see the module docstring)."""
    model = state["model"]
    if model["type"] == "WordPiece":
        prefix = model["continuing_subword_prefix"]
        alphabet = {c for token in seen for c in token.removeprefix(prefix)}
        return {piece for c in alphabet for piece in (c, prefix + c) if piece in vocab}
    byte_pieces = {t for t in _model_tokens(model) if _BYTE_PIECE.fullmatch(t)} if model.get("byte_fallback") else set()
    if model["type"] == "BPE":
        merged = {_merged(model, a, b) for a, b in _pairs(model)}
        prefix, suffix = model.get("continuing_subword_prefix") or "", model.get("end_of_word_suffix") or ""
        base = {t for t in model["vocab"] if len(t.removeprefix(prefix).removesuffix(suffix)) == 1 and t not in merged}
        return base | byte_pieces
    space = _metaspace(state)
    alphabet = {c for piece in seen if piece not in byte_pieces for c in piece.replace(space, "")}
    return {piece for piece in (space, *alphabet, *(space + c for c in alphabet)) if piece in vocab} | byte_pieces


def merge_parts(model: dict, tokens: set[str]) -> set[str]:
    """BPE: the two parts of every merge that forms one of `tokens`, recursively (nothing for the others)."""
    if model["type"] != "BPE":
        return set()
    parts_of: dict[str, list[tuple[str, str]]] = {}
    for a, b in _pairs(model):  # a token may be formed by more than one merge: keep what each needs
        parts_of.setdefault(_merged(model, a, b), []).append((a, b))
    needed, todo = set(), list(tokens)
    while todo:
        for part in (p for pair in parts_of.get(todo.pop(), ()) for p in pair):
            if part not in needed and part not in tokens:
                needed.add(part)
                todo.append(part)
    return needed


def trim_model(model: dict, new_id: dict[int, int], id_to_token: dict[int, str]) -> None:
    """The model's vocabulary (and merges) with only the kept tokens, renumbered by `new_id`, in place."""
    if model["type"] == "Unigram":
        unk = model.get("unk_id")
        if unk is not None:
            _require(new_id, unk, model["vocab"][unk][0])
            model["unk_id"] = new_id[unk]
        # Unigram ids are positions; added tokens outside the list come after it and stay after it.
        model["vocab"] = [entry for i, entry in enumerate(model["vocab"]) if i in new_id]
        return
    if model["type"] == "WordPiece":
        model["vocab"] = {id_to_token[old]: new for old, new in new_id.items()}
        if model["unk_token"] not in model["vocab"]:
            raise DistillError(f"the unknown-word token {model['unk_token']} must be kept")
        return
    if model.get("unk_token") in model["vocab"]:  # byte-level BPE has none
        _require(new_id, model["vocab"][model["unk_token"]], model["unk_token"])
    model["vocab"] = {token: new_id[old] for token, old in model["vocab"].items() if old in new_id}
    kept = model["vocab"]
    model["merges"] = [
        merge for merge, (a, b) in zip(model["merges"], _pairs(model)) if a in kept and b in kept and _merged(model, a, b) in kept
    ]


def _model_tokens(model: dict) -> list[str]:
    return [piece for piece, _ in model["vocab"]] if model["type"] == "Unigram" else list(model["vocab"])


def _pairs(model: dict) -> list[tuple[str, str]]:
    # tokenizers < 0.20 writes merges as "a b" strings, later versions as [a, b] lists.
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]


def _merged(model: dict, a: str, b: str) -> str:
    # As tokenizers forms it: b's continuing-subword prefix (if the model has one) is dropped.
    return a + b[len(model.get("continuing_subword_prefix") or "") :]


def _metaspace(state: dict) -> str:
    """The character that stands for a space in Unigram pieces (SentencePiece's "▁" unless set otherwise)."""
    stack = [state.get("pre_tokenizer"), state.get("normalizer")]
    while stack:
        config = stack.pop()
        if isinstance(config, list):
            stack.extend(config)
        elif isinstance(config, dict):
            if config.get("type") == "Metaspace":
                return config.get("replacement", "▁")
            stack.extend(v for v in config.values() if isinstance(v, (list, dict)))
    return "▁"


def _require(new_id: dict[int, int], old: int, token: str) -> None:
    if old not in new_id:
        raise DistillError(f"the unknown-word token {token} must be kept")

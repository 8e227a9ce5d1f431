"""Vocabulary trimming of byte-level BPE (RoBERTa) and SentencePiece Unigram (XLM-R) tokenizers:
the task's text splits into the same tokens as before (ids renumbered), templates and pairs still
work, unseen words are spelled out of kept pieces (bytes, characters) or become unk, and the
trimmed tokenizer saves and reloads as the same class. WordPiece is covered in test_lowrank.py."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import bpe_tokenizer, sample_lines, unigram_tokenizer, word_collator
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from distill import DistillError
from distill.lowrank import token_counts, tokens_to_keep, trim_vocabulary
from distill.lowrank.vocab import trim_tokenizer
from distill.lowrank.vocab_kinds import trim_model

BUILDERS = {"bpe": bpe_tokenizer, "unigram": unigram_tokenizer}
UNSEEN = "Ωμέγα 漢字 fjord"  # Greek and CJK never occur in the SST-2 lines


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return sample_lines()


@pytest.fixture(params=sorted(BUILDERS))
def tokenizer(request, tmp_path):
    return BUILDERS[request.param](tmp_path)


def _trim(tokenizer, texts, **options):
    """(trimmed tokenizer, kept ids, old id -> new id)."""
    keep = tokens_to_keep(tokenizer, token_counts(tokenizer(texts)["input_ids"], len(tokenizer)), **options)
    return trim_tokenizer(tokenizer, keep), keep, {old: new for new, old in enumerate(keep)}


def _model_state(tokenizer) -> dict:
    return json.loads(tokenizer.backend_tokenizer.to_str())["model"]


def test_trimmed_tokenizer_splits_the_task_text_into_the_same_tokens(tokenizer, lines):
    task = lines[:80]
    trimmed, keep, new_id = _trim(tokenizer, task)
    assert type(trimmed) is type(tokenizer) and len(trimmed) == len(keep) < len(tokenizer)
    for text, pair in zip(task, task[1:] + task[:1]):
        for args in ((text,), (text, pair)):
            before, after = tokenizer(*args)["input_ids"], trimmed(*args)["input_ids"]
            assert after == [new_id[i] for i in before]
            assert trimmed.convert_ids_to_tokens(after) == tokenizer.convert_ids_to_tokens(before)
    # The template still frames the text: <s> A </s> and <s> A </s> </s> B </s>.
    tokens = trimmed.convert_ids_to_tokens(trimmed(task[0], task[1])["input_ids"])
    assert tokens[0] == "<s>" and tokens[-1] == "</s>" and tokens.count("</s>") == 3
    assert {k: str(v) for k, v in trimmed.special_tokens_map.items()} == {
        k: str(v) for k, v in tokenizer.special_tokens_map.items()
    }
    assert [repr(t) for t in trimmed.added_tokens_decoder.values()] == [repr(t) for t in tokenizer.added_tokens_decoder.values()]


def test_trimmed_tokenizer_saves_and_reloads_as_the_same_class(tokenizer, lines, tmp_path):
    trimmed, _, _ = _trim(tokenizer, lines[:80])
    trimmed.save_pretrained(tmp_path / "trimmed")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "trimmed")
    assert type(reloaded) is type(tokenizer) and reloaded.get_vocab() == trimmed.get_vocab()
    assert reloaded.all_special_tokens == trimmed.all_special_tokens
    texts = [*lines[:80], UNSEEN]
    assert reloaded(texts, texts[::-1])["input_ids"] == trimmed(texts, texts[::-1])["input_ids"]


def test_bpe_keeps_the_parts_every_kept_token_is_merged_from(tmp_path, lines):
    tokenizer = bpe_tokenizer(tmp_path)
    trimmed, _, _ = _trim(tokenizer, lines[:80], max_tokens=30, characters=False)
    original, kept = _model_state(tokenizer), _model_state(trimmed)
    formed = {a + b: (a, b) for a, b in original["merges"]}
    assert all(formed[t][0] in kept["vocab"] and formed[t][1] in kept["vocab"] for t in kept["vocab"] if t in formed)
    assert [m for m in original["merges"] if "".join(m) in kept["vocab"]] == kept["merges"]  # the same merges, in order
    # Without characters the single bytes the task never used go.
    assert len({t for t in kept["vocab"] if len(t) == 1}) < 256 == len({t for t in original["vocab"] if len(t) == 1})


def test_bpe_spells_unseen_words_in_the_byte_alphabet(tmp_path, lines):
    tokenizer = bpe_tokenizer(tmp_path)
    trimmed, _, _ = _trim(tokenizer, lines[:80])
    single = {t for t in _model_state(tokenizer)["vocab"] if len(t) == 1}
    assert len(single) == 256 and single <= set(trimmed.get_vocab())
    encoded = trimmed(UNSEEN)["input_ids"]
    assert trimmed.unk_token_id not in encoded and trimmed.decode(encoded, skip_special_tokens=True) == UNSEEN


def test_unigram_keeps_character_pieces_and_unseen_characters_become_unk(tmp_path, lines):
    tokenizer = unigram_tokenizer(tmp_path)
    task = lines[:80]
    trimmed, _, _ = _trim(tokenizer, task)
    vocab, kept = set(tokenizer.get_vocab()), set(trimmed.get_vocab())
    alphabet = {c for text in task for c in text if not c.isspace()}
    assert "▁" in kept and {c for c in alphabet if c in vocab} <= kept and {"▁" + c for c in alphabet if "▁" + c in vocab} <= kept
    assert trimmed.unk_token == "<unk>" and _model_state(trimmed)["unk_id"] == trimmed.unk_token_id == 3
    # Greek and CJK have no pieces: unk, as before; a word of seen letters splits into kept pieces.
    word = "".join(sorted(alphabet & set("abcdefghijklmnopqrstuvwxyz")))
    ids = trimmed(word, add_special_tokens=False)["input_ids"]
    assert trimmed.unk_token_id not in ids and "".join(trimmed.convert_ids_to_tokens(ids)) == "▁" + word
    encoded = trimmed("Ωμέγα")["input_ids"]
    assert trimmed.unk_token_id in encoded and tokenizer.unk_token_id in tokenizer("Ωμέγα")["input_ids"]


def test_unigram_byte_fallback_keeps_the_byte_pieces(tmp_path, lines):
    # SentencePiece byte fallback (as in Llama-style vocabularies): <0xNN> pieces spell unknown characters.
    from transformers import PreTrainedTokenizerFast

    state = json.loads(unigram_tokenizer(tmp_path).backend_tokenizer.to_str())
    lowest = min(score for _, score in state["model"]["vocab"])
    state["model"]["vocab"] += [[f"<0x{b:02X}>", lowest - 1] for b in range(256)]
    state["model"]["byte_fallback"] = True
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(state)),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )
    trimmed, _, new_id = _trim(tokenizer, lines[:80])
    assert type(trimmed) is type(tokenizer) and _model_state(trimmed)["byte_fallback"] is True
    assert {f"<0x{b:02X}>" for b in range(256)} <= set(trimmed.get_vocab())
    assert trimmed(UNSEEN)["input_ids"] == [new_id[i] for i in tokenizer(UNSEEN)["input_ids"]]
    assert "<0xCE>" in trimmed.tokenize("Ω") and trimmed.unk_token_id not in trimmed(UNSEEN)["input_ids"]
    without, _, _ = _trim(tokenizer, lines[:80], characters=False)
    assert "<0xCE>" not in without.get_vocab() and "<unk>" in without.get_vocab()


def test_merges_written_as_strings_stay_strings():
    # tokenizers before 0.20 stored merges as "a b"; the trimmed state keeps whichever form it got.
    model = {
        "type": "BPE",
        "unk_token": None,
        "continuing_subword_prefix": None,
        "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4, "bc": 5},
        "merges": ["a b", "ab c", "b c"],
    }
    trim_model(model, {0: 0, 1: 1, 2: 2, 3: 3, 4: 4}, {})
    assert model["merges"] == ["a b", "ab c"] and model["vocab"] == {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4}


def test_unsupported_tokenizer_model_is_refused_naming_it():
    tokenizer = word_collator().tokenizer  # a WordLevel model
    with pytest.raises(DistillError, match="WordPiece.*BPE.*Unigram.*this one is WordLevel"):
        tokens_to_keep(tokenizer, token_counts([[2, 3]], len(tokenizer)))


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_trimmed_roberta_and_xlmr_classifiers_score_task_text_as_before(kind, tmp_path, lines):
    from transformers import (
        RobertaConfig,
        RobertaForSequenceClassification,
        XLMRobertaConfig,
        XLMRobertaForSequenceClassification,
    )

    tokenizer = BUILDERS[kind](tmp_path)
    config_class, model_class = {
        "bpe": (RobertaConfig, RobertaForSequenceClassification),
        "unigram": (XLMRobertaConfig, XLMRobertaForSequenceClassification),
    }[kind]
    torch.manual_seed(0)
    config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=130,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=0,
        eos_token_id=2,
    )
    model = model_class(config).eval()
    task = lines[:80]
    with torch.no_grad():
        before = model(**tokenizer(task[:4], padding=True, return_tensors="pt")).logits
    keep = tokens_to_keep(tokenizer, token_counts(tokenizer(task)["input_ids"], len(tokenizer)))
    model, trimmed = trim_vocabulary(model, tokenizer, keep)
    assert model.get_input_embeddings().num_embeddings == len(trimmed) == model.config.vocab_size
    with torch.no_grad():
        after = model(**trimmed(task[:4], padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)

"""Helpers the tests import (fixtures live in conftest.py): tokenizers built in code, and the
scripts of scripts/ as modules."""

from __future__ import annotations

from pathlib import Path


def word_collator(words: int = 40):
    """A padding collator over a word-level vocabulary "w0".."w{words-1}" (ids 2..), [PAD] 0, [UNK] 1:
    for tests that build token ids directly."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import DataCollatorWithPadding, PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, **{f"w{i}": i + 2 for i in range(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return DataCollatorWithPadding(PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]"))


def wordpiece_tokenizer(vocab: list[str], lowercase: bool = True):
    """A BERT tokenizer over exactly these WordPiece tokens (in this order), built the same way on
    transformers 4.x and 5.x: 5.x ignores `BertTokenizerFast(vocab_file=...)`, both take a
    `tokenizers` object."""
    from tokenizers import BertWordPieceTokenizer, Tokenizer
    from transformers import BertTokenizerFast

    wordpiece = BertWordPieceTokenizer({token: i for i, token in enumerate(vocab)}, lowercase=lowercase)
    return BertTokenizerFast(tokenizer_object=Tokenizer.from_str(wordpiece.to_str()), do_lower_case=lowercase)


def load_script(name: str):
    """A script of scripts/ as a module, so tests call its main(argv)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

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


def sample_lines(count: int = 400) -> list[str]:
    """The first `count` sentences of the shared SST-2 training set (skips the test without it)."""
    import os

    import pytest

    data = Path(os.environ.get("DISTILL_TEST_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
    path = data / "sst2" / "train.tsv"
    if not path.is_file():
        pytest.skip(f"{path} not found (set DISTILL_TEST_DATA_DIR)")
    with path.open(encoding="utf-8") as rows:
        next(rows)  # header
        return [next(rows).split("\t")[0].strip() for _ in range(count)]


def bpe_tokenizer(tmp_path: Path, vocab_size: int = 800):
    """A RoBERTa-style byte-level BPE tokenizer (<s> ... </s>) trained on real text, saved in
    tmp_path/"bpe" and loaded back with AutoTokenizer, as a checkpoint's tokenizer is."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import RobertaTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sample_lines(), trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    return _saved_and_reloaded(tok, RobertaTokenizerFast, tmp_path / "bpe")


def unigram_tokenizer(tmp_path: Path, vocab_size: int = 800):
    """An XLM-R-style SentencePiece Unigram tokenizer (<s> ... </s>, "▁" metaspace) trained on real
    text, saved in tmp_path/"unigram" and loaded back with AutoTokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaTokenizerFast

    tok = Tokenizer(models.Unigram())
    # What transformers 5 rebuilds an XLM-R tokenizer with, so saving and reloading changes nothing.
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace()])
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(sample_lines(), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return _saved_and_reloaded(tok, XLMRobertaTokenizerFast, tmp_path / "unigram")


def _saved_and_reloaded(backend, tokenizer_class, folder: Path):
    # transformers 5.x ignores vocab_file=/merges_file=; tokenizer_file= works on 4.x and 5.x.
    from transformers import AutoTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    backend.save(str(folder / "tokenizer.json"))
    tokenizer_class(tokenizer_file=str(folder / "tokenizer.json")).save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def load_script(name: str):
    """A script of scripts/ as a module, so tests call its main(argv)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

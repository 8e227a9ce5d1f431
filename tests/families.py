"""Tiny random checkpoints of every encoder family, each saved with its own kind of tokenizer
trained on real text: what the family matrix (tests/models/test_family_matrix.py) and
scripts/architecture_matrix.py run through every stage."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from helpers import bpe_tokenizer, sample_lines, unigram_tokenizer

# model_type -> tokenizer kind, as the family's real checkpoints ship them.
TOKENIZER_KINDS = {
    "bert": "wordpiece",
    "roberta": "bpe",
    "xlm-roberta": "unigram",
    "electra": "wordpiece",
    "distilbert": "wordpiece",
    "deberta-v2": "unigram",
    "modernbert": "bpe",
}
SIZE = {"hidden": 32, "layers": 4, "heads": 4, "ffn": 48, "positions": 130}


def trained_wordpiece(folder: Path, vocab_size: int = 800):
    from tokenizers import BertWordPieceTokenizer, Tokenizer
    from transformers import AutoTokenizer, BertTokenizerFast

    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(sample_lines(), vocab_size=vocab_size, show_progress=False)
    folder.mkdir(parents=True, exist_ok=True)
    BertTokenizerFast(tokenizer_object=Tokenizer.from_str(wordpiece.to_str()), do_lower_case=True).save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def tokenizer_of_kind(kind: str, folder: Path):
    if kind == "wordpiece":
        return trained_wordpiece(folder / "wordpiece")
    return (bpe_tokenizer if kind == "bpe" else unigram_tokenizer)(folder)


def family_config(model_type: str, tokenizer):
    """A small config of the family, its special-token ids taken from the tokenizer."""
    import transformers

    h, n, heads, ffn, positions = SIZE["hidden"], SIZE["layers"], SIZE["heads"], SIZE["ffn"], SIZE["positions"]
    common = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    if model_type == "distilbert":
        return transformers.DistilBertConfig(dim=h, n_layers=n, n_heads=heads, hidden_dim=ffn, max_position_embeddings=positions, **common)
    bert_like = {"hidden_size": h, "num_hidden_layers": n, "num_attention_heads": heads, "intermediate_size": ffn,
                 "max_position_embeddings": positions}
    if model_type == "modernbert":
        ids = {"bos_token_id": tokenizer.cls_token_id, "eos_token_id": tokenizer.sep_token_id, "cls_token_id": tokenizer.cls_token_id,
               "sep_token_id": tokenizer.sep_token_id}
        return transformers.ModernBertConfig(**bert_like, **common, **ids, global_attn_every_n_layers=2, local_attention=16)
    if model_type == "deberta-v2":  # v3's settings: relative attention, c2p + p2c, log buckets, no token types
        return transformers.DebertaV2Config(**bert_like, **common, relative_attention=True, pos_att_type=["p2c", "c2p"],
                                            position_buckets=16, max_relative_positions=positions, position_biased_input=False,
                                            share_att_key=True, norm_rel_ebd="layer_norm", type_vocab_size=0)
    if model_type == "electra":  # ELECTRA's embeddings are smaller than its hidden size: a projection joins them
        return transformers.ElectraConfig(**bert_like, **common, embedding_size=16)
    config_class = {"bert": transformers.BertConfig, "roberta": transformers.RobertaConfig, "xlm-roberta": transformers.XLMRobertaConfig}
    return config_class[model_type](**bert_like, **common)


def tiny_checkpoint(model_type: str, folder: Path, *, seed: int = 0) -> Path:
    """A randomly initialised checkpoint of the family with its kind of tokenizer, saved as a
    pretrained model is (safetensors, config.json, tokenizer files) in folder/model_type."""
    import torch
    from transformers import AutoModel

    out = folder / model_type
    tokenizer = tokenizer_of_kind(TOKENIZER_KINDS[model_type], folder / "tokenizers")
    torch.manual_seed(seed)
    model = AutoModel.from_config(family_config(model_type, tokenizer))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


class _Ids:
    """Stands in for a tokenizer where only the vocabulary size and special ids matter."""

    def __init__(self, size: int = 99):
        self.size, self.pad_token_id, self.cls_token_id, self.sep_token_id = size, 0, 1, 2

    def __len__(self) -> int:
        return self.size


def tiny_classifier(model_type: str, *, num_labels: int = 2, seed: int = 0, **overrides):
    """A random sequence classifier of the family (99-token vocabulary), in eval mode."""
    import torch
    from transformers import AutoModelForSequenceClassification

    config = family_config(model_type, _Ids())
    for key, value in overrides.items():
        setattr(config, key, value)
    config.num_labels = num_labels
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config).eval()


def sample_batch(rows: int = 3, length: int = 12, seed: int = 0) -> dict:
    """input_ids (ids 4..98) and an attention mask with one padded row, plus labels."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(4, 99, (rows, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, length // 2:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": torch.arange(rows) % 2}


@contextmanager
def masking(model, heads: dict[int, list[int]], neurons: dict[int, list[int]]):
    """The model with the listed heads' contributions (original indices, by layer) zeroed and, in the
    listed layers, only the listed FFN neurons active: what pruning them should give."""
    import torch

    from distill.models.families import family_of, submodule, transformer_blocks

    family, (_, blocks) = family_of(model), transformer_blocks(model)
    size = model.config.hidden_size // model.config.num_attention_heads
    masks = []
    for layer, removed in heads.items():
        mask = torch.ones(model.config.num_attention_heads * size)
        for head in removed:
            mask[head * size : (head + 1) * size] = 0
        masks.append((submodule(blocks[layer], family.attention_output), mask))
    for layer, keep in neurons.items():
        mask = torch.zeros(submodule(blocks[layer], family.ffn_out).in_features)
        mask[keep] = 1
        masks.append((submodule(blocks[layer], family.ffn_out), mask))
    handles = [
        linear.register_forward_pre_hook(lambda module, args, mask=mask: (args[0] * mask, *args[1:])) for linear, mask in masks
    ]
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()

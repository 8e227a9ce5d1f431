"""Recipe schema of the low-rank techniques: the `lora:` block of training stages, and the
`factorize` and `trim_vocab` stages."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from distill.recipe.base import Strict
from distill.recipe.prune import RecoveryConfig

# "qkv": a fused projection (ModernBERT); there "query", "key" and "value" name it too.
BlockModule = Literal["query", "key", "value", "qkv", "attention_output", "ffn_in", "ffn_out"]


class LoraSettings(Strict):
    """PEFT LoRA on a stage that trains: only rank-`rank` updates of the target layers and the
    task head are trained; the update is merged into the weights when the stage ends."""

    rank: int = Field(8, gt=0)  # r: the inner size of each low-rank update
    alpha: float = Field(16.0, gt=0)  # the update is scaled by alpha / rank
    dropout: float = Field(0.1, ge=0, lt=1)  # dropout on the updates' input while training (PEFT's lora_dropout)
    # None: the family's query and value projections (distill.models.families: BERT-likes query, value;
    # DistilBERT q_lin, v_lin; DeBERTa query_proj, value_proj; ModernBERT its fused Wqkv).
    target_modules: list[str] | None = None
    modules_to_save: list[str] | None = None  # trained in full; None: the task head
    keep_adapter: bool = False  # also save the unmerged adapter in <stage>/adapter/

    @field_validator("target_modules", "modules_to_save")
    @classmethod
    def _names(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and (not names or len(set(names)) != len(names) or not all(names)):
            raise ValueError("must be a non-empty list of distinct module names")
        return names


class RankRule(Strict):
    """How each layer's rank is chosen: exactly one of the three."""

    energy: float | None = None  # smallest rank keeping this share of the sum of squared singular values
    rank: int | None = Field(None, gt=0)  # a fixed rank (capped at full rank)
    ratio: float | None = None  # this share of the layer's full rank min(in, out), rounded up

    @field_validator("energy", "ratio")
    @classmethod
    def _share(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= 1:
            raise ValueError("must be in (0, 1]")
        return value

    @model_validator(mode="after")
    def _one_rule(self) -> "RankRule":
        if sum(v is not None for v in (self.energy, self.rank, self.ratio)) != 1:
            raise ValueError("give exactly one of energy, rank or ratio")
        return self


class LinearFactorization(RankRule):
    """Linear layers of every transformer block replaced by their truncated SVD (W ≈ U·V)."""

    # Which linear layers of every block: query, key, value, attention_output (attention), ffn_in, ffn_out (FFN).
    modules: list[BlockModule] = Field(["query", "key", "value", "attention_output", "ffn_in", "ffn_out"], min_length=1)

    @field_validator("modules")
    @classmethod
    def _distinct(cls, modules: list[str]) -> list[str]:
        if len(set(modules)) != len(modules):
            raise ValueError("list each module once")
        return modules


class FactorizeStage(Strict):
    """Low-rank factorization of linear layers and/or the word embeddings (E ≈ A·B, ALBERT-style),
    then optional recovery training. A layer stays dense where its rank would not save parameters.
    The artifact loads through distill.lowrank.load_factorized (ranks travel in config.json)."""

    kind: Literal["factorize"]  # picks this stage type
    name: str = "factorized"  # its folder <output_dir>/<recipe name>/<name>/ and what later stages call it; unique
    input: str | None = None  # the stage whose model is factorized; default: the previous stage
    teacher: str | None = None  # recovery teacher; default: the last teacher stage, else the input
    linear: LinearFactorization | None = None  # the block linear layers factorized, and their rank rule; None: none
    embeddings: RankRule | None = None  # rank rule of the word embeddings (E ≈ A·B); None: kept dense
    # Training afterwards; with train.keep_best (the default) kept only when it beats the factorized weights
    # on the checkpoint-selection examples (data.holdout_size, else validation). None: no training.
    recovery: RecoveryConfig | None = None

    @model_validator(mode="after")
    def _something_to_factorize(self) -> "FactorizeStage":
        if self.linear is None and self.embeddings is None:
            raise ValueError("give linear and/or embeddings (what to factorize)")
        return self


class TrimVocabStage(Strict):
    """Keep only the vocabulary the task's training data uses (train and train-holdout tokens, never
    the reported split's; special tokens; the characters they are made of); the tokenizer and word
    embeddings shrink to match. Dev words unseen in training split into kept pieces, which costs."""

    kind: Literal["trim_vocab"]  # picks this stage type
    name: str = "trimmed"  # its folder <output_dir>/<recipe name>/<name>/ and what later stages call it; unique
    input: str | None = None  # the stage whose model is trimmed; default: the previous stage
    max_tokens: int | None = Field(None, gt=0)  # keep only the N most frequent data tokens (+ special, characters)
    min_count: int = Field(1, ge=1)  # drop data tokens seen fewer times
    characters: bool = True  # keep every character seen as a piece (WordPiece c and ##c; BPE its byte alphabet; Unigram c and ▁c), so unseen words split into kept pieces

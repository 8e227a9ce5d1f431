"""Recipe schema of general (task-agnostic) distillation: a raw-text corpus, the `mlm_head` stage
that gives a teacher a trained MLM head, and the `general_distill` stage (DistilBERT's recipe).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from distill.recipe.base import Strict
from distill.recipe.training import StudentConfig, TrainConfig


class CorpusConfig(Strict):
    """Raw text for masked-language modelling, cut into fixed-length blocks."""

    # Text files, one paragraph or line per line (CRLF or LF). Relative paths are looked up in the
    # working folder, then data.dir, then $DISTILL_DATA_DIR.
    files: list[str] = []
    hub: str | None = None  # a Hub dataset by name (`datasets.load_dataset`), when online
    hub_config: str | None = None  # the Hub dataset's configuration name; None: its default
    hub_split: str = "train"  # the split of the Hub dataset that is read
    text_field: str = "text"  # the Hub dataset's column holding the text
    drop_headings: bool = True  # drop WikiText's ` = Heading = ` lines (markup, not prose)
    block_size: int = Field(128, ge=8, le=4096)  # tokens per block, [CLS] and [SEP] included
    holdout_blocks: int = Field(200, gt=0)  # blocks kept out of training to measure perplexity on
    max_train_blocks: int | None = Field(None, gt=0)  # random subset of the training blocks (quick runs)
    mlm_probability: float = Field(0.15, gt=0, lt=1)  # masked share; of those 80 % [MASK], 10 % random, 10 % kept
    eval_mask_seed: int = Field(1234, gt=0)  # held-out masks: the same for every model and stage

    @model_validator(mode="after")
    def _some_text(self) -> "CorpusConfig":
        if not self.files and not self.hub:
            raise ValueError("give files and/or hub (where the text comes from)")
        return self


class GeneralLossConfig(Strict):
    """DistilBERT's general-distillation objective (Sanh et al. 2019): 5 x KL over the vocabulary
    at temperature 2, 2 x the masked-LM cross-entropy, 1 x the hidden-state cosine."""

    temperature: float = Field(2.0, gt=0)  # softmax temperature of the alpha_ce term; the KL is scaled by T²
    alpha_ce: float = Field(5.0, ge=0)  # soft targets: KL(teacher || student) over the vocabulary
    alpha_mlm: float = Field(2.0, ge=0)  # the student's own masked-LM cross-entropy
    alpha_cos: float = Field(1.0, ge=0)  # cosine between last hidden states
    alpha_hidden: float = Field(0.0, ge=0)  # TinyBERT hidden-state MSE
    alpha_attention: float = Field(0.0, ge=0)  # MiniLM attention KL
    # KL over every real token (DistilBERT's default) or only over the masked ones.
    kl_positions: Literal["all", "masked"] = "all"
    layer_map: list[int] | None = None  # as in distill stages' loss.layer_map

    @model_validator(mode="after")
    def _some_weight(self) -> "GeneralLossConfig":
        weights = (self.alpha_ce, self.alpha_mlm, self.alpha_cos, self.alpha_hidden, self.alpha_attention)
        if not any(w > 0 for w in weights):
            raise ValueError("at least one alpha_* weight must be > 0")
        return self


class GeneralStudentConfig(StudentConfig):
    """The general student: teacher layers copied DistilBERT-style (`layers`), or a fresh model of
    another shape (`config_overrides`). It keeps the teacher's MLM head."""

    init_from: Literal["teacher"] = "teacher"  # the only choice: built from the MLM teacher
    from_pretrained: None = None  # not available to a general student


# Defaults of corpus stages' `train`, under whatever the recipe sets. Blocks all have one length
# (grouping by length would only reorder them); the held-out blocks report the perplexity, so by
# default they do not also pick the checkpoint.
CORPUS_TRAIN_DEFAULTS = {"epochs": 1.0, "group_by_length": False, "keep_best": False, "checkpoint_every": 100}
HEAD_LEARNING_RATE = 1e-3  # a new head on a frozen body
STUDENT_LEARNING_RATE = 1e-4  # a student copied from a pre-trained teacher, small batches


def _with_corpus_defaults(train, learning_rate: float):
    defaults = {**CORPUS_TRAIN_DEFAULTS, "learning_rate": learning_rate}
    return {**defaults, **train} if isinstance(train, dict) else train


class MlmHeadStage(Strict):
    """Train the recipe model's MLM head (and optionally the whole model) on the corpus, so that it
    can teach a general student. Needed when the checkpoint has no MLM head (the packaged MiniLM)."""

    kind: Literal["mlm_head"]  # picks this stage type
    name: str = "mlm_teacher"  # its folder <output_dir>/<recipe name>/<name>/ and what later stages call it; unique
    corpus: CorpusConfig  # the raw text trained on; its held-out blocks give the perplexity
    train_body: bool = False  # also update the encoder and the (tied) embeddings, not only the head
    # The training loop (epochs, batch, learning rate, evaluation); keys left unset take
    # CORPUS_TRAIN_DEFAULTS and a learning rate of 1e-3 (HEAD_LEARNING_RATE).
    train: TrainConfig = TrainConfig(**CORPUS_TRAIN_DEFAULTS, learning_rate=HEAD_LEARNING_RATE)

    @field_validator("train", mode="before")
    @classmethod
    def _train_defaults(cls, train):
        return _with_corpus_defaults(train, HEAD_LEARNING_RATE)


class GeneralDistillStage(Strict):
    """Task-agnostic distillation on raw text: MLM teacher -> general student (a masked LM)."""

    kind: Literal["general_distill"]  # picks this stage type
    name: str = "general_student"  # its folder <output_dir>/<recipe name>/<name>/ and what later stages call it; unique
    # The MLM teacher: an earlier stage's artifact (an mlm_head stage); default: the last mlm_head
    # stage before this one, else the recipe's model, which must then have a trained MLM head.
    teacher: str | None = None
    corpus: CorpusConfig  # the raw text trained on; its held-out blocks give the perplexity
    student: GeneralStudentConfig = GeneralStudentConfig()  # how the student is built (default: every other teacher layer copied)
    loss: GeneralLossConfig = GeneralLossConfig()  # the objective's term weights and temperature (DistilBERT's by default)
    # The training loop (epochs, batch, learning rate, evaluation); keys left unset take
    # CORPUS_TRAIN_DEFAULTS and a learning rate of 1e-4 (STUDENT_LEARNING_RATE).
    train: TrainConfig = TrainConfig(**CORPUS_TRAIN_DEFAULTS, learning_rate=STUDENT_LEARNING_RATE)

    @field_validator("train", mode="before")
    @classmethod
    def _train_defaults(cls, train):
        return _with_corpus_defaults(train, STUDENT_LEARNING_RATE)


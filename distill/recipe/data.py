"""Recipe schema of the data: where a task's examples come from and how they are cut (`data:`),
and a distill stage's transfer set: extra, teacher-labelled inputs (TinyBERT's augmented data, or
unlabelled in-domain text) that the student learns soft targets on."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from distill.recipe.base import Strict


class DataConfig(Strict):
    """Where the task's examples come from and how they are cut."""

    dir: str | None = None  # local GLUE folder; else $DISTILL_DATA_DIR / --data-dir; else the Hub
    max_length: int = Field(128, gt=0, le=4096)  # tokens per example, special tokens included; longer inputs are truncated
    train_limit: int | None = Field(None, gt=0)  # shuffled subset of train (quick runs)
    eval_limit: int | None = Field(None, gt=0)  # subset of validation (quick runs only)
    # Examples carved out of train to pick the best checkpoint, so the reported dev metric
    # is not also the one that selected the checkpoint. 0 = select on validation.
    holdout_size: int = Field(0, ge=0)
    # The training split as a local file with named columns (.csv, .tsv, .json or .jsonl; token tasks:
    # CoNLL or JSON Lines): a custom task's data (any task name not built in), or a file that replaces
    # a built-in task's own split (its columns named as on the Hub).
    train_file: str | None = None
    validation_file: str | None = None  # the dev split the metric is reported on; as train_file
    text_fields: list[str] | None = None  # custom sequence tasks: one text column, or two for sentence pairs
    label_field: str = "label"  # custom sequence tasks: the label column (a built-in task's files use `label`)
    label_names: list[str] | None = None  # None with task custom => regression; token tasks: the tags
    # Token classification (NER). Custom tasks: task_type token_classification, CoNLL (.conll) or JSON
    # Lines files whose records hold tokens_field (words) and tags_field (one tag per word).
    # Extractive question answering: task_type question_answering, SQuAD JSON or JSON Lines rows (id, title,
    # context, question, answers {text, answer_start}).
    task_type: Literal["sequence_classification", "token_classification", "question_answering"] | None = None  # None: from the task
    tokens_field: str | None = None  # default "tokens"
    tags_field: str | None = None  # default "tags"
    tag_scheme: Literal["BIO", "none"] | None = None  # default BIO: malformed sequences are errors
    # Label every word piece of a training word (B-X continues as I-X), not only the first;
    # evaluation always scores a word by its first piece. Default false.
    label_all_subtokens: bool | None = None


class AugmentConfig(Strict):
    """Token-replacement augmentation of the training set with a masked LM (TinyBERT's recipe,
    word pieces only: every chosen piece is masked and replaced by one of the MLM's top-k)."""

    # The MLM: an earlier stage's artifact (mlm_head or general_distill), or a model path / Hub id
    # with a trained MLM head. Its vocabulary must be the run's.
    mlm_stage: str | None = None
    mlm_model: str | None = None  # a model folder, Hub id or packaged alias with a trained MLM head
    copies: int = Field(4, ge=1, le=100)  # augmented variants of each training example
    replace_share: float = Field(0.3, gt=0, lt=1)  # share of a text's word pieces replaced (TinyBERT: 0.4)
    top_k: int = Field(15, ge=1)  # a replacement is drawn from the MLM's k most likely pieces (TinyBERT: 15)
    batch_size: int = Field(64, ge=1)  # MLM forward batch

    @model_validator(mode="after")
    def _one_mlm(self) -> "AugmentConfig":
        if (self.mlm_stage is None) == (self.mlm_model is None):
            raise ValueError("give exactly one of mlm_stage (an earlier stage) and mlm_model (a path or Hub id)")
        return self


class TransferConfig(Strict):
    """Extra inputs for a distill stage: soft targets only (they have no labels); the real
    training examples keep their hard labels. The teacher's logits on them are cached."""

    augment: AugmentConfig | None = None  # MLM token-replacement copies of the training examples; None: files only
    # Unlabelled text files, one example per line; for pair tasks the two texts are separated by a
    # tab. Relative paths are looked up in the working folder, then data.dir, then $DISTILL_DATA_DIR.
    files: list[str] = []
    max_file_examples: int | None = Field(None, gt=0)  # a random subset of the files' lines
    seed: int = 0  # which pieces are replaced and which candidates drawn; which file lines are kept

    @model_validator(mode="after")
    def _some_source(self) -> "TransferConfig":
        if self.augment is None and not self.files:
            raise ValueError("give augment and/or files (where the extra inputs come from)")
        return self

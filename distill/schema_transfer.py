"""Recipe schema of a distill stage's transfer set: extra, teacher-labelled inputs (TinyBERT's
augmented data, or unlabelled in-domain text) that the student learns soft targets on."""

from __future__ import annotations

from pydantic import Field, model_validator

from distill.schema_base import Strict


class AugmentConfig(Strict):
    """Token-replacement augmentation of the training set with a masked LM (TinyBERT's recipe,
    word pieces only: every chosen piece is masked and replaced by one of the MLM's top-k)."""

    # The MLM: an earlier stage's artifact (mlm_head or general_distill), or a model path / Hub id
    # with a trained MLM head. Its vocabulary must be the run's.
    mlm_stage: str | None = None
    mlm_model: str | None = None
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

    augment: AugmentConfig | None = None
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

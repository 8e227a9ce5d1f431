"""Recipe schema shared by every stage that trains: the starting model, the training loop,
the student's shape and the distillation loss."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from distill.recipe.base import Strict


class ModelSource(Strict):
    """The starting model: a packaged alias (`minilm-l6`), a local folder or a Hub id."""

    model: str = "minilm-l6"  # a packaged alias, a local folder or a Hub id; the run's tokenizer comes from it too
    revision: str | None = None  # Hub branch, tag or commit of the model and its tokenizer; None: the default branch
    trust_remote_code: bool = False  # run Python code shipped with the model (transformers' option): trusted sources only
    allow_pickle: bool = False  # load `.bin` (pickle) weights; off: safetensors only


class TrainConfig(Strict):
    epochs: float = Field(3.0, gt=0)  # passes over the training set; fractions allowed (steps rounded up)
    max_steps: int | None = Field(None, gt=0)  # overrides epochs when set
    batch_size: int = Field(32, gt=0)  # examples per optimizer step, over all processes and accumulation steps
    eval_batch_size: int = Field(128, gt=0)  # examples per evaluation batch; dev scoring uses the largest value among the stages
    learning_rate: float = Field(5e-5, gt=0, lt=1)  # AdamW's peak rate: linear warmup, then linear decay to 0
    weight_decay: float = Field(0.01, ge=0)  # AdamW's weight decay; biases and LayerNorm weights get none
    warmup_ratio: float = Field(0.1, ge=0, lt=1)  # share of the optimizer steps spent warming the rate up from 0
    grad_accum_steps: int = Field(1, gt=0)  # micro-batches per optimizer step (batch_size is split over them)
    max_grad_norm: float | None = Field(1.0, gt=0)  # clip the gradients' global norm to this; None: no clipping
    eval_every: int | None = Field(None, gt=0)  # optimizer steps; None = once per epoch
    keep_best: bool = True  # restore the best evaluated checkpoint at the end
    log_every: int = Field(50, gt=0)  # optimizer steps per train_log.jsonl line (mean loss and terms)
    # Save the full training state every N optimizer steps, so a killed run continues from there.
    checkpoint_every: int | None = Field(500, gt=0)
    # Batch examples of similar length (transformers' LengthGroupedSampler): less padding, faster steps.
    group_by_length: bool = True


class StudentConfig(Strict):
    """How the student is built, DistilBERT-style by default."""

    # Teacher layers copied into the student, in order. None = every other layer (0, 2, 4, ...).
    layers: list[int] | None = None
    # Copy the weights from the (fine-tuned) teacher of this stage, or from the recipe's
    # pre-trained model (task head then starts random).
    init_from: Literal["teacher", "pretrained"] = "teacher"
    # Another checkpoint (path or Hub id): the student as saved there, or, with `layers`, those
    # layers copied out of it (e.g. the pre-trained model while the teacher is an already-tuned one).
    from_pretrained: str | None = None
    # Or a fresh, randomly initialised model: the teacher's config with these fields changed.
    config_overrides: dict[str, Any] | None = None

    @field_validator("layers")
    @classmethod
    def _layers_valid(cls, layers: list[int] | None) -> list[int] | None:
        if layers is None:
            return None
        if not layers:
            raise ValueError("must list at least one teacher layer")
        if any(i < 0 for i in layers):
            raise ValueError("layer indices must be >= 0")
        if len(set(layers)) != len(layers):
            raise ValueError("layer indices must be distinct")
        return layers

    @model_validator(mode="after")
    def _one_source(self) -> "StudentConfig":
        if self.config_overrides and (self.layers is not None or self.from_pretrained):
            raise ValueError("config_overrides builds a fresh model: give it without layers or from_pretrained")
        return self


class LossConfig(Strict):
    """Distillation loss weights. Defaults follow DistilBERT (Sanh et al. 2019): alpha_ce=5 on
    soft targets, 2 on the hard objective, 1 on the hidden-state cosine, temperature 2."""

    temperature: float = Field(2.0, gt=0)  # softmax temperature of the alpha_kd term (not regression); the KL is scaled by T²
    alpha_kd: float = Field(5.0, ge=0)  # soft targets: KL(teacher || student) at `temperature`; MSE for regression
    alpha_hard: float = Field(2.0, ge=0)  # cross-entropy on the gold labels (MSE for regression)
    alpha_cos: float = Field(1.0, ge=0)  # 1 - cosine between last hidden states (DistilBERT), over real tokens
    alpha_hidden: float = Field(0.0, ge=0)  # TinyBERT hidden-state MSE
    alpha_attention: float = Field(0.0, ge=0)  # MiniLM attention-distribution KL
    # layer_map[i] = teacher hidden_states index aligned with student layer i's output (0 is the
    # embeddings, not a layer). The teacher's depth bounds it in distill/stages/preflight.py.
    layer_map: list[Annotated[int, Field(ge=1)]] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _some_weight(self) -> "LossConfig":
        weights = (self.alpha_kd, self.alpha_hard, self.alpha_cos, self.alpha_hidden, self.alpha_attention)
        if not any(w > 0 for w in weights):
            raise ValueError("at least one alpha_* weight must be > 0")
        return self


def default_student_layers(num_teacher_layers: int) -> list[int]:
    """DistilBERT's choice: every other teacher layer, starting from the first."""
    return list(range(0, num_teacher_layers, 2))

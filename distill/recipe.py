"""The recipe schema: the single source of truth for what a run does.

A recipe is YAML validated by these pydantic models. Unknown keys are errors, so a typo never
passes silently. `load_recipe` turns every validation problem into one `DistillError` line that
names the file and the field path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from distill.errors import DistillError
from distill.schema_base import Strict
from distill.schema_transfer import TransferConfig
from distill.textfiles import read_text


class DataConfig(Strict):
    """Where the task's examples come from and how they are cut."""

    dir: str | None = None  # local GLUE folder; else $DISTILL_DATA_DIR / --data-dir; else the Hub
    max_length: int = Field(128, gt=0, le=4096)
    train_limit: int | None = Field(None, gt=0)  # shuffled subset of train (quick runs)
    eval_limit: int | None = Field(None, gt=0)  # subset of validation (quick runs only)
    # Examples carved out of train to pick the best checkpoint, so the reported dev metric
    # is not also the one that selected the checkpoint. 0 = select on validation.
    holdout_size: int = Field(0, ge=0)
    # Custom tasks (task: custom): local files with named columns.
    train_file: str | None = None
    validation_file: str | None = None
    text_fields: list[str] | None = None
    label_field: str = "label"
    label_names: list[str] | None = None  # None with task custom => regression; token tasks: the tags
    # Token classification (NER). Custom tasks: task_type token_classification, CoNLL (.conll) or JSON
    # Lines files whose records hold tokens_field (words) and tags_field (one tag per word).
    task_type: Literal["sequence_classification", "token_classification"] | None = None  # None: from the task
    tokens_field: str | None = None  # default "tokens"
    tags_field: str | None = None  # default "tags"
    tag_scheme: Literal["BIO", "none"] | None = None  # default BIO: malformed sequences are errors
    # Label every word piece of a training word (B-X continues as I-X), not only the first;
    # evaluation always scores a word by its first piece. Default false.
    label_all_subtokens: bool | None = None


class ModelSource(Strict):
    """The starting model: a packaged alias (`minilm-l6`), a local folder or a Hub id."""

    model: str = "minilm-l6"
    revision: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False  # load `.bin` (pickle) weights; off: safetensors only


class TrainConfig(Strict):
    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, gt=0)  # overrides epochs when set
    batch_size: int = Field(32, gt=0)
    eval_batch_size: int = Field(128, gt=0)
    learning_rate: float = Field(5e-5, gt=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    grad_accum_steps: int = Field(1, gt=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    eval_every: int | None = Field(None, gt=0)  # optimizer steps; None = once per epoch
    keep_best: bool = True  # restore the best evaluated checkpoint at the end
    log_every: int = Field(50, gt=0)
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

    temperature: float = Field(2.0, gt=0)
    alpha_kd: float = Field(5.0, ge=0)
    alpha_hard: float = Field(2.0, ge=0)
    alpha_cos: float = Field(1.0, ge=0)
    alpha_hidden: float = Field(0.0, ge=0)  # TinyBERT hidden-state MSE
    alpha_attention: float = Field(0.0, ge=0)  # MiniLM attention-distribution KL
    # layer_map[i] = teacher hidden_states index aligned with student layer i's output (0 is the
    # embeddings, not a layer). The teacher's depth bounds it in distill/preflight.py.
    layer_map: list[Annotated[int, Field(ge=1)]] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _some_weight(self) -> "LossConfig":
        weights = (self.alpha_kd, self.alpha_hard, self.alpha_cos, self.alpha_hidden, self.alpha_attention)
        if not any(w > 0 for w in weights):
            raise ValueError("at least one alpha_* weight must be > 0")
        return self


class TeacherStage(Strict):
    """Fine-tune the recipe's model on the task (or just evaluate it: `skip_training`)."""

    kind: Literal["teacher"]
    name: str = "teacher"
    skip_training: bool = False  # the model is already tuned on this task
    # Start from this earlier stage's artifact (e.g. a general_distill student; a fresh task head
    # when it has none) instead of the recipe's model.
    input: str | None = None
    train: TrainConfig = TrainConfig()
    lora: LoraSettings | None = None  # train LoRA adapters (merged at the end) instead of all weights

    @field_validator("lora")
    @classmethod
    def _lora_needs_training(cls, lora, info):
        if lora is not None and info.data.get("skip_training"):
            raise ValueError("needs training, but skip_training is true")
        return lora


class DistillStage(Strict):
    """Train a student from a teacher with soft targets and optional hidden/attention terms."""

    kind: Literal["distill"]
    name: str = "student"
    teacher: str | None = None  # name of the stage whose model teaches; default: the last teacher stage
    student: StudentConfig = StudentConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    seeds: list[int] | None = None  # several seeds: the report gives mean and spread
    lora: LoraSettings | None = None  # train LoRA adapters on the student (merged at the end)
    # Run the teacher once over the training set and reuse its logits (logits-only losses).
    cache_teacher_logits: bool = False
    # Extra teacher-labelled inputs (augmented copies, unlabelled text): distill/transfer.py.
    transfer: TransferConfig | None = None

    @model_validator(mode="after")
    def _cache_needs_logits_only(self) -> "DistillStage":
        if self.cache_teacher_logits and (self.loss.alpha_cos or self.loss.alpha_hidden or self.loss.alpha_attention):
            raise ValueError(
                "cache_teacher_logits: the cache holds logits only; set loss.alpha_cos, alpha_hidden and alpha_attention to 0"
            )
        return self


class BaselineStage(Strict):
    """The same student as a distill stage, trained on hard labels only: what KD is measured against."""

    kind: Literal["baseline"]
    name: str = "baseline"
    teacher: str | None = None  # the student is still built from this stage's model (same init as KD)
    student: StudentConfig = StudentConfig()
    train: TrainConfig = TrainConfig()
    seeds: list[int] | None = None
    lora: LoraSettings | None = None


class BenchmarkConfig(Strict):
    """Latency and memory of every stage's artifact, measured at the end of `distill run`."""

    enabled: bool = False
    batch_sizes: list[int] = Field([1, 32], min_length=1)
    seq_length: int = Field(64, ge=2)  # dev sentences padded (or cut) to this many tokens
    warmup: int = Field(3, ge=0)  # untimed calls per model and batch size
    repeats: int = Field(20, ge=1)  # timed calls; the median is reported
    threads: int | None = Field(None, gt=0)  # torch and ONNX Runtime intra-op threads; None: torch's default
    memory: bool = True  # peak RSS of each artifact in a fresh subprocess

    @field_validator("batch_sizes")
    @classmethod
    def _positive_distinct(cls, sizes: list[int]) -> list[int]:
        if any(b < 1 for b in sizes) or len(set(sizes)) != len(sizes):
            raise ValueError("must be distinct positive integers")
        return sizes


# Stage schemas beyond the pipeline issue's live in their own modules, which import Strict and the
# configs above; the names are re-exported here, so `from distill.recipe import PruneStage` works.
from distill.schema_prune import PruneStage, RecoveryConfig  # noqa: E402, F401
from distill.schema_export import HUB_REPO_ID, BnbStage, CastStage, OnnxStage, PublishStage  # noqa: E402, F401
from distill.schema_lowrank import FactorizeStage, LoraSettings, TrimVocabStage  # noqa: E402
# General (raw-text) distillation stages, likewise: distill/schema_general.py.
from distill.schema_general import GeneralDistillStage, MlmHeadStage  # noqa: E402
from distill.schema_qat import QatStage  # noqa: E402

DEFAULT_STAGE_NAMES = {"teacher": "teacher", "distill": "student", "baseline": "baseline", "publish": "publish", "prune": "pruned",
                       "onnx": "onnx", "bnb": "bnb", "cast": "cast", "factorize": "factorized", "trim_vocab": "trimmed",
                       "mlm_head": "mlm_teacher", "general_distill": "general_student", "qat": "qat"}

Stage = Annotated[Union[TeacherStage, DistillStage, BaselineStage, PruneStage, PublishStage,
                        OnnxStage, BnbStage, CastStage, FactorizeStage, TrimVocabStage, MlmHeadStage,
                        GeneralDistillStage, QatStage], Field(discriminator="kind")]


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    task: str
    seed: int = 42
    output_dir: str = "runs"
    # One setting per run (Accelerate keeps one precision state per process). "auto": bf16 on a
    # GPU or a CPU with native bf16 (AVX512-BF16/AMX), else fp32: bf16 emulated on AVX2 is ~4x slower.
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    data: DataConfig = DataConfig()
    model: ModelSource = ModelSource()
    stages: list[Stage] = Field(min_length=1)
    benchmark: BenchmarkConfig = BenchmarkConfig()  # latency/memory at the end of a run (not part of stage hashes)

    @model_validator(mode="after")
    def _stage_names_unique(self) -> "Recipe":
        seen: set[str] = set()
        for i, stage in enumerate(self.stages):
            if stage.name in seen:
                raise ValueError(f"stages[{i}].name: duplicate stage name '{stage.name}'")
            transfer = getattr(stage, "transfer", None)
            augment = transfer.augment if transfer is not None else None
            refs = {"teacher": getattr(stage, "teacher", None), "input": getattr(stage, "input", None),
                    "stage": getattr(stage, "stage", None), "transfer.augment.mlm_stage": augment and augment.mlm_stage}
            for field_name, ref in refs.items():
                if ref is not None and ref not in seen:
                    raise ValueError(f"stages[{i}].{field_name}: no earlier stage named '{ref}'")
            seen.add(stage.name)
        return self

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def hash(self) -> str:
        return fingerprint(self.to_dict())


def fingerprint(obj: Any) -> str:
    """Short stable hash of JSON-able data (recipes, stage configs)."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- loading and overrides


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override and validate a recipe; every problem becomes one DistillError line."""
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"{path}: recipe file not found")
    try:
        raw = yaml.safe_load(read_text(path))  # not UTF-8: one line with the byte offset
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise DistillError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise DistillError(f"{path}: a recipe is a YAML mapping (name, task, stages, ...)")
    for override in overrides:
        apply_override(raw, override, source=path)
    return validate_recipe(raw, source=path)


def validate_recipe(raw: dict[str, Any], source: str | Path = "<recipe>") -> Recipe:
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        problems = [_describe(e) for e in err.errors()]
        raise DistillError(f"{source}: " + "; ".join(problems)) from None


def _describe(error: dict[str, Any]) -> str:
    loc = _field_path(error["loc"])
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
        # Model-level validators already name their field inside the message.
        if loc and message.split(":")[0].startswith(("stages[",)):
            loc = ""
    if error["type"] == "extra_forbidden":
        message = "unknown key (check the spelling; see the recipe schema in distill/recipe.py)"
    elif error["type"] == "missing":
        message = "required field is missing"
    elif "input" in error and not isinstance(error["input"], (dict, list)):
        message = f"{message} (got {error['input']!r})"
    return f"{loc}: {message}" if loc else message


def _field_path(loc: tuple[Any, ...]) -> str:
    """('stages', 1, 'distill', 'loss', 'temperature') -> 'stages[1].loss.temperature'."""
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
        elif i >= 2 and loc[i - 2] == "stages" and isinstance(loc[i - 1], int):
            continue  # the stage-kind tag pydantic inserts for the discriminated union
        else:
            parts.append(str(item))
    return ".".join(parts)


def apply_override(raw: dict[str, Any], override: str, source: str | Path = "<recipe>") -> None:
    """Apply `a.b.c=value` to the raw recipe dict. Stages may be named by index or by name:
    `stages.student.train.epochs=2` and `stages.1.train.epochs=2` are the same."""
    if "=" not in override:
        raise DistillError(f"override '{override}': expected key.path=value")
    key, _, text = override.partition("=")
    try:
        value = yaml.safe_load(text) if text != "" else None
    except yaml.YAMLError:
        value = text
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise DistillError(f"override '{override}': empty key")
    node: Any = raw
    for depth, part in enumerate(keys[:-1]):
        node = _child(node, part, keys[: depth + 1], override, create=True)
    last = keys[-1]
    if isinstance(node, list):
        index = _list_index(node, last, override)
        node[index] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise DistillError(f"override '{override}': '{'.'.join(keys[:-1])}' is not a mapping")


def _child(node: Any, part: str, path: list[str], override: str, create: bool) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, part, override)]
    if not isinstance(node, dict):
        raise DistillError(f"override '{override}': '{'.'.join(path[:-1])}' is not a mapping")
    if part not in node or node[part] is None:
        if not create:
            raise DistillError(f"override '{override}': no field '{'.'.join(path)}'")
        node[part] = {}
    return node[part]


def _list_index(items: list[Any], part: str, override: str) -> int:
    if part.lstrip("-").isdigit():
        index = int(part)
        if not -len(items) <= index < len(items):
            raise DistillError(f"override '{override}': index {index} out of range (0..{len(items) - 1})")
        return index
    for i, item in enumerate(items):  # stages by name
        if isinstance(item, dict) and item.get("name", DEFAULT_STAGE_NAMES.get(item.get("kind"))) == part:
            return i
    raise DistillError(f"override '{override}': no list item named '{part}'")


def dump_recipe(recipe: Recipe, path: Path) -> None:
    path.write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False), encoding="utf-8")

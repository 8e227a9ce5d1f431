"""Checks of a recipe against its task, its models, its transfer files and its output folder, made by
`distill validate` and at the start of `distill run`, so that a bad setting fails in one line before
any stage trains. Light imports only: `distill validate` runs this without torch.

Only local model folders are read (packaged aliases resolve to one): a Hub id is not fetched to
check a recipe. What cannot be known here is still checked when the stage runs
(distill.models.student.copy_layers_student, distill.training.losses.DistillationLoss).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from distill import DistillError
from distill.data.files import default_search_dirs, resolve_corpus_file
from distill.data.tasks import TaskSpec
from distill.models.families import family_of, tokenizer_kind
from distill.models.sources import resolve_model_path
from distill.recipe import BaselineStage, DistillStage, FactorizeStage, PruneStage, Recipe, TeacherStage, TrimVocabStage
from distill.recipe.training import default_student_layers

# Where a config.json keeps the layer count: BERT-likes, DistilBERT, others. Read as JSON, not
# through transformers' AutoConfig, which imports torch (seconds, for `distill validate`).
LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layers", "num_layers")


def layer_count(config: dict) -> int | None:
    return next((config[key] for key in LAYER_COUNT_KEYS if isinstance(config.get(key), int)), None)


@dataclass
class Model:
    config: dict  # config.json as written (with a student's changes)
    name: str  # as errors name it: the recipe's model or path, or the stage that makes it

    @property
    def layers(self) -> int:
        return layer_count(self.config)


def check_output_dir(run_dir: Path) -> None:
    """A file where the run folder or a folder above it goes fails here, not as a traceback from
    mkdir once the data is loaded."""
    for folder in (run_dir, *run_dir.parents):
        if folder.exists() and not folder.is_dir():
            raise DistillError(f"output_dir: {folder} is a file, not a folder (the run writes to {run_dir})")


def check_recipe_against_models(recipe: Recipe) -> None:
    """Every stage against the architecture and tokenizer it will meet (check_architecture); distill
    and baseline stages: `student.layers` within the model the layers are copied from;
    `loss.layer_map` within the teacher's layers and one entry per student layer; prune stages:
    `layers` within their input's layers, one kept at least."""
    check_architecture(recipe)
    for index, stage in enumerate(recipe.stages):
        if isinstance(stage, PruneStage) and stage.layers is not None and (source := _prune_input(recipe, stage)) is not None:
            stage.layers.check_against(source.layers, f"stages[{index}].layers", source.name)
        if not isinstance(stage, (DistillStage, BaselineStage)):
            continue
        source, whose = _layer_source(recipe, stage)
        if source is not None and (bad := [i for i in stage.student.layers or () if i >= source.layers]):
            raise DistillError(f"stages[{index}].student.layers: layer {bad[0]} is beyond the {whose} {source.layers} "
                               f"layers (0..{source.layers - 1}) in {source.name}")
        layer_map = stage.loss.layer_map if isinstance(stage, DistillStage) else None
        if layer_map is None:
            continue
        teacher = _teacher(recipe, stage)
        if teacher is not None and (bad := [i for i, v in enumerate(layer_map) if v > teacher.layers]):
            raise DistillError(f"stages[{index}].loss.layer_map[{bad[0]}]: {layer_map[bad[0]]} is beyond the teacher's "
                               f"{teacher.layers} layers (hidden_states 1..{teacher.layers}) in {teacher.name}")
        student = _student(recipe, stage)
        if student is not None and len(layer_map) != student.layers:
            raise DistillError(f"stages[{index}].loss.layer_map: has {len(layer_map)} entries but the student has "
                               f"{student.layers} layers (one teacher layer per student layer)")


def _local_model(source: str) -> Model | None:
    """A local model folder's config; None for a Hub id or a folder without a readable config."""
    try:
        path = resolve_model_path(source)
    except DistillError:  # a packaged alias without its package: loading the model says so
        return None
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return Model(config, source) if isinstance(config, dict) and layer_count(config) is not None else None


def _recipe_model(recipe: Recipe) -> Model | None:
    return _local_model(recipe.model.model)


def _teacher(recipe: Recipe, stage: DistillStage | BaselineStage) -> Model | None:
    """The model teaching a stage, picked as distill.stages.distill.teacher_stage_name does."""
    name = stage.teacher
    if name is None:
        earlier = recipe.stages[: recipe.stages.index(stage)]
        name = next((s.name for s in reversed(earlier) if isinstance(s, TeacherStage)), None)
    return _recipe_model(recipe) if name is None else _output(recipe, recipe.stage(name))


def _output(recipe: Recipe, stage) -> Model | None:
    """The model a stage saves, as far as it is followed here."""
    if isinstance(stage, TeacherStage):
        # A teacher tuned from another stage's model (`input`, e.g. a general_distill student) has
        # that model's depth: not followed here, the distill stage checks it when it runs.
        return _recipe_model(recipe) if stage.input is None else None
    if isinstance(stage, (DistillStage, BaselineStage)):
        return _student(recipe, stage)
    if isinstance(stage, PruneStage) and (source := _prune_input(recipe, stage)) is not None:
        removed = stage.layers.removed if stage.layers is not None else 0
        return Model({LAYER_COUNT_KEYS[0]: source.layers - removed}, f"stage '{stage.name}'")
    return None  # factorize, ...: not followed


def _prune_input(recipe: Recipe, stage: PruneStage) -> Model | None:
    """The model a prune stage starts from: its `input`, else the stage before it (as
    distill.stages.context.input_name picks it)."""
    index = recipe.stages.index(stage)
    if stage.input is None and index == 0:
        return None  # refused when the stage runs
    return _output(recipe, recipe.stage(stage.input) if stage.input else recipe.stages[index - 1])


def _layer_source(recipe: Recipe, stage: DistillStage | BaselineStage) -> tuple[Model | None, str]:
    """The model a student is built from (as distill.models.student.build_student and the distill stage
    pick it), and whose it is, for the error."""
    spec = stage.student
    if spec.from_pretrained:
        return _local_model(spec.from_pretrained), "from_pretrained checkpoint's"
    if spec.init_from == "pretrained" and not spec.config_overrides:
        return _recipe_model(recipe), "pre-trained model's"
    return _teacher(recipe, stage), "teacher's"


def _student(recipe: Recipe, stage: DistillStage | BaselineStage) -> Model | None:
    """The student a distill or baseline stage trains, as distill.models.student.build_student makes it."""
    spec = stage.student
    source, _ = _layer_source(recipe, stage)
    if source is None or (spec.from_pretrained and spec.layers is None):
        return source  # unknown, or the checkpoint as saved
    name = f"stage '{stage.name}'"
    if spec.config_overrides:  # an override of the layer count, under any of its names, wins
        overridden = layer_count(spec.config_overrides)
        layers = source.layers if overridden is None else overridden
    else:
        layers = len(spec.layers if spec.layers is not None else default_student_layers(source.layers))
    return Model({LAYER_COUNT_KEYS[0]: layers}, name)


def check_architecture(recipe: Recipe) -> None:
    """The stages that edit a model's layers or vocabulary, against the recipe model's family (its
    config.json's model_type, through distill.models.families) and its tokenizer's kind (tokenizer.json):
    one line naming the stage, the family and the reason, before anything trains. Hub models are
    checked when they load."""
    source = _recipe_model(recipe)
    if source is None:
        return
    folder = resolve_model_path(recipe.model.model)
    model_type = source.config.get("model_type")
    for index, stage in enumerate(recipe.stages):
        what = f"stages[{index}] ({stage.name}, {stage.kind})"
        copies_layers = isinstance(stage, (DistillStage, BaselineStage)) and not stage.student.config_overrides \
            and not stage.student.from_pretrained
        needs_family = copies_layers or isinstance(stage, (PruneStage, FactorizeStage)) or (
            getattr(stage, "lora", None) is not None and not stage.lora.target_modules)
        if needs_family:
            family = family_of(source.config, what)
            if isinstance(stage, FactorizeStage) and stage.linear is not None:
                roles = family.projection_roles()
                missing = [m for m in stage.linear.modules if m not in roles and not (family.qkv and m in ("query", "key", "value"))]
                if missing:
                    raise DistillError(f"{what}.linear.modules: {family.name} blocks have no {missing[0]!r} layer; "
                                       f"they have {', '.join(roles)}")
        if isinstance(stage, TrimVocabStage):
            kind = tokenizer_kind(folder)
            if kind not in ("wordpiece", "bpe", "unigram"):
                found = f"a {kind} tokenizer" if kind else "no tokenizer.json (a slow tokenizer only)"
                raise DistillError(f"{what}: trims WordPiece, BPE and Unigram fast tokenizers; model type {model_type!r} "
                                   f"has {found}")


def check_stages_for_task(recipe: Recipe, task: TaskSpec) -> None:
    """Stage settings the task cannot support, refused before any stage runs."""
    if task.is_question_answering and recipe.stages:
        # The data, windows, answer extraction and metric exist (distill.data.qa*); the stages do not train QA heads yet.
        raise DistillError(f"stages: task {task.name} is question answering, which the stages do not train yet; "
                           "its data, windows, answers and metric are in distill.data.qa, qa_answers and metrics.qa_metrics")
    for index, stage in enumerate(recipe.stages):
        if task.is_token_classification and getattr(stage, "cache_teacher_logits", False):
            raise DistillError(f"stages[{index}].cache_teacher_logits: the cache keeps one row of logits per input, "
                               f"not per token; task {task.name} is token classification: set it to false")


def check_transfer(recipe, task: TaskSpec, data_dir: str | None) -> None:
    """What can be known before any stage runs: the task supports it and the files exist."""
    for index, stage in enumerate(recipe.stages):
        transfer = getattr(stage, "transfer", None)
        if transfer is None:
            continue
        field = f"stages[{index}].transfer"
        if task.is_token_classification:
            raise DistillError(f"{field}: applies to sentence and pair tasks; task {task.name} is token classification")
        augment = transfer.augment
        if augment is not None and augment.mlm_stage is not None:
            kind = recipe.stage(augment.mlm_stage).kind
            if kind not in ("mlm_head", "general_distill"):
                raise DistillError(f"{field}.augment.mlm_stage: '{augment.mlm_stage}' is a {kind} stage, not a masked LM "
                                   "(an mlm_head or general_distill stage)")
        dirs = default_search_dirs(recipe.data.dir or data_dir)
        for i, name in enumerate(transfer.files):
            resolve_corpus_file(name, dirs, f"{field}.files[{i}]")

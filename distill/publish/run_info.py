"""What a finished run folder (runs/<recipe>/) says about its artifacts: the report, the exact
resolved recipe, which stages hold a model, where each came from, and whether it was evaluated.

Works on the raw report.json / recipe.yaml rather than the pydantic schema, so a run made by
another version of distill (or with stage kinds this version does not know) still publishes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub.utils import filter_repo_objects

from distill import DistillError
from distill.data.tasks import TASKS

# Kinds that build their model from the stage named in `teacher` (a student copied from it).
STUDENT_KINDS = {"distill", "baseline"}
# Kinds that convert their input's weights (new backend or precision) without training.
CONVERSION_KINDS = {"onnx", "bnb", "cast"}
# Kinds that write no model of their own.
NON_MODEL_KINDS = {"publish", "report", "bench"}
# Never part of a published artifact: half-written folders, other seeds' models, trainer state.
PARTIAL_PATTERNS = ["*.partial", "*.partial/*", "seeds/*", "checkpoint-*/*", "optimizer.pt", "scheduler.pt",
                    "rng_state*.pth", "trainer_state.json", "training_args.bin", "__pycache__/*", ".cache/*"]
# Published only when asked (include_logs).
LOG_PATTERNS = ["train_log*.jsonl", "*.log", "events.out.tfevents*", "runs/*"]


@dataclass
class RunInfo:
    run_dir: Path
    report: dict[str, Any]
    recipe: dict[str, Any]  # the parsed recipe.yaml
    recipe_text: str  # recipe.yaml exactly as written by the run
    records: dict[str, dict[str, Any]]  # stage name -> report record, in run order

    def folder(self, stage: str) -> Path:
        return self.run_dir / stage

    def stage_config(self, stage: str) -> dict[str, Any]:
        for cfg in self.recipe.get("stages", []):
            if cfg.get("name") == stage:
                return cfg
        return {"name": stage, "kind": self.records.get(stage, {}).get("kind", "unknown")}

    def stage_names(self) -> list[str]:
        """Stages in recipe order (a stage of the recipe that never ran has no record)."""
        return [cfg["name"] for cfg in self.recipe.get("stages", []) if "name" in cfg]

    def kind(self, stage: str) -> str:
        return self.stage_config(stage).get("kind") or self.records.get(stage, {}).get("kind", "unknown")

    @property
    def task_name(self) -> str:
        return str(self.recipe.get("task") or self.report.get("task"))

    @property
    def is_token_task(self) -> bool:
        """One tag per word (token classification), not one label per text: a built-in task says
        which it is, a custom one through its recipe's data.task_type."""
        task = TASKS.get(self.task_name)
        if task:
            return task.is_token_classification
        return (self.recipe.get("data") or {}).get("task_type") == "token_classification"


def load_run(run_dir: str | Path) -> RunInfo:
    run_dir = Path(run_dir)
    report_path, recipe_path = run_dir / "report.json", run_dir / "recipe.yaml"
    if not run_dir.is_dir():
        raise DistillError(f"{run_dir}: no such run folder")
    if not report_path.is_file() or not recipe_path.is_file():
        raise DistillError(f"{run_dir}: not a distill run folder (needs report.json and recipe.yaml, as `distill run` writes)")
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        recipe_text = recipe_path.read_text(encoding="utf-8")
        recipe = yaml.safe_load(recipe_text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise DistillError(f"{run_dir}: unreadable report.json or recipe.yaml ({err})") from None
    records = {r["stage"]: r for r in report.get("stages", []) if isinstance(r, dict) and "stage" in r}
    return RunInfo(run_dir, report, recipe or {}, recipe_text, records)


# ---------------------------------------------------------------- what a folder holds


def artifact_files(folder: Path, include_logs: bool = False) -> list[str]:
    """The files of an artifact folder that get published, as sorted relative POSIX paths."""
    present = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    ignore = PARTIAL_PATTERNS + ([] if include_logs else LOG_PATTERNS)
    return list(filter_repo_objects(present, ignore_patterns=ignore))


def onnx_files(folder: Path) -> list[str]:
    """ONNX models in an artifact folder, relative paths, quantized ones first."""
    found = [f for f in artifact_files(folder) if f.endswith(".onnx")]
    return sorted(found, key=lambda name: "quantized" not in name)


def has_torch_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (
        any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").is_file()
    )


def is_adapter(folder: Path) -> bool:
    """A PEFT adapter saved on its own (loads on top of its base model)."""
    return (folder / "adapter_config.json").is_file() and any(folder.glob("adapter_model*.safetensors"))


def is_model_folder(folder: Path) -> bool:
    return folder.is_dir() and (has_torch_weights(folder) or is_adapter(folder) or bool(onnx_files(folder)))


def is_model_stage(run: RunInfo, stage: str) -> bool:
    return run.kind(stage) not in NON_MODEL_KINDS and is_model_folder(run.folder(stage))


def default_stage(run: RunInfo, before: str | None = None) -> str:
    """The last stage (before `before`, when given) whose folder holds a model. A `baseline`
    stage is the control experiment, not the product: it is the default only when nothing else is."""
    names = run.stage_names() or list(run.records)
    if before is not None and before in names:
        names = names[: names.index(before)]
    models = [n for n in names if is_model_stage(run, n)]
    if not models:
        raise DistillError(f"{run.run_dir}: no stage with a saved model to publish")
    products = [n for n in models if run.kind(n) != "baseline"]
    return (products or models)[-1]


# ---------------------------------------------------------------- lineage


def parent_stage(run: RunInfo, stage: str) -> str | None:
    """The stage whose model this stage started from; None: the recipe's base model."""
    cfg = run.stage_config(stage)
    kind = cfg.get("kind")
    if cfg.get("input"):
        return cfg["input"]
    names = run.stage_names()
    earlier = names[: names.index(stage)] if stage in names else []
    if kind in STUDENT_KINDS:
        student = cfg.get("student") or {}
        if kind == "baseline" and student.get("init_from") == "pretrained" and not student.get("from_pretrained"):
            return None  # hard labels on the base model's layers: no teacher involved
        teacher = cfg.get("teacher") or run.records.get(stage, {}).get("teacher")
        if teacher:
            return teacher
        teachers = [n for n in earlier if run.kind(n) == "teacher"]
        return teachers[-1] if teachers else None
    if kind == "teacher":
        return None
    models = [n for n in earlier if is_model_stage(run, n)]
    return models[-1] if models else None


def lineage(run: RunInfo, stage: str) -> list[str]:
    """Stages from the first one built on the base model down to `stage`."""
    chain = [stage]
    while (parent := parent_stage(run, chain[-1])) is not None:
        if parent in chain:  # a malformed recipe: stop rather than loop
            break
        chain.append(parent)
    return chain[::-1]


def teacher_record(run: RunInfo, chain: list[str]) -> dict[str, Any] | None:
    """The record the card's "share of teacher" compares against: the report's reference stage,
    else the teacher stage in the lineage, else the run's first teacher stage."""
    reference = run.report.get("reference")
    if reference in run.records:
        return run.records[reference]
    for name in chain + list(run.records):
        if run.kind(name) == "teacher" and name in run.records:
            return run.records[name]
    return None


# ---------------------------------------------------------------- evaluation


def require_evaluation(run: RunInfo, stage: str) -> dict[str, Any]:
    """The stage's evaluation record (its metrics.json); refuses an artifact never evaluated."""
    if stage not in run.stage_names() and stage not in run.records:
        known = ", ".join(n for n in run.stage_names() if is_model_stage(run, n)) or "none"
        raise DistillError(f"stage '{stage}': not a stage of {run.run_dir} (stages with a model: {known})")
    if not is_model_stage(run, stage):
        raise DistillError(f"stage '{stage}': {run.folder(stage)} holds no saved model to publish")
    path = run.folder(stage) / "metrics.json"
    if not path.is_file():
        raise DistillError(f"stage '{stage}': {path} is missing; an artifact is published only with its evaluation")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise DistillError(f"stage '{stage}': {path} is not valid JSON") from None
    value = record.get("metric_value") if isinstance(record, dict) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise DistillError(f"stage '{stage}': {path} has no metric_value; evaluate the artifact before publishing it")
    if record.get("failed_check"):  # e.g. a quantized copy that lost more than max_metric_drop
        raise DistillError(f"stage '{stage}': its artifact failed a check of the run and is not published ({record['failed_check']})")
    run.records[stage] = {**run.records.get(stage, {}), **record}
    return run.records[stage]


def artifact_metrics(record: dict[str, Any]) -> tuple[dict[str, float], int | None]:
    """The metrics of the saved artifact itself. A multi-seed stage reports the mean over seeds
    but saves the first seed's model: the model-index must carry that model's own numbers."""
    seed = record.get("artifact_seed")
    for run in record.get("seeds") or []:
        if seed is not None and run.get("seed") == seed and run.get("metrics"):
            return dict(run["metrics"]), seed
    metrics = dict(record.get("metrics") or {})
    metrics.setdefault(record["metric"], record["metric_value"])
    return metrics, record.get("seed")

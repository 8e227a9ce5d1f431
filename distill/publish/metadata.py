"""The Hub metadata of a published artifact's card: base model and how the artifact relates to
it, tags from the stages that made it, and the model-index (one result per metric of the
artifact on the task's validation split; for token classification, seqeval's entity-level scores
and per-token accuracy)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from distill.data.tasks import TASKS, TaskSpec
from distill.publish.run_info import (
    STUDENT_KINDS,
    RunInfo,
    artifact_metrics,
    has_torch_weights,
    is_adapter,
    lineage,
    onnx_files,
)

# Our offline aliases -> the Hub id of the same model (the card's base_model).
BASE_MODEL_HUB_IDS = {
    "minilm-l6": "sentence-transformers/all-MiniLM-L6-v2",
    "all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
}
KIND_TAGS = {
    "distill": ["distillation", "knowledge-distillation"],
    "lora": ["lora", "peft"],
    "factorize": ["low-rank", "factorization"],
    "trim_vocab": ["vocabulary-trimming"],
    "bnb": ["quantization", "bitsandbytes"],
    "onnx": ["onnx"],
}
QUANTIZED_PRECISIONS = {"int8", "int4", "nf4", "fp4", "uint8"}
HUB_METRIC_TYPES = {"pearson": "pearsonr", "f1_macro": "f1"}  # our metric keys -> Hub metric ids
# Token runs: the model-index holds seqeval's micro scores under the Hub's metric ids, named for what
# they are; the per-type F1 ("f1_<type>") stays in the card's body.
SEQEVAL_METRIC_NAMES = {"f1": "seqeval entity-level micro F1", "precision": "seqeval entity-level micro precision",
                        "recall": "seqeval entity-level micro recall", "accuracy": "per-token accuracy"}
GLUE_TITLES = {"sst2": "SST-2", "mrpc": "MRPC", "cola": "CoLA", "stsb": "STS-B", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI"}
OTHER_TITLES = {"wnut17": "WNUT 17"}


def base_model_id(recipe: dict[str, Any]) -> str | None:
    """The Hub id the run started from; None for a local folder (nothing on the Hub to link)."""
    name = str((recipe.get("model") or {}).get("model") or "")
    if name in BASE_MODEL_HUB_IDS:
        return BASE_MODEL_HUB_IDS[name]
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name) and not Path(name).exists():
        return name
    return None


def is_quantizing(run: RunInfo, name: str) -> bool:
    """Whether the stage stored its weights in fewer bits: its record's precision (the quantization
    stages write it), an int8 ONNX graph (ort_config.json says so), or a bitsandbytes stage."""
    kind, folder = run.kind(name), run.folder(name)
    if str(run.records.get(name, {}).get("precision")) in QUANTIZED_PRECISIONS or kind == "bnb" or "quant" in kind:
        return True
    from distill.quantize.ort_session import is_quantized

    return bool(onnx_files(folder)) and is_quantized(folder)


def stage_tags(run: RunInfo, chain: list[str]) -> list[str]:
    tags: list[str] = []
    for name in chain:
        kind = run.kind(name)
        tags += KIND_TAGS.get(kind, [])
        if "prune" in kind:
            tags.append("pruning")
        if is_quantizing(run, name):
            tags.append("quantization")
        if kind in ("onnx", "bnb", "cast") and run.records.get(name, {}).get("precision"):
            tags.append(str(run.records[name]["precision"]))  # int8, nf4, float16 ...
    return tags


def base_model_relation(run: RunInfo, chain: list[str]) -> str | None:
    """How the artifact relates to the base model, in the Hub's vocabulary (adapter, quantized,
    finetune); None when none applies (e.g. pruned without any training)."""
    folder = run.folder(chain[-1])
    if is_adapter(folder) and not has_torch_weights(folder):
        return "adapter"
    if any(run.kind(n) in STUDENT_KINDS or (run.records.get(n, {}).get("train_steps") or 0) > 0 for n in chain):
        return "finetune"
    if any(is_quantizing(run, n) for n in chain):
        return "quantized"
    return None


def task_title(task_name: str) -> str:
    return f"GLUE {GLUE_TITLES[task_name]}" if task_name in GLUE_TITLES else OTHER_TITLES.get(task_name, task_name)


def hub_task(run: RunInfo) -> tuple[str, str]:
    """The Hub's pipeline tag and task name for what the run's models do."""
    if run.is_token_task:
        return "token-classification", "Token Classification"
    return "text-classification", "Text Classification"


def task_tags(task: TaskSpec | None) -> list[str]:
    """The built-in task's benchmark family and name (custom tasks: none)."""
    if task is None:
        return []
    family = ["ner"] * bool(task.entity_types) if task.is_token_classification else ["glue"]
    return family + [task.name]


def eval_split(recipe: dict[str, Any]) -> str:
    limit = (recipe.get("data") or {}).get("eval_limit")
    return "validation" if not limit else f"validation (random {limit}-example subset)"


def eval_results(run: RunInfo, stage: str) -> list[EvalResult]:
    """One result per metric of the published artifact on the task's validation split."""
    task_name = run.task_name
    task = TASKS.get(task_name)
    metrics, _ = artifact_metrics(run.records[stage])
    primary = run.records[stage]["metric"]
    dataset = {"dataset_type": task_name, "dataset_name": task_name}
    if task and task.hub_dataset:
        hub_id, config = task.hub_dataset
        dataset = {"dataset_type": hub_id, "dataset_name": task_title(task_name), "dataset_config": config}
    names = SEQEVAL_METRIC_NAMES if run.is_token_task else {m: m.replace("_", " ") for m in metrics}
    ordered = [primary] + [m for m in names if m != primary]
    task_type, task_type_name = hub_task(run)
    return [
        EvalResult(
            task_type=task_type,
            task_name=task_type_name,
            dataset_split=eval_split(run.recipe),
            metric_type=HUB_METRIC_TYPES.get(m, m),
            metric_name=names[m],
            metric_value=round(float(metrics[m]), 6),
            **dataset,
        )
        for m in ordered
        if isinstance(metrics.get(m), (int, float))
    ]


def card_data(run: RunInfo, stage: str, repo_id: str, license: str = "apache-2.0") -> ModelCardData:
    chain = lineage(run, stage)
    folder = run.folder(stage)
    base = base_model_id(run.recipe)
    task = TASKS.get(run.task_name)
    pipeline_tag, _ = hub_task(run)
    library = "transformers" if has_torch_weights(folder) or is_adapter(folder) else "onnx"
    tags = ["distill", pipeline_tag] + stage_tags(run, chain) + (["onnx"] if onnx_files(folder) else [])
    extra: dict[str, Any] = {}
    relation = base_model_relation(run, chain) if base else None
    if relation:
        extra["base_model_relation"] = relation
    results = eval_results(run, stage)
    return ModelCardData(
        model_name=repo_id.split("/")[-1],
        base_model=base,
        datasets=[task.hub_dataset[0]] if task and task.hub_dataset else None,
        language="en" if task else None,
        library_name=library,
        license=license,
        pipeline_tag=pipeline_tag,
        tags=tags + task_tags(task),
        metrics=sorted({r.metric_type for r in results} | ({"seqeval"} if run.is_token_task else set())),
        eval_results=results,
        **extra,
    )

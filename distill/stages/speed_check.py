"""Before any stage trains: a prune stage's speed target against the untrained architectures.

Latency depends on shapes, not weights, so the run can refuse a target no allowed shape can meet
before it spends hours training the teacher and the student it would prune.
"""

from __future__ import annotations

from pathlib import Path

import torch

from distill.recipe import PruneStage, TeacherStage
from distill.reporting.bench import split_texts
from distill.stages.speed_target import (
    ShippedForm,
    budgets_ms,
    fit_latency,
    layers_kept_by_search,
    propose,
    reference_name,
    require_unpruned,
    shipping_stage,
)


def check_speed_targets(ctx, stages: list[PruneStage], finished: dict[str, Path]) -> None:
    """Before any stage trains: refuse, in one line, a speed target that no allowed shape can meet.
    Latency depends on shapes, not weights, so the untrained architectures stand in for artifacts
    not yet made (a teacher: the starting model; a distill or baseline student: its layer copy).
    Targets whose input or reference cannot be built yet are checked when their stage starts."""
    from distill.stages.inputs import calibration_examples

    for stage in stages:
        field = f"stages[{ctx.recipe.stages.index(stage)}]"
        model, reference = _built_before_training(ctx, ctx.input_name(stage), finished), \
            _built_before_training(ctx, reference_name(ctx.recipe, stage), finished)
        if model is None or reference is None:
            ctx.accelerator.print(f"[{stage.name}] speed target: checked when the stage starts (its input or reference is built later)")
            continue
        onnx_stage = shipping_stage(ctx.recipe, stage)
        calibration = calibration_examples(ctx, onnx_stage.calibration_examples, ctx.tokenizer) if onnx_stage else None
        form = ShippedForm(ctx.recipe, onnx_stage, ctx.tokenizer, calibration)
        batch_sizes = sorted(stage.target.budgets)
        texts = split_texts(ctx.task, ctx.data.raw_validation, max(batch_sizes))
        latency, reference_ms, _ = fit_latency(form, model, reference, texts, batch_sizes, field)
        budgets = budgets_ms(stage, reference_ms)
        n_layers, n_heads, n_neurons = require_unpruned(model, field)
        best = propose(stage, torch.ones(n_layers, n_heads), [torch.ones(n_neurons)] * n_layers, latency, budgets, field,
                       layers_kept_by_search(model))[0]
        ctx.accelerator.print(f"[{stage.name}] speed target reachable: e.g. {best.shape.depth} layers, {best.shape.total_heads} heads, "
                              f"{best.shape.total_neurons} FFN neurons predicted at "
                              + ", ".join(f"{ms:.2f} ms (budget {budgets[b]:.2f}) at batch {b}" for b, ms in zip(batch_sizes, best.predicted_ms_each)))


def _built_before_training(ctx, name: str, finished: dict[str, Path]):
    """A stage's model as it will be shaped: its artifact when finished, else its untrained
    architecture when the recipe says what it is, else None."""
    from distill.models.loading import load_model_source
    from distill.models.student import build_student
    from distill.quantize.artifacts import load_artifact, load_task_model
    from distill.recipe import BaselineStage, DistillStage

    if name in finished:
        return load_artifact(finished[name])[0]
    stage = ctx.recipe.stage(name)
    if isinstance(stage, TeacherStage) and stage.input is None:
        return load_model_source(ctx.recipe.model, ctx.task, load=load_task_model)
    if isinstance(stage, (DistillStage, BaselineStage)) and getattr(stage, "input", None) is None:
        return build_student(stage.student, load_model_source(ctx.recipe.model, ctx.task, load=load_task_model), ctx.task,
                             load=load_task_model)
    return None

"""Stage `teacher`: fine-tune the recipe's model on the task (or only evaluate it)."""

from __future__ import annotations

import time
from pathlib import Path

from accelerate.utils import (
    set_seed,  # transformers.set_seed lives in trainer_utils, which imports peft and bitsandbytes (seconds)
)

from distill.lowrank.lora import finish_lora, with_lora
from distill.models.loading import load_model_source
from distill.quantize.artifacts import load_task_model
from distill.recipe import TeacherStage
from distill.stages.common import finish_stage, require_run_vocabulary, save_artifact, scored_in_training, stage_record
from distill.stages.context import RunContext, resumable_partial_dir
from distill.training import checkpoints
from distill.training.loop import train_model
from distill.training.steps import hard_label_step


def run_teacher_stage(ctx: RunContext, stage: TeacherStage, out_dir: Path, stage_hash: str) -> dict:
    started = time.perf_counter()
    set_seed(ctx.recipe.seed)
    if stage.input is not None:  # an earlier stage's model, e.g. a general (masked-LM) student: fresh task head
        require_run_vocabulary(ctx, ctx.input_dir(stage), f"stages[{ctx.recipe.stages.index(stage)}].input")
        model = load_task_model(str(ctx.input_dir(stage)), ctx.task, new_head_ok=True)
    else:
        model = load_model_source(ctx.recipe.model, ctx.task, load=load_task_model)
    partial = resumable_partial_dir(ctx, out_dir, stage_hash)
    outcome, lora = None, None
    if not stage.skip_training:
        model = with_lora(model, stage.lora, f"stages[{ctx.recipe.stages.index(stage)}].lora")
        model, outcome = train_model(
            model,
            ctx.data.train,
            cfg=stage.train,
            accelerator=ctx.accelerator,
            collator=ctx.data.collator,
            step_loss=hard_label_step(ctx.task.is_regression),
            evaluate=lambda m: ctx.evaluate(m, ctx.data.selection),
            primary_metric=ctx.task.primary_metric,
            seed=ctx.recipe.seed,
            log_path=partial / "train_log.jsonl",
            description=stage.name,
            checkpoint_dir=partial / "checkpoints",
        )
        checkpoints.remove(partial / "checkpoints", ctx.accelerator)
        model, lora = finish_lora(model, stage.lora, partial, ctx.accelerator)  # merged; adapter kept if asked
    metrics = scored_in_training(ctx, outcome, computes_as_saved=stage.lora is None) or ctx.evaluate(model)
    save_artifact(ctx, model, partial)
    record = stage_record(ctx, stage, model, metrics, outcome, partial)
    if lora:
        record["lora"] = lora
    return finish_stage(ctx, partial, out_dir, record, stage_hash=stage_hash, started=started)

"""Stages `distill` and `baseline`: train a DistilBERT-style student from a teacher.

`distill` uses the full objective (soft targets, hard labels, hidden cosine, optional hidden MSE
and attention KL); `baseline` trains the identical student on hard labels only, so the report
shows what knowledge distillation itself bought. Several seeds give a mean and a spread.
"""

from __future__ import annotations

import time
from pathlib import Path

from accelerate.utils import (
    set_seed,  # transformers.set_seed lives in trainer_utils, which imports peft and bitsandbytes (seconds)
)

from distill import DistillError
from distill.lowrank.lora import finish_lora, with_lora
from distill.models.loading import load_model_source
from distill.models.sources import resolve_model_path
from distill.models.student import build_student
from distill.quantize.artifacts import load_task_model
from distill.recipe import BaselineStage, DistillStage, TeacherStage
from distill.stages.common import check_reload, save_artifact, scored_in_training, stage_record, write_stage_files
from distill.stages.context import RunContext, commit_stage_dir, resumable_partial_dir
from distill.stages.seeds import aggregate_seeds, pending_seeds, record_seed
from distill.training import checkpoints
from distill.training.loop import train_model
from distill.training.steps import distillation_loss, distillation_step, hard_label_step
from distill.training.teacher_cache import cached_distillation_step, teacher_logits, with_example_index
from distill.training.transfer import with_transfer_set


def teacher_stage_name(ctx: RunContext, stage: DistillStage | BaselineStage) -> str | None:
    """The stage whose model teaches: the one named, else the last teacher stage before this one."""
    if stage.teacher is not None:
        return stage.teacher
    earlier = ctx.recipe.stages[: ctx.recipe.stages.index(stage)]
    teachers = [s.name for s in earlier if isinstance(s, TeacherStage)]
    return teachers[-1] if teachers else None


def teacher_dir(ctx: RunContext, stage) -> Path:
    name = teacher_stage_name(ctx, stage)
    return Path(ctx.outputs[name]) if name is not None else Path(resolve_model_path(ctx.recipe.model.model))


def load_teacher(ctx: RunContext, stage, attn_implementation: str | None = None):
    name = teacher_stage_name(ctx, stage)
    if name is None:  # no teacher stage: the recipe's model must already be tuned on the task
        return load_model_source(ctx.recipe.model, ctx.task, load=load_task_model, attn_implementation=attn_implementation)
    return load_task_model(str(ctx.outputs[name]), ctx.task, attn_implementation=attn_implementation)


def run_distill_stage(ctx: RunContext, stage: DistillStage | BaselineStage, out_dir: Path, stage_hash: str) -> dict:
    started = time.perf_counter()
    is_kd = stage.kind == "distill"
    needs_attention = is_kd and stage.loss.alpha_attention > 0
    # Attention probabilities are only returned by the eager implementation (not SDPA).
    attn = "eager" if needs_attention else None
    starts_from_teacher = stage.student.init_from == "teacher" or stage.student.from_pretrained or stage.student.config_overrides
    # A hard-label student built from the pre-trained model needs no teacher (nor its stage finished).
    teacher = None
    if is_kd or starts_from_teacher:
        teacher = load_teacher(ctx, stage, attn_implementation=attn).to(ctx.accelerator.device).eval()
    init_model = teacher if starts_from_teacher else load_model_source(ctx.recipe.model, ctx.task, load=load_task_model, attn_implementation=attn)

    train_data, logits_table, cache_info, transfer_info = ctx.data.train, None, {}, {}
    if is_kd and stage.transfer is not None:  # a baseline stage has no transfer set (nor loss)
        train_data, transfer_info = with_transfer_set(ctx, stage)
    # A transfer set's logits are cached whenever the objective allows it (logits only): the
    # teacher then runs once over the extra inputs instead of once per epoch and seed.
    logits_only = is_kd and not (stage.loss.alpha_cos or stage.loss.alpha_hidden or stage.loss.alpha_attention)
    if is_kd and (stage.cache_teacher_logits or (stage.transfer is not None and logits_only)):
        cache_dir = Path(ctx.recipe.output_dir) / ".teacher_cache"
        logits_table, cache_info = teacher_logits(teacher, teacher_dir(ctx, stage), train_data, ctx.data.collator,
                                                  stage.train.eval_batch_size, ctx.accelerator, cache_dir)
        train_data = with_example_index(train_data)

    seeds = stage.seeds or [ctx.recipe.seed]
    partial = resumable_partial_dir(ctx, out_dir, stage_hash)
    runs: list[dict] = []
    for seed, folder in pending_seeds(partial, seeds, runs):
        set_seed(seed)
        student = build_student(stage.student, init_model, ctx.task, load=load_task_model)
        if attn:
            student.set_attn_implementation("eager")
        student = with_lora(student, stage.lora, f"stages[{ctx.recipe.stages.index(stage)}].lora")
        step, extra = hard_label_step(ctx.task.is_regression), []
        if is_kd:
            loss_fn = distillation_loss(stage.loss, ctx.task, student, teacher)
            if loss_fn.needs_attentions and student.config.num_attention_heads != teacher.config.num_attention_heads:
                raise DistillError(f"stages.{stage.name}.loss.alpha_attention: student and teacher head counts differ")
            step = distillation_step(teacher, loss_fn) if logits_table is None else cached_distillation_step(logits_table, loss_fn)
            extra = [loss_fn]
        student, outcome = train_model(
            student,
            train_data,
            cfg=stage.train,
            accelerator=ctx.accelerator,
            collator=ctx.data.collator,
            step_loss=step,
            evaluate=lambda m: ctx.evaluate(m, ctx.data.selection),
            primary_metric=ctx.task.primary_metric,
            seed=seed,
            log_path=folder / "train_log.jsonl",
            description=f"{stage.name} seed {seed}",
            extra_modules=extra,
            checkpoint_dir=folder / "checkpoints",
        )
        checkpoints.remove(folder / "checkpoints", ctx.accelerator)
        student, lora = finish_lora(student, stage.lora, folder, ctx.accelerator)  # merged; adapter kept if asked
        save_artifact(ctx, student, folder)
        reloaded = load_task_model(str(folder), ctx.task).to(ctx.accelerator.device)
        # Scored as saved and reloaded: the reload's attention kernel (sdpa) is not the eager one the
        # attention loss trained with, and they can split a borderline example differently. Where
        # training already scored these very weights on dev, the reload is only checked.
        metrics = scored_in_training(ctx, outcome, computes_as_saved=not attn and stage.lora is None)
        if metrics is None:
            metrics = ctx.evaluate(reloaded)
        else:
            check_reload(ctx, student, reloaded, folder)
        run = stage_record(ctx, stage, student, metrics, outcome, folder)
        run["seed"] = seed
        if lora:
            run["lora"] = lora
        record_seed(ctx, folder, run, runs)
        ctx.accelerator.print(f"[{stage.name}] seed {seed}: {ctx.task.primary_metric} = {run['metric_value']:.4f}")

    record = aggregate_seeds(runs)
    record.update(
        stage_hash=stage_hash,
        wall_seconds=time.perf_counter() - started,
        teacher=teacher_stage_name(ctx, stage),
        student_layers=stage.student.layers,
        student_init=stage.student.init_from,
    )
    if is_kd:
        record["loss"] = stage.loss.model_dump()
        record.update({f"teacher_{k}": v for k, v in cache_info.items()})
        if transfer_info:
            record["transfer"] = {**stage.transfer.model_dump(), **transfer_info}
    write_stage_files(ctx, partial, record)
    commit_stage_dir(ctx, partial, out_dir)
    return record



"""Stages `factorize` and `trim_vocab`.

`factorize` replaces the chosen linear layers (and/or the word embeddings) of the input stage's
model by truncated SVDs, then optionally trains to recover (distilling from the stage's teacher,
or on hard labels). `trim_vocab` keeps only the tokens the task's data uses and shrinks the
tokenizer and word embeddings to match.

Vocabularies: the pipeline tokenizes the task data once, with the recipe model's tokenizer. A
model whose vocabulary was trimmed by an earlier stage takes other ids, so these stages feed it
the data through `InputIdMap` and save its artifact with its own tokenizer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from accelerate.utils import (
    set_seed,  # transformers.set_seed lives in trainer_utils, which imports peft and bitsandbytes (seconds)
)
from torch import nn

from distill import DistillError
from distill.lowrank.factorize import RankRule, factorize_model, factorized_ranks, linear_flops_per_token
from distill.lowrank.vocab import InputIdMap, fed_ids_of, token_counts, token_id_map, tokens_to_keep, trim_vocabulary
from distill.models.loading import count_parameters, load_tokenizer
from distill.quantize.artifacts import load_task_model
from distill.recipe import FactorizeStage, TrimVocabStage
from distill.stages.common import finish_stage, save_artifact, stage_record
from distill.stages.context import RunContext, fresh_partial_dir, resumable_partial_dir
from distill.stages.recovery import recovery_teacher_name, train_recovery
from distill.training import checkpoints
from distill.training.steps import distillation_loss, distillation_step, hard_label_step

FLOPS_COUNTED = ("FLOPs per token of the encoder's linear layers (2 x in x out each; 2 x rank x (in + out) once "
                 "factorized), computed from their shapes, plus the factorized word embeddings' projection; "
                 "attention score products, pooler and classifier not counted")


def _field(ctx: RunContext, stage) -> str:
    return f"stages[{ctx.recipe.stages.index(stage)}]"


def _input(ctx: RunContext, stage, attn: str | None = None):
    """(folder, model, its tokenizer, its report record) of the stage's input artifact."""
    folder = ctx.input_dir(stage)
    record_file = folder / "metrics.json"
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    model = load_task_model(str(folder), ctx.task, attn_implementation=attn)
    return folder, model, load_tokenizer(str(folder)), record


def _unwrapped(model: nn.Module) -> nn.Module:
    return model.model if isinstance(model, InputIdMap) else model


# ---------------------------------------------------------------- factorize


def _recover(ctx: RunContext, stage: FactorizeStage, student, teacher, folder: Path):
    recovery = stage.recovery
    step, extra = hard_label_step(ctx.task.is_regression), []
    if teacher is not None:
        loss_fn = distillation_loss(recovery.loss, ctx.task, student, teacher)
        step, extra = distillation_step(teacher, loss_fn), [loss_fn]
    student, outcome, check = train_recovery(ctx, student, cfg=recovery.train, step=step, extra=extra,
                                             log_path=folder / "train_log.jsonl", description=f"{stage.name} recovery",
                                             checkpoint_dir=folder / "checkpoints")
    checkpoints.remove(folder / "checkpoints", ctx.accelerator)
    return student, outcome, check


def _rule(spec) -> RankRule | None:
    return None if spec is None else RankRule(energy=spec.energy, rank=spec.rank, ratio=spec.ratio)


def run_factorize_stage(ctx: RunContext, stage: FactorizeStage, out_dir: Path, stage_hash: str) -> dict:
    started = time.perf_counter()
    set_seed(ctx.recipe.seed)
    field = _field(ctx, stage)
    recovery = stage.recovery
    # Attention probabilities (the attention KL term) come only from the eager implementation.
    attn = "eager" if recovery is not None and recovery.distill and recovery.loss.alpha_attention > 0 else None
    source, model, tokenizer, input_record = _input(ctx, stage, attn)
    params_before, flops_before = count_parameters(model), linear_flops_per_token(model)
    try:
        result = factorize_model(
            model,
            modules=stage.linear.modules if stage.linear is not None else (),
            linear_rule=_rule(stage.linear),
            embedding_rule=_rule(stage.embeddings),
        )
    except DistillError as err:
        raise DistillError(f"{field} ({stage.name}): {err}") from None
    if not result.ranks:
        ctx.accelerator.print(f"[{stage.name}] {field}: no layer factorized (every chosen rank would not save parameters)")
    device = ctx.accelerator.device
    student = fed_ids_of(model.to(device), tokenizer, ctx.tokenizer)
    partial = resumable_partial_dir(ctx, out_dir, stage_hash)
    teacher_name, outcome, recovery_check = None, None, None
    if stage.recovery is not None:
        teacher = None
        if stage.recovery.distill:
            teacher_name = recovery_teacher_name(ctx, stage)
            teacher_dir = ctx.outputs[teacher_name]
            teacher = load_task_model(str(teacher_dir), ctx.task, attn_implementation=attn).to(device).eval()
            teacher = fed_ids_of(teacher, load_tokenizer(str(teacher_dir)), ctx.tokenizer)
        student, outcome, recovery_check = _recover(ctx, stage, student, teacher, partial)
    model = _unwrapped(student).eval()
    metrics = ctx.evaluate(model, tokenizer=tokenizer)  # on text tokenized its own way, as users run it
    save_artifact(ctx, model, partial, tokenizer)
    record = stage_record(ctx, stage, model, metrics, None, partial)
    if outcome is not None:
        record.update(
            train_seconds=outcome.train_seconds,
            samples_per_second=outcome.samples_per_second,
            train_steps=outcome.steps,
            best_step=outcome.best_step,
            checkpoint_selected_on=("train holdout" if ctx.recipe.data.holdout_size else "validation") if stage.recovery.train.keep_best else None,
            recovery=recovery_check,
        )
    flops_after = linear_flops_per_token(model)
    record.update(
        params_before=params_before,
        params_after=record["params"],
        flops_per_token_before=flops_before,
        flops_per_token_after=flops_after,
        flops_reduction=1 - flops_after / flops_before if flops_before else 0.0,
        flops_counted=FLOPS_COUNTED,
        ranks=factorized_ranks(model),
        kept_dense=result.kept_dense,
        input=source.name,
        input_metric_value=(input_record.get("metrics") or {}).get(ctx.task.primary_metric, input_record.get("metric_value")),
        teacher=teacher_name,
    )
    return finish_stage(ctx, partial, out_dir, record, stage_hash=stage_hash, started=started,
                        note=f"{len(result.ranks)} layer(s) factorized; params {params_before:,} -> {record['params']:,}; "
                             f"linear FLOPs/token {-100 * record['flops_reduction']:+.1f}%")


# ---------------------------------------------------------------- trim_vocab


def _task_token_ids(ctx: RunContext):
    """Token ids of the training examples (the train holdout too, when there is one). Never the
    validation split's: a vocabulary kept for the reported split would score it as no unseen text
    is scored (on WNUT-17, whose entities are new words by design, that hid 9 test F1 points)."""
    splits = [ctx.data.train]
    if ctx.data.selection is not ctx.data.validation:
        splits.append(ctx.data.selection)
    for split in splits:
        yield from split["input_ids"]


def run_trim_vocab_stage(ctx: RunContext, stage: TrimVocabStage, out_dir: Path, stage_hash: str) -> dict:
    started = time.perf_counter()
    source, model, tokenizer, input_record = _input(ctx, stage)
    run_counts = token_counts(_task_token_ids(ctx), len(ctx.tokenizer))
    id_map = token_id_map(ctx.tokenizer, tokenizer).numpy()  # the identity unless the input was trimmed before
    counts = np.bincount(id_map[: len(run_counts)], weights=run_counts, minlength=len(tokenizer)).astype(np.int64)
    keep = tokens_to_keep(tokenizer, counts, max_tokens=stage.max_tokens, min_count=stage.min_count, characters=stage.characters)
    params_before = count_parameters(model)
    embedding_before = model.get_input_embeddings().weight.numel()
    vocab_before = len(tokenizer)
    model, trimmed = trim_vocabulary(model, tokenizer, keep)
    metrics = ctx.evaluate(model.to(ctx.accelerator.device), tokenizer=trimmed)  # dev text through the new tokenizer
    partial = fresh_partial_dir(ctx, out_dir)
    save_artifact(ctx, model, partial, trimmed)
    record = stage_record(ctx, stage, model, metrics, None, partial)
    record.update(
        params_before=params_before,
        params_after=record["params"],
        vocab_before=vocab_before,
        vocab_after=len(trimmed),
        embedding_params_before=embedding_before,
        embedding_params_after=model.get_input_embeddings().weight.numel(),
        input=source.name,
        input_metric_value=(input_record.get("metrics") or {}).get(ctx.task.primary_metric, input_record.get("metric_value")),
    )
    return finish_stage(ctx, partial, out_dir, record, stage_hash=stage_hash, started=started,
                        note=f"vocabulary {vocab_before:,} -> {len(trimmed):,}; params {params_before:,} -> {record['params']:,}")


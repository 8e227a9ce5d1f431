"""Stages `mlm_head` (give the teacher a trained MLM head) and `general_distill` (MLM teacher ->
general student on raw text). Both write a masked-LM folder (from_pretrained / fill-mask
loadable) and a record whose metric is the held-out perplexity, measured on the same fixed masks
for every model, so the teacher's and the student's numbers compare."""

from __future__ import annotations

import time
from pathlib import Path

from accelerate.utils import (
    set_seed,  # transformers.set_seed lives in trainer_utils, which imports peft and bitsandbytes (seconds)
)

from distill import DistillError
from distill.data.corpus import Corpus, load_corpus
from distill.data.files import default_search_dirs
from distill.data.masking import fixed_mask_batches, mlm_collator
from distill.models.loading import count_parameters, weights_size_bytes
from distill.models.mlm import freeze_body, load_mlm_model, pooler_weights, save_masked_lm
from distill.models.student import build_student
from distill.recipe import GeneralDistillStage, MlmHeadStage
from distill.stages.common import finish_stage
from distill.stages.context import RunContext, resumable_partial_dir
from distill.training import checkpoints
from distill.training.loop import TrainOutcome, train_model
from distill.training.mlm import general_distillation_step, masked_perplexity, mlm_step, representation_loss

SELECTION_METRIC = "neg_perplexity"  # train_model keeps the highest value


def _field(ctx: RunContext, stage, name: str) -> str:
    return f"stages[{ctx.recipe.stages.index(stage)}].{name}"


def _corpus(ctx: RunContext, stage) -> tuple[Corpus, list[dict]]:
    """Training blocks, and the held-out blocks masked once with the corpus' fixed seed."""
    corpus = load_corpus(stage.corpus, ctx.tokenizer, seed=ctx.recipe.seed, field=_field(ctx, stage, "corpus"),
                         search_dirs=default_search_dirs(ctx.recipe.data.dir))
    # Batches of the training size: vocabulary-sized logits make large eval batches costly in memory.
    held_out = fixed_mask_batches(corpus.holdout, ctx.tokenizer, mlm_probability=stage.corpus.mlm_probability,
                                  seed=stage.corpus.eval_mask_seed, batch_size=stage.train.batch_size)
    return corpus, held_out


def _train(ctx: RunContext, stage, model, corpus: Corpus, held_out: list[dict], step, folder: Path, extra=()):
    model, outcome = train_model(
        model,
        corpus.train,
        cfg=stage.train,
        accelerator=ctx.accelerator,
        collator=mlm_collator(ctx.tokenizer, stage.corpus.mlm_probability),
        step_loss=step,
        evaluate=lambda m: {SELECTION_METRIC: -masked_perplexity(m, held_out)["perplexity"]},
        primary_metric=SELECTION_METRIC,
        seed=ctx.recipe.seed,
        log_path=folder / "train_log.jsonl",
        description=stage.name,
        extra_modules=list(extra),
        checkpoint_dir=folder / "checkpoints",
    )
    checkpoints.remove(folder / "checkpoints", ctx.accelerator)
    return model, outcome


def general_record(stage, model, folder: Path, outcome: TrainOutcome | None, metrics: dict, corpus: Corpus) -> dict:
    """The report record: metric is the held-out masked-LM perplexity (lower is better)."""
    return {
        "stage": stage.name,
        "kind": stage.kind,
        "metric": "perplexity",
        "metric_value": metrics["perplexity"],
        "perplexity": metrics["perplexity"],
        "metrics": metrics,
        "params": count_parameters(model),
        "size_bytes": weights_size_bytes(folder),
        "train_seconds": outcome.train_seconds if outcome else 0.0,
        "samples_per_second": outcome.samples_per_second if outcome else None,
        "train_steps": outcome.steps if outcome else 0,
        "best_step": outcome.best_step if outcome else None,
        "checkpoint_selected_on": "held-out blocks" if outcome and stage.train.keep_best else None,
        "corpus": corpus.stats,
    }


def _save(ctx: RunContext, model, folder: Path, extra_weights: dict) -> None:
    if ctx.accelerator.is_main_process:
        save_masked_lm(model, ctx.tokenizer, folder, extra_weights)
    ctx.accelerator.wait_for_everyone()


def run_mlm_head_stage(ctx: RunContext, stage: MlmHeadStage, out_dir: Path, stage_hash: str) -> dict:
    started = time.perf_counter()
    set_seed(ctx.recipe.seed)
    source = ctx.recipe.model
    corpus, held_out = _corpus(ctx, stage)
    options = {"allow_pickle": source.allow_pickle, "trust_remote_code": source.trust_remote_code, "revision": source.revision}
    model, head_from_checkpoint = load_mlm_model(source.model, require_head=False, field="model.model", **options)
    pooler = pooler_weights(source.model, model, **options)
    model.to(ctx.accelerator.device)
    before = masked_perplexity(model, held_out)
    if not stage.train_body:
        freeze_body(model)
    partial = resumable_partial_dir(ctx, out_dir, stage_hash)
    model, outcome = _train(ctx, stage, model, corpus, held_out, mlm_step, partial)
    model.requires_grad_(True)
    metrics = masked_perplexity(model, held_out)
    metrics["perplexity_before"] = before["perplexity"]
    _save(ctx, model, partial, pooler)
    record = general_record(stage, model, partial, outcome, metrics, corpus)
    record.update(head_from_checkpoint=head_from_checkpoint, trained="head and body" if stage.train_body else "head")
    ctx.accelerator.print(f"[{stage.name}] held-out perplexity {before['perplexity']:.1f} -> {metrics['perplexity']:.2f}")
    return finish_stage(ctx, partial, out_dir, record, stage_hash=stage_hash, started=started)


def mlm_teacher_source(ctx: RunContext, stage: GeneralDistillStage) -> tuple[str, str | None]:
    """(model path or id, stage name): the named stage, else the last mlm_head stage before this
    one, else the recipe's model (None: not a stage)."""
    name = stage.teacher
    if name is None:
        earlier = ctx.recipe.stages[: ctx.recipe.stages.index(stage)]
        name = next((s.name for s in reversed(earlier) if isinstance(s, MlmHeadStage)), None)
    if name is None:
        return ctx.recipe.model.model, None
    return str(ctx.outputs[name]), name


def run_general_distill_stage(ctx: RunContext, stage: GeneralDistillStage, out_dir: Path, stage_hash: str) -> dict:
    started = time.perf_counter()
    set_seed(ctx.recipe.seed)
    corpus, held_out = _corpus(ctx, stage)
    source, teacher_stage = mlm_teacher_source(ctx, stage)
    options = {} if teacher_stage else {"allow_pickle": ctx.recipe.model.allow_pickle, "revision": ctx.recipe.model.revision,
                                        "trust_remote_code": ctx.recipe.model.trust_remote_code}
    # Attention probabilities are only returned by the eager implementation (not SDPA).
    attn = "eager" if stage.loss.alpha_attention > 0 else None
    field = _field(ctx, stage, "teacher") if teacher_stage else "model.model"
    teacher, _ = load_mlm_model(source, require_head=True, attn_implementation=attn, field=field, **options)
    teacher.to(ctx.accelerator.device).eval()
    pooler = pooler_weights(source, teacher, **options)  # DistilBERT-style: everything but the layers is copied

    student = build_student(stage.student, teacher, ctx.task)
    if attn:
        student.set_attn_implementation("eager")
    representation = representation_loss(stage.loss, student, teacher)
    if representation is not None and representation.needs_attentions \
            and student.config.num_attention_heads != teacher.config.num_attention_heads:
        raise DistillError(f"{_field(ctx, stage, 'loss.alpha_attention')}: student and teacher head counts differ")
    teacher_metrics = masked_perplexity(teacher, held_out)
    partial = resumable_partial_dir(ctx, out_dir, stage_hash)
    step = general_distillation_step(teacher, stage.loss, representation)
    extra = [representation] if representation is not None else []
    student, outcome = _train(ctx, stage, student, corpus, held_out, step, partial, extra)
    metrics = masked_perplexity(student, held_out)
    metrics["teacher_perplexity"] = teacher_metrics["perplexity"]
    _save(ctx, student, partial, pooler)
    record = general_record(stage, student, partial, outcome, metrics, corpus)
    record.update(teacher_perplexity=teacher_metrics["perplexity"], teacher=teacher_stage or source,
                  teacher_params=count_parameters(teacher), student_layers=stage.student.layers, loss=stage.loss.model_dump())
    ctx.accelerator.print(f"[{stage.name}] held-out perplexity: student {metrics['perplexity']:.2f}, "
                          f"teacher {teacher_metrics['perplexity']:.2f}")
    return finish_stage(ctx, partial, out_dir, record, stage_hash=stage_hash, started=started)

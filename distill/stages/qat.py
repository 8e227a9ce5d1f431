"""Stage `qat`: quantization-aware training of an earlier stage's torch model, distilled from the
fp32 model (or a named teacher), exported as an ONNX QDQ graph and scored through ONNX Runtime
like every other artifact. Several seeds give a mean and a spread."""

from __future__ import annotations

import time
from pathlib import Path

from accelerate.utils import (
    set_seed,  # transformers.set_seed lives in trainer_utils, which imports peft and bitsandbytes (seconds)
)

from distill import DistillError
from distill.models.loading import count_parameters, load_tokenizer
from distill.quantize.artifacts import load_torch_classifier
from distill.quantize.ort import detect_isa
from distill.quantize.ort_session import load_onnx_classifier
from distill.quantize.qat import calibrate, export_qat_onnx, insert_fake_quant, set_mode, weights_description
from distill.quantize.skip_modules import skipped_linear_paths
from distill.recipe import QatStage
from distill.stages.common import stage_record, write_stage_files
from distill.stages.context import RunContext, commit_stage_dir, resumable_partial_dir
from distill.stages.inputs import calibration_examples, in_vocabulary, input_artifact, stage_field
from distill.stages.seeds import aggregate_seeds, pending_seeds, record_seed
from distill.training import checkpoints
from distill.training.loop import train_model
from distill.training.steps import distillation_loss, distillation_step


def _calibration_batches(ctx: RunContext, count: int, tokenizer, batch_size: int) -> list[dict]:
    rows = calibration_examples(ctx, count, tokenizer)
    device = ctx.accelerator.device
    return [{k: v.to(device) for k, v in ctx.data.collator([rows[j] for j in range(i, min(i + batch_size, len(rows)))]).items()}
            for i in range(0, len(rows), batch_size)]


def run_qat_stage(ctx: RunContext, stage: QatStage, out_dir: Path, stage_hash: str) -> dict:
    started = time.perf_counter()
    source, input_record, tokenizer = input_artifact(ctx, stage)
    teacher_source = ctx.outputs[stage.teacher] if stage.teacher else source
    if stage.teacher and load_tokenizer(str(teacher_source)).get_vocab() != tokenizer.get_vocab():
        raise DistillError(f"{stage_field(ctx, stage, 'teacher')}: '{stage.teacher}' has another vocabulary than the input "
                           f"{source} (trim_vocab); leave teacher unset to learn from the input model itself")
    needs_attention = stage.loss.alpha_attention > 0
    teacher = load_torch_classifier(teacher_source).float().to(ctx.accelerator.device).eval()
    if needs_attention:
        teacher.set_attn_implementation("eager")
    train_data = in_vocabulary(ctx, ctx.data.train, tokenizer)
    selection = in_vocabulary(ctx, ctx.data.selection, tokenizer)
    reduce_range = detect_isa() == "avx2" if stage.reduce_range is None else stage.reduce_range

    partial = resumable_partial_dir(ctx, out_dir, stage_hash)
    runs: list[dict] = []
    for seed, folder in pending_seeds(partial, stage.seeds or [ctx.recipe.seed], runs):
        set_seed(seed)
        student = load_torch_classifier(source).float().to(ctx.accelerator.device)
        if needs_attention:
            student.set_attn_implementation("eager")
        params = count_parameters(student)
        kept = skipped_linear_paths(student, stage.keep_fp32, stage_field(ctx, stage, "keep_fp32"))
        quantized = insert_fake_quant(student, kept, momentum=stage.momentum, reduce_range=reduce_range,
                                      embeddings=stage.quantize_embeddings)
        seen = calibrate(student, _calibration_batches(ctx, stage.calibration_examples, tokenizer, stage.train.eval_batch_size))
        if stage.activation_ranges == "frozen":
            set_mode(student, "frozen")
        loss_fn = distillation_loss(stage.loss, ctx.task, student, teacher)
        student, outcome = train_model(
            student, train_data, cfg=stage.train, accelerator=ctx.accelerator, collator=ctx.data.collator,
            step_loss=distillation_step(teacher, loss_fn), evaluate=lambda m: ctx.evaluate(m, selection),
            primary_metric=ctx.task.primary_metric, seed=seed, log_path=folder / "train_log.jsonl",
            description=f"{stage.name} seed {seed}", extra_modules=[loss_fn], checkpoint_dir=folder / "checkpoints",
        )
        checkpoints.remove(folder / "checkpoints", ctx.accelerator)
        details = {"mode": "qat", "format": "QDQ", "weights": weights_description(reduce_range),
                   "activations": "uint8, asymmetric, per Linear input", "activation_ranges": stage.activation_ranges,
                   "embeddings": "uint8, asymmetric, per table" if stage.quantize_embeddings else "fp32",
                   "momentum": stage.momentum if stage.activation_ranges == "ema" else None, "reduce_range": reduce_range,
                   "calibration_examples": seen, "quantized_layers": len(quantized), "kept_fp32": kept, "isa": detect_isa()}
        if ctx.accelerator.is_main_process:
            details = export_qat_onnx(ctx.accelerator.unwrap_model(student), tokenizer, folder, details)
        ctx.accelerator.wait_for_everyone()
        metrics = ctx.evaluate(load_onnx_classifier(folder), tokenizer=tokenizer)
        run = stage_record(ctx, stage, student, metrics, outcome, folder)
        run.update(seed=seed, params=params, backend="onnxruntime", precision="int8", quantization=details)
        record_seed(ctx, folder, run, runs)
        ctx.accelerator.print(f"[{stage.name}] seed {seed}: {ctx.task.primary_metric} = {run['metric_value']:.4f}")

    record = aggregate_seeds(runs)
    primary = ctx.task.primary_metric
    input_value = (input_record.get("metrics") or {}).get(primary, input_record.get("metric_value"))
    record.update(stage_hash=stage_hash, wall_seconds=time.perf_counter() - started, input=source.name,
                  teacher=stage.teacher or source.name, loss=stage.loss.model_dump(), input_metric_value=input_value,
                  metric_drop=None if input_value is None else input_value - runs[0]["metric_value"])
    failure = None
    if stage.max_metric_drop is not None and record["metric_drop"] is not None and record["metric_drop"] > stage.max_metric_drop:
        failure = (f"{stage_field(ctx, stage, 'max_metric_drop')} ({stage.name}): {primary} fell from {input_value:.4f} to "
                   f"{runs[0]['metric_value']:.4f}; the evaluated artifact is kept in {out_dir} for inspection")
        record["failed_check"] = failure
        record.pop("stage_hash")
    write_stage_files(ctx, partial, record)
    commit_stage_dir(ctx, partial, out_dir)
    if failure:
        raise DistillError(failure)
    return record

"""Stages `onnx`, `bnb` and `cast`: an ONNX Runtime int8, bitsandbytes or half-precision copy of
an earlier stage's torch model, re-evaluated on the dev set with the same metric code as every
other stage. `max_metric_drop` fails the run (after the evaluated artifact is written, so it can
be inspected) when the metric falls further than that below the input artifact's own metric."""

from __future__ import annotations

import time
from pathlib import Path

from distill import DistillError
from distill.models.loading import count_parameters
from distill.quantize.artifacts import (
    describe_artifact,
    load_torch_classifier,
    loads_with_from_pretrained,
)
from distill.quantize.skip_modules import skipped_linear_paths
from distill.recipe import BnbStage, CastStage, OnnxStage
from distill.stages.common import save_artifact, stage_record, write_stage_files
from distill.stages.context import RunContext, commit_stage_dir, fresh_partial_dir
from distill.stages.inputs import calibration_examples, input_artifact, stage_field


def run_onnx_stage(ctx: RunContext, stage: OnnxStage, out_dir: Path, stage_hash: str) -> dict:
    from distill.quantize.ort import build_onnx_classifier
    from distill.quantize.ort_session import load_onnx_classifier

    started = time.perf_counter()
    source, input_record, tokenizer = input_artifact(ctx, stage)
    model = load_torch_classifier(source)
    partial = fresh_partial_dir(ctx, out_dir)
    details = None
    if ctx.accelerator.is_main_process:
        calibration = calibration_examples(ctx, stage.calibration_examples, tokenizer) if stage.quantization == "static" else None
        details = build_onnx_classifier(
            model,
            tokenizer,
            partial,
            optimization_level=stage.optimization_level,
            quantization=stage.quantization,
            per_channel=stage.per_channel,
            isa=stage.isa,
            calibration_dataset=calibration,
            calibration_method=stage.calibration_method,
            op_types=stage.op_types,
            keep_fp32=skipped_linear_paths(model, stage.keep_fp32, stage_field(ctx, stage, "keep_fp32")) if stage.keep_fp32 else [],
            attention_matmuls=stage.attention_matmuls or "int8",
        )
    ctx.accelerator.wait_for_everyone()
    ort_model = load_onnx_classifier(partial)
    return _finish(ctx, stage, ort_model, tokenizer, partial, out_dir, stage_hash, started, input_record,
                   torch_model=model, params=count_parameters(model), details=details)


def run_bnb_stage(ctx: RunContext, stage: BnbStage, out_dir: Path, stage_hash: str) -> dict:
    from distill.quantize.bnb import bnb_config, parameter_count, quantize_bnb

    started = time.perf_counter()
    source, input_record, tokenizer = input_artifact(ctx, stage)
    if not loads_with_from_pretrained(source):
        raise DistillError(f"{stage_field(ctx, stage, 'input')}: bitsandbytes quantizes while transformers loads the model, "
                           f"and transformers cannot rebuild {source} (factorized layers or uneven pruning); "
                           "quantize it with an onnx stage instead")
    config = bnb_config(
        stage.bits,
        quant_type=stage.quant_type or "nf4",
        double_quant=True if stage.double_quant is None else stage.double_quant,
        compute_dtype=stage.compute_dtype or "fp32",
        skip_modules=stage.skip_modules,
    )
    model = quantize_bnb(source, config, dtype=stage.dtype, skip_field=stage_field(ctx, stage, 'skip_modules'))
    partial = fresh_partial_dir(ctx, out_dir)
    save_artifact(ctx, model, partial, tokenizer)  # before any inference (see distill/quantize/bnb.py)
    saved = model.config.quantization_config  # the skip list as resolved to full paths
    skipped = saved.get("llm_int8_skip_modules") if isinstance(saved, dict) else saved.llm_int8_skip_modules
    details = {"bits": stage.bits, "dtype": stage.dtype, "skip_modules": skipped}
    if stage.bits == 4:
        details.update(quant_type=config.bnb_4bit_quant_type, double_quant=config.bnb_4bit_use_double_quant,
                       compute_dtype=stage.compute_dtype or "fp32")
    return _finish(ctx, stage, model, tokenizer, partial, out_dir, stage_hash, started, input_record,
                   torch_model=model, params=parameter_count(model), details=details)


def run_cast_stage(ctx: RunContext, stage: CastStage, out_dir: Path, stage_hash: str) -> dict:
    from distill.quantize.cast import cast_classifier

    started = time.perf_counter()
    source, input_record, tokenizer = input_artifact(ctx, stage)
    model = cast_classifier(load_torch_classifier(source), stage.dtype)
    partial = fresh_partial_dir(ctx, out_dir)
    save_artifact(ctx, model, partial, tokenizer)
    return _finish(ctx, stage, model, tokenizer, partial, out_dir, stage_hash, started, input_record,
                   torch_model=model, params=count_parameters(model), details={"dtype": stage.dtype})


def _finish(ctx, stage, model, tokenizer, partial: Path, out_dir: Path, stage_hash: str, started: float, input_record: dict,
            *, torch_model, params: int, details: dict | None) -> dict:
    """Evaluate `model` (any backend), record it, check the metric drop, commit the folder.
    `params`: the parameter count before packing (`torch_model` is the module it describes)."""
    primary = ctx.task.primary_metric
    metrics = ctx.evaluate(model, tokenizer=tokenizer)
    record = stage_record(ctx, stage, torch_model, metrics, None, partial)
    kind = describe_artifact(partial)
    input_name = input_record.get("stage", ctx.input_dir(stage).name)
    # A multi-seed input's record holds the mean; its artifact (first seed) has its own metrics.
    input_value = (input_record.get("metrics") or {}).get(primary, input_record.get("metric_value"))
    record.update(
        params=params,
        backend=kind.backend,
        precision=kind.precision,
        quantization=details,
        input=input_name,
        input_metric_value=input_value,
        metric_drop=None if input_value is None else input_value - metrics[primary],
        wall_seconds=time.perf_counter() - started,
        seed=ctx.recipe.seed,
    )
    failure = None
    if stage.max_metric_drop is not None and record["metric_drop"] is not None and record["metric_drop"] > stage.max_metric_drop:
        failure = (f"{stage_field(ctx, stage, 'max_metric_drop')} ({stage.name}): {primary} fell from {input_value:.4f} "
                   f"('{input_name}') to {metrics[primary]:.4f}, a drop of {record['metric_drop']:.4f} > "
                   f"{stage.max_metric_drop}; the evaluated artifact is kept in {out_dir} for inspection")
        record["failed_check"] = failure  # and no stage_hash: a rerun recomputes (and re-checks) the stage
    else:
        record["stage_hash"] = stage_hash
    write_stage_files(ctx, partial, record)
    commit_stage_dir(ctx, partial, out_dir)
    ctx.accelerator.print(f"[{stage.name}] {kind.label}: {primary} = {metrics[primary]:.4f}"
                          + (f" (input {input_value:.4f})" if input_value is not None else ""))
    if failure:
        raise DistillError(failure)
    return record

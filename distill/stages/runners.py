"""The stage runner of each recipe `kind`. Each takes (context, stage config, output folder, stage hash),
writes an evaluated artifact into the output folder and returns its report record."""

from distill.stages.distill import run_distill_stage
from distill.stages.general import run_general_distill_stage, run_mlm_head_stage
from distill.stages.lowrank import run_factorize_stage, run_trim_vocab_stage
from distill.stages.prune import run_prune_stage
from distill.stages.publish import run_publish_stage
from distill.stages.qat import run_qat_stage
from distill.stages.quantize import run_bnb_stage, run_cast_stage, run_onnx_stage
from distill.stages.teacher import run_teacher_stage

STAGE_RUNNERS = {
    "teacher": run_teacher_stage,
    "distill": run_distill_stage,
    "baseline": run_distill_stage,
    "prune": run_prune_stage,
    "publish": run_publish_stage,
    "onnx": run_onnx_stage,
    "bnb": run_bnb_stage,
    "cast": run_cast_stage,
    "mlm_head": run_mlm_head_stage,
    "general_distill": run_general_distill_stage,
    "factorize": run_factorize_stage,
    "trim_vocab": run_trim_vocab_stage,
    "qat": run_qat_stage,
}

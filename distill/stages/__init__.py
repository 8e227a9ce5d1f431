"""Stage runners by recipe `kind`. Each takes (context, stage config, output folder, stage hash),
writes an evaluated artifact into the output folder and returns its report record."""

from distill.stages.distill import run_distill_stage
from distill.stages.teacher import run_teacher_stage

STAGE_RUNNERS = {
    "teacher": run_teacher_stage,
    "distill": run_distill_stage,
    "baseline": run_distill_stage,
}

"""Recovery training after a compression step (prune, factorize): which stage teaches, and a
recovery that never hurts."""

from __future__ import annotations

from pathlib import Path

from distill.recipe import PruneStage, TeacherStage
from distill.stages.context import RunContext
from distill.training.loop import train_model


def recovery_teacher_name(ctx: RunContext, stage: PruneStage) -> str:
    """The stage named by `teacher`, else the last teacher stage before this one, else the input."""
    if stage.teacher is not None:
        return stage.teacher
    earlier = ctx.recipe.stages[: ctx.recipe.stages.index(stage)]
    teachers = [s.name for s in earlier if isinstance(s, TeacherStage)]
    return teachers[-1] if teachers else ctx.input_name(stage)


def train_recovery(ctx, model, *, cfg, step, extra, log_path: Path, description: str, checkpoint_dir: Path | None = None):
    """Recovery training after a compression step that never hurts: the compressed weights are
    scored on the held-out examples first and kept when no recovery checkpoint beats them there
    (with `keep_best`; without it the last weights are the user's choice). Returns the model, the
    training outcome and {"selection_before", "selection_after", "recovery_kept"}."""
    primary = ctx.task.primary_metric
    before = ctx.evaluate(model, ctx.data.selection)[primary]
    compressed = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    model, outcome = train_model(model, ctx.data.train, cfg=cfg, accelerator=ctx.accelerator, collator=ctx.data.collator,
                                 step_loss=step, evaluate=lambda m: ctx.evaluate(m, ctx.data.selection), primary_metric=primary,
                                 seed=ctx.recipe.seed, log_path=log_path, description=description, extra_modules=extra,
                                 checkpoint_dir=checkpoint_dir)
    after = (outcome.best_selection_metrics or {}).get(primary)
    kept = not cfg.keep_best or (after is not None and after > before)
    if not kept:
        model.load_state_dict(compressed)
        ctx.accelerator.print(f"[{description}] recovery did not beat the compressed weights on the held-out examples "
                              f"(best {'none' if after is None else f'{after:.4f}'} vs {before:.4f}): keeping those")
    return model, outcome, {"selection_before": before, "selection_after": after, "recovery_kept": kept}

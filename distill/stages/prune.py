"""Stage `prune`: physically remove attention heads, FFN neurons and whole layers from the input
stage's model.

Each of `iterations` steps scores what is left on training data (Michel et al. head gates,
Taylor or magnitude scores for neurons), removes the lowest-scoring heads/neurons up to the
step's cumulative share (step k of n reaches k/n of the target), then the listed or least
valuable layers (k/n of `layers.count`), then optionally trains to recover (distilling from the
stage's teacher, or on hard labels). The artifact carries its pruning map in config.json; see
distill.pruning for what reloads natively.
"""

from __future__ import annotations

import time
from pathlib import Path

from accelerate.utils import (
    set_seed,  # transformers.set_seed lives in trainer_utils, which imports peft and bitsandbytes (seconds)
)
from torch.utils.data import DataLoader

from distill import DistillError
from distill.pruning import (
    ffn_importance,
    head_importance,
    heads_from_lists,
    load_pruned,
    loads_natively,
    prune_ffn,
    prune_heads,
    pruning_counts,
    remove_layers,
    select_heads,
    select_neurons,
)
from distill.pruning.speed_search import layer_values, most_valuable_layers
from distill.pruning.structure import PRUNING_KEY, original_intermediate_size, sync_pruning_config, transformer_blocks
from distill.recipe import PruneStage
from distill.stages.common import finish_stage, require_run_vocabulary, save_artifact, stage_record
from distill.stages.context import RunContext, fresh_partial_dir
from distill.stages.recovery import recovery_teacher_name, train_recovery
from distill.stages.speed_target import prune_to_target
from distill.training.loop import TrainOutcome
from distill.training.steps import distillation_loss, distillation_step, hard_label_step


def importance_loader(ctx: RunContext, stage: PruneStage) -> DataLoader:
    cfg = stage.importance
    data = ctx.data.train.shuffle(seed=ctx.recipe.seed)
    if cfg.batches is not None:
        data = data.select(range(min(len(data), cfg.batches * cfg.batch_size)))
    return DataLoader(data, batch_size=cfg.batch_size, collate_fn=ctx.data.collator)


def _scoring_loss(ctx: RunContext):
    """What importance is the gradient of: the task's hard-label loss."""
    step = hard_label_step(ctx.task.is_regression)
    return lambda model, batch: step(model, batch)[0]


def _prune_step(ctx: RunContext, stage: PruneStage, field: str, model, loader, fraction: float, input_layers: int) -> None:
    """One step: score what is left, then remove up to `fraction` of the stage's targets (heads and
    neurons first: their plans name the layers as they are before any goes)."""
    loss_fn = _scoring_loss(ctx)
    if stage.heads is not None:
        heads = stage.heads
        if heads.per_layer is not None:
            plan = _explicit_heads(stage, field, model)
        elif heads.share == 0:
            plan = {}
        else:
            scores = head_importance(model, loader, loss_fn=loss_fn, normalize=heads.normalize)
            plan = select_heads(scores, heads.share * fraction, scope=heads.scope, min_per_layer=heads.min_per_layer)
        prune_heads(model, plan)
    if stage.ffn is not None and stage.ffn.share > 0:
        ffn = stage.ffn
        scores = ffn_importance(model, loader, method=ffn.method, loss_fn=loss_fn)
        original = original_intermediate_size(model)
        prune_ffn(model, select_neurons(scores, ffn.share * fraction, original_size=original, scope=ffn.scope))
    if stage.layers is not None:
        remove_layers(model, _layers_to_keep(stage, model, loader, loss_fn, fraction, input_layers))


def _layers_to_keep(stage: PruneStage, model, loader, loss_fn, fraction: float, input_layers: int) -> list[int]:
    """The current layers a step keeps: all but `layers.drop`, or all but the least valuable ones,
    so that `fraction` of `layers.count` are gone since the stage's input."""
    current = len(transformer_blocks(model))
    if stage.layers.drop is not None:
        return [i for i in range(current) if i not in stage.layers.drop]
    keep = input_layers - round(stage.layers.count * fraction)
    if keep >= current:
        return list(range(current))
    # Unnormalized head scores: per-layer normalization would give every layer's heads the same weight.
    heads = head_importance(model, loader, loss_fn=loss_fn, normalize=False)
    neurons = ffn_importance(model, loader, method=stage.ffn.method if stage.ffn else "taylor", loss_fn=loss_fn)
    return most_valuable_layers(layer_values(heads, neurons), keep)


def _explicit_heads(stage: PruneStage, field: str, model) -> dict[int, list[int]]:
    config = model.config
    return heads_from_lists(stage.heads.per_layer, config.num_hidden_layers, config.num_attention_heads, f"{field}.heads.per_layer")


def _recover(ctx: RunContext, stage: PruneStage, field: str, model, teacher, log_path: Path, description: str):
    recovery = stage.recovery
    step, extra = hard_label_step(ctx.task.is_regression), []
    if teacher is not None:
        if recovery.loss.alpha_attention > 0:
            raise DistillError(f"{field}.recovery.loss.alpha_attention: pruned heads have no teacher counterpart; set it to 0")
        loss_fn = distillation_loss(recovery.loss, ctx.task, model, teacher)
        step, extra = distillation_step(teacher, loss_fn), [loss_fn]
    return train_recovery(ctx, model, cfg=recovery.train, step=step, extra=extra, log_path=log_path, description=description)


def _training_summary(outcomes: list[TrainOutcome]) -> dict:
    seconds = sum(o.train_seconds for o in outcomes)
    return {
        "train_seconds": seconds,
        "samples_per_second": sum(o.samples_per_second * o.train_seconds for o in outcomes) / seconds if seconds else None,
        "train_steps": sum(o.steps for o in outcomes),
        "best_step": outcomes[-1].best_step if outcomes else None,
    }


def run_prune_stage(ctx: RunContext, stage: PruneStage, out_dir: Path, stage_hash: str) -> dict:
    started = time.perf_counter()
    field = f"stages[{ctx.recipe.stages.index(stage)}]"
    set_seed(ctx.recipe.seed)
    device = ctx.accelerator.device
    source_name = ctx.input_name(stage)
    require_run_vocabulary(ctx, ctx.outputs[source_name], f"{field}.input")
    model = load_pruned(ctx.outputs[source_name]).to(device)
    try:
        transformer_blocks(model)
    except DistillError as err:
        raise DistillError(f"{field} ({stage.name}): {err}") from None
    if stage.heads is not None and stage.heads.per_layer is not None:
        _explicit_heads(stage, field, model)  # bad indices fail before any work
    input_layers = len(transformer_blocks(model))
    if stage.layers is not None:
        stage.layers.check_against(input_layers, f"{field}.layers", f"stage '{source_name}'")
    sync_pruning_config(model)  # the map is in the config even when nothing gets removed
    teacher_name = None
    teacher = None
    if stage.recovery is not None and stage.recovery.distill:
        teacher_name = recovery_teacher_name(ctx, stage)
        teacher = load_pruned(ctx.outputs[teacher_name]).to(device).eval()
    loader = importance_loader(ctx, stage)
    partial = fresh_partial_dir(ctx, out_dir)

    outcomes: list[TrainOutcome] = []
    recovery_checks: list[dict] = []
    scoring_seconds, speed_target = 0.0, None
    if stage.target is not None:
        def recover(candidate, description):
            return _recover(ctx, stage, field, candidate, teacher, partial / "train_log.jsonl", description)

        model, speed_target, outcomes = prune_to_target(ctx, stage, field, model, loader, _scoring_loss(ctx),
                                                        recover if stage.recovery is not None else None)
        recovery_checks = [c["recovery"] for c in speed_target["candidates"] if c["chosen"] and c["recovery"]]
    for k in range(1, stage.iterations + 1 if stage.target is None else 1):
        scoring_started = time.perf_counter()
        _prune_step(ctx, stage, field, model, loader, k / stage.iterations, input_layers)
        scoring_seconds += time.perf_counter() - scoring_started
        counts = pruning_counts(model)
        ctx.accelerator.print(
            f"[{stage.name}] step {k}/{stage.iterations}: {counts['heads_pruned']}/{counts['heads_total']} heads, "
            f"{counts['ffn_pruned']}/{counts['ffn_total']} FFN neurons, {input_layers - len(transformer_blocks(model))}/"
            f"{input_layers} layers removed"
        )
        if stage.recovery is not None:
            model, outcome, check = _recover(ctx, stage, field, model, teacher, partial / "train_log.jsonl",
                                             f"{stage.name} recovery {k}/{stage.iterations}")
            outcomes.append(outcome)
            recovery_checks.append(check)

    model.eval()
    metrics = ctx.evaluate(model)
    save_artifact(ctx, model, partial)
    record = stage_record(ctx, stage, model, metrics, None, partial)
    record.update(_training_summary(outcomes))
    if stage.recovery is not None and stage.recovery.train.keep_best:
        record["checkpoint_selected_on"] = "train holdout" if ctx.recipe.data.holdout_size else "validation"
    record.update(pruning_counts(model))
    spec = getattr(model.config, PRUNING_KEY)
    record.update(
        layers_total=input_layers,  # the input's: heads and neurons are counted in the kept layers
        layers_pruned=input_layers - len(spec["layers_kept"]),
        layers_kept=spec["layers_kept"],  # indices in the original model
        pruned_heads={str(layer): heads for layer, heads in sorted(model.config.pruned_heads.items())},
        intermediate_sizes=spec["intermediate_sizes"],
        loads_natively=loads_natively(model),
        input=source_name,
        teacher=teacher_name,
        iterations=stage.iterations,
        scoring_seconds=scoring_seconds,
        recovery=recovery_checks or None,
        speed_target=speed_target,
    )
    return finish_stage(ctx, partial, out_dir, record, stage_hash=stage_hash, started=started,
                        note=f"{record['heads_pruned']}/{record['heads_total']} heads, "
                             f"{record['ffn_pruned']}/{record['ffn_total']} FFN neurons, "
                             f"{record['layers_pruned']}/{record['layers_total']} layers removed")

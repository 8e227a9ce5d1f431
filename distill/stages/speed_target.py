"""A prune stage's speed target: the user names the speed-up (or the milliseconds) at some batch
sizes; the stage finds the most accurate pruned shape that meets it on this machine.

1. Time the reference artifact (`against`) and a fixed design of pruned shapes of the input
   (`calibration_shapes`), each in the form that ships (`measure_as`: a later onnx stage's export
   and quantization; else torch fp32), interleaved in the same rounds, with `benchmark:`'s settings.
2. Fit one latency model per batch size (depth, heads, neurons; `fit_latency_model` states its error).
3. Score heads and neurons on training data; propose the shapes at the edge of every budget (per
   depth and head count, the most FFN neurons predicted to fit), taken round-robin across depths in
   order of importance kept (`propose_shapes`); judge each on the selection split as pruned (its task
   loss ranks them: accuracy cannot, once pruning alone leaves one class predicted) and time it shipped. Importance sums rank heads against neurons poorly, and the latency model errs
   on uneven shapes: measured scores and times do not (`screen_until_enough_fit`).
4. Prune the best `candidates` of them, recover each (the recovery that never hurts), score it on
   the selection split, and time it again, shipped, beside the reference. Keep the most accurate
   one that meets every budget; when none does, the nearest, said so. Speed verdicts rest on every
   call of the candidate and of the reference in every round (`ShippedForm.pooled`): this machine
   kind moved the teacher's batch-1 median by up to 40 % between rounds minutes apart.
Depth is searched with the last layer always kept: the task head was trained on its output.

Before any stage trains, `speed_check.check_speed_targets` runs steps 1-3 on the untrained
architectures (only the shapes matter for latency) and refuses a target no allowed shape can meet.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
from collections.abc import Callable
from itertools import zip_longest
from pathlib import Path

import torch

from distill import DistillError
from distill.pruning import ffn_importance, head_importance, prune_ffn, prune_heads, remove_layers
from distill.pruning.layers import layers_that_must_stay
from distill.pruning.speed_search import (
    Candidate,
    LatencyModel,
    Shape,
    budget_from_target,
    calibration_shapes,
    fit_latency_model,
    heads_to_remove,
    neurons_to_keep,
    propose_shapes,
)
from distill.pruning.structure import intermediate_sizes, kept_heads, original_intermediate_size
from distill.recipe import OnnxStage, PruneStage, TeacherStage
from distill.reporting.bench import fixed_length_inputs, latency_samples, split_texts
from distill.reporting.report import machine_info


def reference_name(recipe, stage: PruneStage) -> str:
    """The stage the speed-up is measured against: `target.against`, else the first teacher stage."""
    if stage.target.against is not None:
        return stage.target.against
    teachers = [s.name for s in recipe.stages if isinstance(s, TeacherStage)]
    if not teachers:
        raise DistillError(f"stages[{recipe.stages.index(stage)}].target.against: the recipe has no teacher stage; "
                           "name the stage the speed-up is measured against")
    return teachers[0]


def shipping_stage(recipe, stage: PruneStage) -> OnnxStage | None:
    name = stage.target.measure_as
    return None if name is None else next(s for s in recipe.stages if s.name == name)


class ShippedForm:
    """Turns a torch model into what the recipe ships (ONNX Runtime with the onnx stage's settings,
    or the torch model itself) and times several of them in the same interleaved rounds."""

    def __init__(self, recipe, onnx_stage: OnnxStage | None, tokenizer, calibration=None):
        self.recipe, self.onnx_stage, self.tokenizer, self.calibration = recipe, onnx_stage, tokenizer, calibration
        self.bench = recipe.benchmark
        self.threads = self.bench.threads or torch.get_num_threads()
        self.tokenizers: dict[str, object] = {}  # an artifact's own tokenizer where it differs (a trimmed vocabulary)
        # The ms of every timed call, by artifact (a shape, or "reference"), across rounds: the
        # machine drifts between rounds, so a verdict rests on every round an artifact was timed in.
        self.pool: dict[object, dict[int, list[float]]] = {}
        self.reference_rounds: list[dict[int, float]] = []  # the reference's median in each round
        self._work = tempfile.TemporaryDirectory(prefix="distill-speed-")
        self._count = 0

    @property
    def description(self) -> str:
        stage = self.onnx_stage
        if stage is None:
            return "torch fp32"
        return f"onnx stage '{stage.name}' (quantization {stage.quantization}, attention matmuls {stage.attention_matmuls or 'int8'})"

    def ship(self, model) -> Callable:
        if self.onnx_stage is None:
            return model.eval()
        from distill.quantize.ort import build_onnx_classifier
        from distill.quantize.ort_session import load_onnx_classifier
        from distill.quantize.skip_modules import skipped_linear_paths

        stage, self._count = self.onnx_stage, self._count + 1
        folder = Path(self._work.name) / f"shape{self._count}"
        build_onnx_classifier(
            model.eval(), self.tokenizer, folder, optimization_level=stage.optimization_level, quantization=stage.quantization,
            per_channel=stage.per_channel, isa=stage.isa, calibration_dataset=self.calibration if stage.quantization == "static" else None,
            calibration_method=stage.calibration_method, op_types=stage.op_types,
            keep_fp32=skipped_linear_paths(model, stage.keep_fp32, f"{stage.name}.keep_fp32") if stage.keep_fp32 else [],
            attention_matmuls=stage.attention_matmuls or "int8",
        )
        return load_onnx_classifier(folder, self.threads)

    def time(self, artifacts: dict[str, Callable], texts: list[tuple[str, ...]], batch_sizes: list[int],
             keys: dict[str, object] | None = None) -> dict[str, dict[int, float]]:
        """{name: {batch size: median ms}} of this round, every artifact timed in the same calls'
        rounds; each call also joins `pool` under `keys[name]` (default the name)."""
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            result: dict[str, dict[int, float]] = {name: {} for name in artifacts}
            with torch.inference_mode():
                for batch in batch_sizes:
                    inputs = {name: fixed_length_inputs(self.tokenizers.get(name, self.tokenizer), texts[:batch], self.bench.seq_length)
                              for name in artifacts}
                    calls = {name: (lambda a=a, i=inputs[name]: a(**i).logits) for name, a in artifacts.items()}
                    for name, seconds in latency_samples(calls, self.bench.warmup, self.bench.repeats).items():
                        ms = [1000 * s for s in seconds]
                        result[name][batch] = statistics.median(ms)
                        self.pool.setdefault((keys or {}).get(name, name), {}).setdefault(batch, []).extend(ms)
            if "reference" in result:
                self.reference_rounds.append(result["reference"])
            return result
        finally:
            torch.set_num_threads(previous)

    def pooled(self, key) -> dict[int, float]:
        """{batch size: median ms} over every call of `key` in every round so far."""
        return {b: statistics.median(ms) for b, ms in self.pool[key].items()}


def require_unpruned(model, field: str) -> tuple[int, int, int]:
    """(layers, heads, FFN neurons) of an unpruned model; the calibration design starts from the full shape."""
    heads, sizes = kept_heads(model), intermediate_sizes(model)
    full_heads, full_neurons = model.config.num_attention_heads, original_intermediate_size(model)
    if any(len(h) != full_heads for h in heads) or any(n != full_neurons for n in sizes):
        raise DistillError(f"{field}: the input is already pruned; prune to a speed target from an unpruned model")
    return len(heads), full_heads, full_neurons


def apply_shape(model, shape: Shape, neuron_scores) -> torch.nn.Module:
    """Prune `model` in place to `shape`: heads and neurons first (their indices are the current
    layers'), then the layers the shape leaves out."""
    prune_heads(model, heads_to_remove(shape, model.config.num_attention_heads))
    prune_ffn(model, neurons_to_keep(shape, neuron_scores))
    if shape.depth < len(kept_heads(model)):
        remove_layers(model, list(shape.layers))
    return model


def fit_latency(form: ShippedForm, model, reference, texts, batch_sizes: list[int],
                field: str) -> tuple[dict[int, LatencyModel], dict[int, float], list[dict]]:
    """Latency models per batch size, the reference's ms per batch size, and the calibration points."""
    n_layers, n_heads, n_neurons = require_unpruned(model, field)
    shapes = calibration_shapes(n_layers, n_heads, n_neurons)
    uniform = [torch.ones(n_neurons) for _ in range(n_layers)]  # which units go does not change the time
    artifacts = {"reference": reference}
    for i, shape in enumerate(shapes):
        artifacts[f"shape{i}"] = form.ship(apply_shape(copy.deepcopy(model), shape, uniform))
    measured = form.time(artifacts, texts, batch_sizes)
    models = {b: fit_latency_model(shapes, [measured[f"shape{i}"][b] for i in range(len(shapes))], batch_size=b) for b in batch_sizes}
    points = [{**shape.describe(), "ms": measured[f"shape{i}"]} for i, shape in enumerate(shapes)]
    return models, measured["reference"], points


def budgets_ms(stage: PruneStage, reference_ms: dict[int, float]) -> dict[int, float]:
    target = stage.target
    if target.speedup is not None:
        return {b: budget_from_target(reference_ms[b], speedup=s) for b, s in target.speedup.items()}
    return {b: budget_from_target(None, latency_ms=ms) for b, ms in target.latency_ms.items()}


def layers_kept_by_search(model) -> list[int]:
    """The last layer (the task head was trained on its output: without it every shape predicts one
    class until recovered, as measured on SST-2), and any layer the architecture needs."""
    return [len(kept_heads(model)) - 1, *layers_that_must_stay(model)]


def propose(stage: PruneStage, head_scores, neuron_scores, latency: dict[int, LatencyModel], budgets: dict[int, float],
            field: str, always_keep: list[int]) -> list[Candidate]:
    """Up to `target.screened` edge shapes, taken in turn from each depth, best importance first."""
    (first, *rest) = sorted(budgets)
    try:
        edge = propose_shapes(head_scores, neuron_scores, latency[first], budgets[first],
                              also=[(latency[b], budgets[b]) for b in rest], min_depth=min(stage.target.min_layers, len(neuron_scores)),
                              min_heads_per_layer=stage.target.min_heads_per_layer, max_candidates=10_000, edge_only=True,
                              always_keep=always_keep)
    except DistillError as err:
        raise DistillError(f"{field}.target: {err} ({_described(stage, budgets)})") from None
    by_depth: dict[int, list[Candidate]] = {}
    for candidate in edge:
        by_depth.setdefault(candidate.shape.depth, []).append(candidate)
    rounds = zip_longest(*(by_depth[d] for d in sorted(by_depth, reverse=True)))
    return [c for round_ in rounds for c in round_ if c is not None][: stage.target.screened]


def _described(stage: PruneStage, budgets: dict[int, float]) -> str:
    target = stage.target
    kind = "speed-up" if target.speedup is not None else "latency"
    values = target.speedup if target.speedup is not None else target.latency_ms
    unit = "x" if target.speedup is not None else " ms"
    return ", ".join(f"{kind} {values[b]:g}{unit} at batch {b}" for b in sorted(values))


def importance(model, loader, loss_fn) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Head and neuron scores on the same scale across layers (not normalized per layer): whole layers compete."""
    return (head_importance(model, loader, loss_fn=loss_fn, normalize=False),
            ffn_importance(model, loader, method="taylor", loss_fn=loss_fn))


def prune_to_target(ctx, stage: PruneStage, field: str, model, loader, loss_fn, recover) -> tuple[torch.nn.Module, dict, list]:
    """The chosen pruned model, the stage record's `speed_target` entry and the recovery outcomes.
    `recover(model, description) -> (model, outcome, check)`, or None for no recovery."""
    from distill.models.loading import load_tokenizer
    from distill.quantize.artifacts import load_artifact
    from distill.stages.inputs import calibration_examples

    target, primary = stage.target, ctx.task.primary_metric
    onnx_stage = shipping_stage(ctx.recipe, stage)
    calibration = calibration_examples(ctx, onnx_stage.calibration_examples, ctx.tokenizer) if onnx_stage else None
    form = ShippedForm(ctx.recipe, onnx_stage, ctx.tokenizer, calibration)
    against = reference_name(ctx.recipe, stage)
    reference, _ = load_artifact(ctx.outputs[against], threads=form.threads)
    form.tokenizers["reference"] = load_tokenizer(str(ctx.outputs[against]))
    batch_sizes = sorted(target.budgets)
    texts = split_texts(ctx.task, ctx.data.raw_validation, max(batch_sizes))

    latency, calibration_reference_ms, points = fit_latency(form, model, reference, texts, batch_sizes, field)
    budgets = budgets_ms(stage, calibration_reference_ms)
    head_scores, neuron_scores = importance(model, loader, loss_fn)
    def judge(pruned) -> tuple[float, float]:
        return ctx.evaluate(pruned, ctx.data.selection)[primary], selection_loss(ctx, pruned, loss_fn)

    screened = screen_until_enough_fit(stage, field, form, model, reference, texts, (head_scores, neuron_scores), latency, budgets, judge)
    fitting = [row for row in screened if row["fits"]] or screened  # none fits: the best scored, judged again below
    best = sorted(fitting, key=lambda row: (row["loss"], -row["candidate"].importance_kept))[: target.candidates]
    candidates = [row["candidate"] for row in best]
    ctx.accelerator.print(f"[{stage.name}] budgets {', '.join(f'{budgets[b]:.2f} ms at batch {b}' for b in batch_sizes)} "
                          f"({form.description}); {len(screened)} shapes screened, {sum(r['fits'] for r in screened)} "
                          f"timed within them, {len(candidates)} recovered")

    trained, outcomes, checks = [], [], []
    for i, candidate in enumerate(candidates):
        pruned = apply_shape(copy.deepcopy(model), candidate.shape, neuron_scores)
        if recover is not None:
            pruned, outcome, check = recover(pruned, f"{stage.name} candidate {i + 1}/{len(candidates)}")
            outcomes.append(outcome)
            checks.append(check)
        pruned.eval()
        trained.append((pruned, ctx.evaluate(pruned, ctx.data.selection)[primary]))
    form.time({"reference": reference, **{f"c{i}": form.ship(m) for i, (m, _) in enumerate(trained)}}, texts, batch_sizes,
              keys={f"c{i}": c.shape for i, c in enumerate(candidates)})

    # Met or not: every call of the reference and of each candidate in every round (screening and
    # this one), since the machine drifts between rounds.
    reference_ms = form.pooled("reference")
    final_budgets = budgets_ms(stage, reference_ms)
    rows = []
    for i, (candidate, (_, selection)) in enumerate(zip(candidates, trained)):
        ms = form.pooled(candidate.shape)
        rows.append({**candidate.shape.describe(), "importance_kept": candidate.importance_kept,
                     "predicted_ms": dict(zip(sorted(budgets), candidate.predicted_ms_each)), "measured_ms": ms,
                     "speedup": {b: reference_ms[b] / ms[b] for b in batch_sizes},
                     "meets_target": all(ms[b] <= final_budgets[b] for b in batch_sizes),
                     f"screened_{primary}": best[i]["score"], "screened_loss": best[i]["loss"], f"selection_{primary}": selection,
                     "recovery": checks[i] if checks else None})
    chosen = chosen_candidate(rows, final_budgets, f"selection_{primary}")
    for i, row in enumerate(rows):
        row["chosen"] = i == chosen
    meeting = [row for row in rows if row["meets_target"]]
    if not meeting:
        nearest = rows[chosen]["measured_ms"]
        ctx.accelerator.print(f"[{stage.name}] no candidate met the target as measured after recovery; keeping the nearest "
                              f"({', '.join(f'{nearest[b]:.2f} ms at batch {b}' for b in batch_sizes)})")
    entry = {
        "target": target.model_dump(exclude_none=True), "against": against, "measured_as": form.description,
        "machine": machine_info(), "threads": form.threads, "seq_length": ctx.recipe.benchmark.seq_length,
        "reference_ms": reference_ms, "reference_ms_by_round": form.reference_rounds,
        "calibration_reference_ms": calibration_reference_ms, "search_budgets_ms": budgets,
        "budgets_ms": final_budgets,
        "screened": [{**row["candidate"].shape.describe(), "importance_kept": row["candidate"].importance_kept,
                      "predicted_ms": dict(zip(batch_sizes, row["candidate"].predicted_ms_each)), "measured_ms": row["measured_ms"],
                      "fits": row["fits"], "round": row["round"], f"selection_{primary}": row["score"], "selection_loss": row["loss"]}
                     for row in screened],
        "latency_models": {b: m.to_dict() for b, m in latency.items()}, "calibration": points,
        "candidates": rows, "met": bool(meeting), "speedup": rows[chosen]["speedup"], "measured_ms": rows[chosen]["measured_ms"],
    }
    return trained[chosen][0], entry, outcomes


SCREENING_ROUNDS = 3


def selection_loss(ctx, model, loss_fn) -> float:
    """The mean task loss on the selection split: unlike accuracy it still ranks shapes that pruning
    alone left predicting one class, as heavy pruning does before recovery."""
    from torch.utils.data import DataLoader

    batch = max(s.train.eval_batch_size for s in ctx.recipe.stages if hasattr(s, "train"))
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for rows in DataLoader(ctx.data.selection, batch_size=batch, collate_fn=ctx.data.collator):
            rows = {k: v.to(ctx.accelerator.device) for k, v in rows.items()}
            size = len(rows["labels"])
            total, count = total + float(loss_fn(model, rows)) * size, count + size
    return total / count


def screen_until_enough_fit(stage: PruneStage, field: str, form: ShippedForm, model, reference, texts, scores,
                            latency: dict[int, LatencyModel], budgets: dict[int, float], judge) -> list[dict]:
    """Edge shapes pruned without training, each judged on the selection split (`judge(model) ->
    (metric, loss)`) and timed shipped beside the reference. The latency model errs most on uneven shapes, so where fewer than
    `candidates` shapes fit as timed, the search budgets shrink by the worst measured/predicted
    ratio and the next edge is screened (at most SCREENING_ROUNDS rounds)."""
    head_scores, neuron_scores = scores
    batch_sizes = sorted(budgets)
    search, rows, seen = dict(budgets), [], set()
    for round_ in range(SCREENING_ROUNDS):
        try:
            proposals = [c for c in propose(stage, head_scores, neuron_scores, latency, search, field, layers_kept_by_search(model))
                         if c.shape not in seen]
        except DistillError:
            if round_ == 0:
                raise
            break  # the shrunk budgets admit no shape: keep what was screened
        seen.update(c.shape for c in proposals)
        artifacts, judged = {"reference": reference}, []
        for i, candidate in enumerate(proposals):
            pruned = apply_shape(copy.deepcopy(model), candidate.shape, neuron_scores).eval()
            judged.append(judge(pruned))
            artifacts[f"s{i}"] = form.ship(pruned)
        measured = form.time(artifacts, texts, batch_sizes, keys={f"s{i}": c.shape for i, c in enumerate(proposals)})
        round_budgets = budgets_ms(stage, form.pooled("reference"))  # every round of the reference so far
        for i, candidate in enumerate(proposals):
            ms = measured[f"s{i}"]
            rows.append({"candidate": candidate, "score": judged[i][0], "loss": judged[i][1], "measured_ms": ms, "round": round_ + 1,
                         "fits": all(ms[b] <= round_budgets[b] for b in batch_sizes)})
        if sum(row["fits"] for row in rows) >= stage.target.candidates or not proposals:
            break
        for j, b in enumerate(batch_sizes):
            ratio = max(measured[f"s{i}"][b] / c.predicted_ms_each[j] for i, c in enumerate(proposals))
            search[b] = min(search[b], round_budgets[b] / ratio) if ratio > 1 else search[b]
    return rows


def chosen_candidate(rows: list[dict], budgets: dict[int, float], score_key: str) -> int:
    """The most accurate candidate whose measured latency meets every budget (the earlier, more
    important-keeping one on a tie); when none meets them, the one that misses by least."""
    meeting = [i for i, row in enumerate(rows) if all(row["measured_ms"][b] <= budgets[b] for b in budgets)]
    if meeting:
        return max(meeting, key=lambda i: (rows[i][score_key], -i))
    return min(range(len(rows)), key=lambda i: max(rows[i]["measured_ms"][b] / budgets[b] for b in budgets))

"""The model card of a published artifact, rendered through huggingface_hub from
model_cards/template.md: the Hub metadata of distill.publish.metadata and a body that says what
each stage did and what it cost, the exact recipe, and how to reproduce and use the model."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard

from distill import DistillError
from distill.data.tasks import TASKS
from distill.publish.metadata import base_model_id, card_data, hub_task, task_title
from distill.publish.run_info import (
    CONVERSION_KINDS,
    STUDENT_KINDS,
    RunInfo,
    artifact_metrics,
    has_torch_weights,
    is_adapter,
    is_model_stage,
    lineage,
    onnx_files,
    parent_stage,
    teacher_record,
)

# A symlink to model_cards/template.md (the file to edit), so the template ships inside the wheel.
TEMPLATE_PATH = Path(__file__).with_name("model_card_template.md")

PAIR_EXAMPLES = {
    "qnli": {"text": "Where is the Eiffel Tower?", "text_pair": "The Eiffel Tower stands on the Champ de Mars in Paris."},
}
PAIR_EXAMPLE = {"text": "The company posted record profits this quarter.", "text_pair": "This quarter the firm reported its highest profits ever."}
SINGLE_EXAMPLES = {"sst2": "A gripping, beautifully acted film.", "cola": "The book was written by my sister."}
# Words split on spaces (the ONNX snippet tags words), with a place, a title and a person in them.
TOKEN_EXAMPLE = "Heading to Brooklyn tonight to watch Stranger Things with Sarah"


def needs_distill_loader(folder: Path) -> bool:
    """A pruned model whose shapes plain `from_pretrained` cannot rebuild: it loads only through
    distill.pruning.load_pruned. Judged by transformers 5's rule (no head pruning, uniform FFN),
    whichever stack wrote the card: that is what the card's readers run."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        return False
    config = json.loads(config_path.read_text(encoding="utf-8"))
    try:
        from distill.pruning.structure import PRUNING_KEY, loads_natively
    except ImportError:
        return False
    return PRUNING_KEY in config and not loads_natively(config, transformers_5=True)


# ---------------------------------------------------------------- the body


def fmt_metric(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}" if abs(value) <= 1 else f"{value:.4f}"


def share(value: float | None, teacher: float | None) -> str:
    if value is None or not teacher or teacher <= 0:
        return "-"
    return f"{100 * value / teacher:.1f} %"


def metric_cell(record: dict[str, Any]) -> str:
    text = fmt_metric(record.get("metric_value"))
    if "metric_std" in record:
        text += f" ± {100 * record['metric_std']:.2f} (n={len(record.get('seeds') or [])})"
    return text


def latency_keys(records: list[dict[str, Any]]) -> list[tuple[int, str]]:
    keys = {k for r in records for k in r if re.fullmatch(r"latency_ms_bs\d+", k) and r[k] is not None}
    return sorted((int(k.rsplit("bs", 1)[1]), k) for k in keys)


def table_stages(run: RunInfo, stage: str) -> list[str]:
    return [n for n in run.records if n == stage or is_model_stage(run, n)]


def stage_cell(name: str, stage: str) -> str:
    return f"**{name}** (this model)" if name == stage else name


def results_table(run: RunInfo, stage: str, teacher: dict[str, Any] | None) -> tuple[list[str], list[list[str]]]:
    names = table_stages(run, stage)
    records = [run.records[n] for n in names]
    latencies = latency_keys(records)
    has_memory = any(r.get("peak_memory_bytes") for r in records)
    has_backend = any(r.get("backend") for r in records)
    headers = ["stage", "kind", "from", run.records[stage]["metric"], "share of teacher", "params", "size"]
    headers += [f"latency b={bs} (ms)" for bs, _ in latencies]
    headers += ["peak memory"] * has_memory + ["backend"] * has_backend
    rows = []
    for name, r in zip(names, records):
        parent = parent_stage(run, name)
        row = [
            stage_cell(name, stage),
            run.kind(name),
            f"`{parent}`" if parent else "base model",
            metric_cell(r),
            share(r.get("metric_value"), teacher and teacher.get("metric_value")),
            f"{r['params'] / 1e6:.2f}M" if r.get("params") else "-",
            f"{r['size_bytes'] / 2**20:.1f} MiB" if r.get("size_bytes") else "-",
        ]
        row += [f"{r[k]:.2f}" if isinstance(r.get(k), (int, float)) else "-" for _, k in latencies]
        if has_memory:
            row.append(f"{r['peak_memory_bytes'] / 2**20:.0f} MiB" if r.get("peak_memory_bytes") else "-")
        if has_backend:
            row.append(f"{r.get('backend') or '-'} {r.get('precision') or ''}".strip())
        rows.append(row)
    return headers, rows


def entity_table(run: RunInfo, stage: str) -> tuple[list[str], list[list[str]]]:
    """Token runs: each stage's seqeval precision and recall, per-token accuracy and F1 per entity type."""
    names = table_stages(run, stage)
    metrics = [artifact_metrics(run.records[n])[0] for n in names]
    types = list(dict.fromkeys(k for m in metrics for k in m if k.startswith("f1_")))  # label order
    headers = ["stage", "precision", "recall", "token accuracy"] + [f"F1 {t[len('f1_'):]}" for t in types]
    rows = [[stage_cell(n, stage)] + [fmt_metric(m.get(k)) for k in ["precision", "recall", "accuracy", *types]]
            for n, m in zip(names, metrics)]
    return headers, rows


def speed_target_text(entry: dict[str, Any]) -> str:
    """What a prune stage was asked and what it reached, and where it was measured."""
    goal = entry["target"].get("speedup") or entry["target"].get("latency_ms")
    unit = "×" if "speedup" in entry["target"] else " ms"
    asked = ", ".join(f"{goal[b]:g}{unit} at batch {b}" for b in goal)
    reached = ", ".join(f"{entry['speedup'][b]:.2f}× at batch {b}" for b in entry["speedup"])
    return (f"asked {asked} against `{entry['against']}`, measured as {entry['measured_as']}; "
            f"{'met' if entry['met'] else 'not met'}: {reached}, on {entry['machine']}")


def describe_stage(run: RunInfo, name: str, task_name: str) -> str:
    cfg, r = run.stage_config(name), run.records.get(name, {})
    kind = cfg.get("kind") or r.get("kind")
    steps = r.get("train_steps") or 0
    if kind == "teacher":
        what = f"fine-tuned on {task_name} ({steps} optimizer steps)"
        if cfg.get("skip_training"):
            what = "evaluated as is (no training)"
    elif kind in STUDENT_KINDS:
        layers = r.get("student_layers") or (cfg.get("student") or {}).get("layers")
        student = f"a student made of teacher layers {layers}" if layers else "a student"
        if kind == "distill":
            loss = r.get("loss") or cfg.get("loss") or {}
            weights = ", ".join(f"{k[len('alpha_'):]} {v:g}" for k, v in loss.items() if k.startswith("alpha_") and v)
            what = (f"{student} trained by knowledge distillation ({steps} steps; "
                    f"temperature {loss.get('temperature', '-')}; loss weights: {weights})")
        else:
            what = (f"{student} trained on the hard labels only ({steps} steps, no distillation): "
                    "the control for what distillation bought")
    elif kind in CONVERSION_KINDS:
        details = r.get("quantization") if isinstance(r.get("quantization"), dict) else {}
        how = ", ".join(k.replace("_", " ") + ("" if v is True else f" {v}")
                        for k, v in details.items() if v not in (None, False, "none"))
        what = f"converted to {r['backend']} {r.get('precision') or ''}".rstrip() + (f" ({how})" if how else "")
        if r.get("metric_drop") is not None:
            what += f"; {r.get('metric')} change vs its input {0.0 - 100 * r['metric_drop']:+.2f}"
    elif kind == "trim_vocab" and r.get("vocab_after"):
        what = f"vocabulary trimmed to the tokens the task's data uses, {r['vocab_before']:,} → {r['vocab_after']:,}"
    elif kind == "factorize" and r.get("ranks") is not None:
        what = (f"{len(r['ranks'])} weight matrices replaced by truncated-SVD factor pairs, "
                f"linear FLOPs per token {-100 * r.get('flops_reduction', 0.0):+.1f} %")
    elif kind == "mlm_head":
        tokens = (r.get("corpus") or {}).get("tokens")
        what = (f"masked-LM head trained on {f'{tokens:,} tokens of ' if tokens else ''}raw text ({steps} steps, "
                f"{r.get('trained', 'head')} trained)")
        if (r.get("metrics") or {}).get("perplexity_before") is not None:
            what += f"; held-out perplexity before: {r['metrics']['perplexity_before']:.1f}"
    elif kind == "general_distill":
        loss = r.get("loss") or {}
        weights = ", ".join(f"{k[len('alpha_'):]} {v:g}" for k, v in loss.items() if k.startswith("alpha_") and v)
        what = (f"a student made of teacher layers {r.get('student_layers')} distilled on raw text ({steps} steps; "
                f"temperature {loss.get('temperature', '-')}; loss weights: {weights})")
        if r.get("teacher_perplexity") is not None:
            what += f"; its teacher's held-out perplexity: {r['teacher_perplexity']:.1f}"
    elif kind == "prune":
        removed = [f"{r['layers_pruned']} of {r['layers_total']} layers"] if r.get("layers_pruned") else []
        removed += [f"{r.get(done, 0)} of {r[total]} {unit}" for done, total, unit in
                    (("heads_pruned", "heads_total", "attention heads"), ("ffn_pruned", "ffn_total", "FFN neurons"))
                    if r.get(total)]
        what = "structured pruning: " + (" and ".join(removed) if removed else "nothing") + " removed"
        if target := r.get("speed_target"):
            what += f" to meet a speed target ({speed_target_text(target)})"
    else:
        what = f"{kind}"
    if kind not in CONVERSION_KINDS | STUDENT_KINDS | {"teacher", "mlm_head", "general_distill"} and steps:
        what += f", then {steps} recovery training steps"
    if r.get("seeds"):
        what += f"; {len(r['seeds'])} seeds (mean ± std), the saved model is seed {r.get('artifact_seed')}"
    if r.get("metric_value") is not None:
        what += f" → {r.get('metric')} {metric_cell(r)}"
    if r.get("size_bytes"):
        what += f", {r['size_bytes'] / 2**20:.1f} MiB"
    return what + "."


def example_input(task_name: str, n_texts: int, token: bool = False) -> str:
    if token:
        return json.dumps(TOKEN_EXAMPLE)
    if n_texts == 2:
        return json.dumps(PAIR_EXAMPLES.get(task_name, PAIR_EXAMPLE), ensure_ascii=False)
    return json.dumps(SINGLE_EXAMPLES.get(task_name, "Your text here."), ensure_ascii=False)


def reproduce_command(run: RunInfo, repo_id: str, revision: str | None = None) -> str:
    name = str(run.recipe.get("name") or run.report.get("recipe"))
    overrides = ["output_dir=runs"]
    if (run.recipe.get("data") or {}).get("dir"):
        overrides.append("data.dir=null")  # a path on the machine that made the run
    # Reproducing must not push to this repo again.
    overrides += [f"stages.{s['name']}.dry_run=true" for s in run.recipe.get("stages", []) if s.get("kind") == "publish"]
    branch = f" --revision {revision}" if revision else ""
    download = f"hf download {repo_id} recipe.yaml{branch} --local-dir {name}"
    return f"{download} && distill run {name}/recipe.yaml {' '.join(overrides)}"


def result_notes(run: RunInfo, stage: str, chain: list[str], latencies: bool) -> list[str]:
    data = run.recipe.get("data") or {}
    notes = ["Metric ×100 on the validation split; share of teacher = stage metric / teacher metric."]
    if data.get("eval_limit"):
        notes.append(f"Evaluated on a random {data['eval_limit']}-example subset of the validation split "
                     "(data.eval_limit), not all of it.")
    if data.get("train_limit"):
        notes.append(f"Trained on a random {data['train_limit']}-example subset of the training split (data.train_limit).")
    if any(run.records.get(n, {}).get("checkpoint_selected_on") == "validation" for n in chain):
        notes.append("Checkpoints were selected on the validation split itself (no data.holdout_size), "
                     "so these numbers are slightly optimistic.")
    record = run.records[stage]
    if record.get("seeds"):
        metrics, seed = artifact_metrics(record)
        notes.append(f"This stage ran {len(record['seeds'])} seeds; the row shows mean ± std, the published model "
                     f"(seed {seed}) scores {fmt_metric(metrics.get(record['metric']))}.")
    quantization = record.get("quantization") or {}
    if record.get("precision") == "int8" and record.get("backend") == "onnxruntime":
        # int8 kernels differ by CPU (VNNI or not, AVX2's saturating u8 x s8 sums): say where it was scored.
        built = f", built for {quantization['isa']}" if quantization.get("isa") else ""
        notes.append(f"The int8 scores were measured with ONNX Runtime on {run.report.get('machine') or 'unknown hardware'}{built}.")
    if latencies:
        hardware = sorted({
            str(r.get("hardware") or r.get("machine") or run.report.get("machine") or "unknown hardware")
            for r in run.records.values() if latency_keys([r])
        })
        bench = run.report.get("benchmark") or {}
        how = "; ".join(str(bench[k]) for k in ("timing", "inputs") if bench.get(k))
        threads = f"{bench['threads']} thread{'s' if bench['threads'] != 1 else ''}, " if bench.get("threads") else ""
        notes.append(f"Latency: ms per call at batch size b{' (' + how + ')' if how else ''}; "
                     f"{threads}measured on: {'; '.join(hardware)}.")
    return notes + (token_notes(data) if run.is_token_task else [])


def token_notes(data: dict[str, Any]) -> list[str]:
    """How words were aligned to word pieces and scored (the recipe's data.label_all_subtokens)."""
    pieces = ("every word piece of a word carried its tag, a B- tag continuing as I- (data.label_all_subtokens: true)"
              if data.get("label_all_subtokens") else
              "only the first word piece of each word carried its tag, later pieces were ignored "
              "(data.label_all_subtokens: false)")
    return [
        "f1, precision and recall are seqeval's entity-level micro averages (conlleval rules: an entity counts "
        "only when its span and type both match); accuracy is per token.",
        f"Word pieces: in training {pieces}; evaluation tags each word by its first piece. Words beyond "
        f"data.max_length ({data.get('max_length')} word pieces, special tokens included) are cut off and not scored.",
    ]


def usage(folder: Path, task_name: str, n_texts: int, token: bool = False) -> dict[str, Any]:
    """Template variables of the usage snippets: which loaders apply to what the folder holds."""
    onnx = onnx_files(folder)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    return {
        "has_torch": (has_torch_weights(folder) or is_adapter(folder)) and not needs_distill_loader(folder),
        "needs_distill_loader": has_torch_weights(folder) and needs_distill_loader(folder),
        "extra_packages": ["bitsandbytes"] * ("quantization_config" in config) + ["peft"] * is_adapter(folder),
        "onnx_file": Path(onnx[0]).name if onnx else None,
        "onnx_subfolder": str(Path(onnx[0]).parent) if onnx and "/" in onnx[0] else None,
        "other_onnx": onnx[1:],
        "example_input": example_input(task_name, n_texts, token),
        "token_task": token,
        "ort_class": f"ORTModelFor{'Token' if token else 'Sequence'}Classification",
        # Token runs: one result per entity (word pieces merged), not per word piece.
        "pipeline_options": ', aggregation_strategy="simple"' if token else "",
    }


def summary_and_facts(run: RunInfo, stage: str, chain: list[str], base: str | None) -> tuple[str, list[tuple[str, str]]]:
    record = run.records[stage]
    teacher = teacher_record(run, chain)
    task_name = run.task_name
    model = run.recipe.get("model") or {}
    base_text = f"[{base}](https://huggingface.co/{base})" if base else f"`{model.get('model')}` (a local model)"
    metrics, _ = artifact_metrics(record)
    value = metrics.get(record["metric"], record["metric_value"])
    teacher_value = teacher.get("metric_value") if teacher else None
    what = "A token classifier (a tag per word)" if run.is_token_task else "A text classifier"
    summary = f"{what} for {task_title(task_name)}, made from {base_text} with `distill`: "
    summary += " → ".join(run.kind(n) for n in chain) + "."
    if teacher and teacher is not record and teacher.get("size_bytes") and record.get("size_bytes"):
        summary += (
            f" It keeps {share(value, teacher_value)} of the teacher's {record['metric']} with "
            f"{share(record['params'], teacher['params'])} of its parameters "
            f"and {share(record['size_bytes'], teacher['size_bytes'])} of its bytes"
        )
        speedups = [f"{teacher[k] / record[k]:.1f}× (batch size {b})" for b, k in latency_keys([record])
                    if teacher.get(k) and record.get(k)]
        summary += f", and runs at {', '.join(speedups)} the teacher's speed (measured side by side)." if speedups else "."
    facts = [
        ("Task", task_fact(task_name)),
        ("Base model", base_text + (f" at revision `{model['revision']}`" if model.get("revision") else "")),
        ("Lineage", " → ".join([f"`{base or 'base model'}`"] + [f"`{n}` ({run.kind(n)})" for n in chain])),
        ("This model", f"{record['metric']} {fmt_metric(value)} ({share(value, teacher_value)} of the teacher), "
         f"{record.get('params', 0) / 1e6:.2f}M parameters, {record.get('size_bytes', 0) / 2**20:.1f} MiB of weights"),
    ]
    return summary, facts


def task_fact(task_name: str) -> str:
    task = TASKS.get(task_name)
    if task is None:
        return f"custom task `{task_name}`"
    if task.is_token_classification:
        tags = f"BIO tags over {', '.join(task.entity_types)}" if task.entity_types else f"tags {', '.join(task.label_names)}"
        return f"{task_title(task_name)} `{task_name}`, token classification ({task.num_labels} {tags})"
    return f"GLUE `{task_name}` ({', '.join(task.label_names) if task.label_names else 'regression'})"


def render_card(run: RunInfo, stage: str, repo_id: str, *, license: str = "apache-2.0", revision: str | None = None,
                template_path: str | Path | None = None) -> ModelCard:
    """The README.md of a repo holding `stage`'s artifact (on branch `revision`, default main).
    `run.records[stage]` must carry its evaluation (see run_info.require_evaluation)."""
    template = Path(template_path or TEMPLATE_PATH)
    if not template.is_file():
        raise DistillError(f"model card template {template} not found")
    chain = lineage(run, stage)
    base = base_model_id(run.recipe)
    task_name = run.task_name
    task = TASKS.get(task_name)
    n_texts = len(task.text_fields) if task else len((run.recipe.get("data") or {}).get("text_fields") or [1])
    summary, facts = summary_and_facts(run, stage, chain, base)
    headers, rows = results_table(run, stage, teacher_record(run, chain))
    entity_headers, entity_rows = entity_table(run, stage) if run.is_token_task else ([], [])
    steps = [
        {"name": n, "kind": run.kind(n), "text": describe_stage(run, n, task_name),
         "parent": f"`{parent_stage(run, n) or base or 'the base model'}`"}
        for n in chain
    ]
    return ModelCard.from_template(
        card_data(run, stage, repo_id, license),
        template_path=str(template),
        model_title=repo_id.split("/")[-1],
        summary=summary,
        facts=facts,
        results_intro=f"Every stage of the run, evaluated on the validation split of {task_title(task_name)}; "
        f"this repository holds **{stage}**.",
        headers=headers,
        rows=rows,
        entity_headers=entity_headers,
        entity_rows=entity_rows,
        result_notes=result_notes(run, stage, chain, latencies=bool(latency_keys(list(run.records.values())))),
        steps=steps,
        repo_id=repo_id,
        revision=revision,
        reproduce_command=reproduce_command(run, repo_id, revision),
        original_command=run.report.get("command", "?"),
        run_date=run.report.get("date"),
        recipe_name=run.recipe.get("name") or run.report.get("recipe"),
        stage_name=stage,
        recipe_hash=run.report.get("recipe_hash", "?"),
        recipe_fence="````" if "```" in run.recipe_text else "```",
        recipe_text=run.recipe_text.rstrip("\n"),
        pipeline_task=hub_task(run)[0],
        data_title=task_title(task_name) if run.is_token_task else "GLUE",
        **usage(run.folder(stage), task_name, n_texts, run.is_token_task),
    )

"""The GLUE table across runs (DistilBERT README style): one row per model kind, one column per task.

Each `distill run recipes/glue/<task>.yaml` writes `runs/glue_<task>/report.json`; this module reads
several of them and scores every row's artifact on every task, ×100, as the GLUE leaderboard does:
CoLA = Matthews correlation; SST-2, QNLI, RTE, WNLI (and MNLI, matched) = accuracy; MRPC (and QQP) =
mean of F1 and accuracy; STS-B = mean of Pearson and Spearman (the leaderboard's convention for
two-metric tasks). The metric keys are those distill.data.metrics produces (evaluate's glue names).
Multi-seed stages score each seed and report the mean and sample standard deviation over seeds.
The macro score is the mean over all tasks in the table, and "–" for a row that misses one of them:
an average over fewer tasks would not compare with the others.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
from pathlib import Path
from typing import Any

from distill import DistillError
from distill.machine import code_commit

# task -> (display name, metric label, metric keys averaged into the score); DistilBERT's column order.
# distill does not run MNLI or QQP yet; their keys are those of evaluate's glue metric.
GLUE_TASKS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "cola": ("CoLA", "MCC", ("matthews_correlation",)),
    "mnli": ("MNLI", "acc", ("accuracy",)),
    "mrpc": ("MRPC", "F1/acc", ("f1", "accuracy")),
    "qnli": ("QNLI", "acc", ("accuracy",)),
    "qqp": ("QQP", "F1/acc", ("f1", "accuracy")),
    "rte": ("RTE", "acc", ("accuracy",)),
    "sst2": ("SST-2", "acc", ("accuracy",)),
    "stsb": ("STS-B", "Pearson/Spearman", ("pearson", "spearmanr")),
    "wnli": ("WNLI", "acc", ("accuracy",)),
}

# (stage name in recipes/glue/*.yaml, row label), in table order.
ROWS: tuple[tuple[str, str], ...] = (
    ("teacher", "teacher"),
    ("student", "KD student"),
    ("student_transfer", "KD student + transfer set"),
    ("baseline", "no-KD baseline"),
    ("baseline_teacher_init", "ablation: teacher-initialised, hard labels"),
    ("student_int8", "int8 student"),
    ("compressed_int8", "compressed (prune + trim vocab + int8)"),
    # The ablation of the KD objective (recipes/glue/rte.yaml) and the int8 paths of the pruned
    # student (issue 14): rows of the tasks that run them.
    ("student_hidden", "ablation: KD + hidden MSE"),
    ("student_attention", "ablation: KD + attention KL"),
    ("pruned", "pruned student (fp32)"),
    ("pruned_iterative", "pruned in 3 steps (fp32)"),
    ("pruned_int8_dynamic", "pruned, int8 dynamic PTQ"),
    ("pruned_int8_static", "pruned, int8 static PTQ (min/max)"),
    ("pruned_int8_static_percentile", "pruned, int8 static PTQ (percentile)"),
    ("pruned_qat", "pruned, int8 QAT"),
)
# Shown only when some report has the stage.
OPTIONAL_ROWS = frozenset({"student_transfer", "student_hidden", "student_attention", "pruned", "pruned_iterative",
                           "pruned_int8_dynamic", "pruned_int8_static", "pruned_int8_static_percentile", "pruned_qat"})

# record key -> (column header, scale to the shown unit)
EFFICIENCY_FIELDS: dict[str, tuple[str, float]] = {
    "params": ("params (M)", 1e-6),
    "size_bytes": ("size (MiB)", 1 / 2**20),
    "latency_ms_bs1": ("ms b=1", 1.0),
    "speedup_vs_teacher_bs1": ("× teacher b=1", 1.0),
}

MACRO_DEFINITION = (
    "Scores are GLUE dev-set metrics ×100: CoLA Matthews correlation; MRPC and QQP the mean of F1 and accuracy; "
    "STS-B the mean of Pearson and Spearman (the GLUE leaderboard's convention for two-metric tasks); the other "
    "tasks accuracy. Multi-seed stages: mean ± sample standard deviation over seeds of the per-seed score. "
    "macro: the mean of a row's task scores over all tasks in the table, – when the row misses one of them "
    "(an average over fewer tasks would not compare). % teacher: the row's macro over the teacher's."
)


def task_score(task: str, metrics: dict[str, float]) -> float:
    """The GLUE score (×100) of one artifact's dev metrics on one task."""
    keys = GLUE_TASKS[task][2]
    missing = [k for k in keys if metrics.get(k) is None]
    if missing:
        raise DistillError(f"{task} metrics lack {', '.join(missing)} (have: {', '.join(metrics) or 'none'})")
    return 100 * statistics.fmean(metrics[k] for k in keys)


def load_report(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """(report.json path, its contents) of a run folder or a report.json; DistillError naming the path."""
    path = Path(path)
    file = path / "report.json" if path.is_dir() else path
    if not file.is_file():
        raise DistillError(f"{path}: not a run folder with a report.json, nor a report.json file")
    try:
        report = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DistillError(f"{file}: not a JSON report ({err})") from None
    if not isinstance(report, dict) or not isinstance(report.get("stages"), list) or "task" not in report:
        raise DistillError(f"{file}: not a distill run report (no task or stages)")
    if report["task"] not in GLUE_TASKS:
        raise DistillError(f"{file}: task {report['task']!r} is not a GLUE task ({', '.join(GLUE_TASKS)})")
    return file, report


def stage_score(task: str, record: dict[str, Any]) -> dict[str, Any]:
    """{mean, std, n} of one stage on one task: over its seeds when it has several."""
    if record.get("seeds"):
        scores = [task_score(task, seed["metrics"]) for seed in record["seeds"]]
        return {"mean": statistics.fmean(scores), "std": statistics.stdev(scores) if len(scores) > 1 else None,
                "n": len(scores), "seed_scores": scores}
    return {"mean": task_score(task, record["metrics"]), "std": None, "n": 1}


def glue_rows(reports: dict[str, tuple[Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The table's rows: per task score cells, macro, % teacher and mean efficiency fields."""
    tasks = list(reports)
    records = {task: {r["stage"]: r for r in report["stages"]} for task, (_, report) in reports.items()}
    rows = []
    for stage, label in ROWS:
        has = [task for task in tasks if stage in records[task]]
        if stage in OPTIONAL_ROWS and not has:
            continue
        scores = {}
        for task in tasks:
            try:
                scores[task] = stage_score(task, records[task][stage]) if task in has else None
            except DistillError as err:
                raise DistillError(f"{reports[task][0]}: stage {stage}: {err}") from None
        macro = statistics.fmean(scores[t]["mean"] for t in tasks) if tasks and len(has) == len(tasks) else None
        efficiency = {}
        for key in EFFICIENCY_FIELDS:
            values = [records[t][stage][key] for t in has if records[t][stage].get(key) is not None]
            efficiency[key] = {"mean": statistics.fmean(values) if values else None, "n_tasks": len(values)}
        rows.append({"stage": stage, "label": label, "tasks": has, "scores": scores, "macro": macro,
                     "efficiency": efficiency})
    teacher_macro = next((r["macro"] for r in rows if r["stage"] == "teacher"), None)
    for row in rows:
        row["percent_of_teacher"] = (100 * row["macro"] / teacher_macro
                                     if row["macro"] is not None and teacher_macro else None)
    return rows


def glue_summary(report_paths: list[str | Path], command: str = "distill report --glue",
                 reruns: list[str | Path] = ()) -> dict[str, Any]:
    """The JSON-able GLUE summary of these runs (one report per task). Each of `reruns` is the
    report of a partial re-run (`distill run --stages ...`) of a task given in `report_paths`: its
    stages replace the same-named ones of that task's report, e.g. a stage re-run after a fix."""
    loaded: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in report_paths:
        file, report = load_report(path)
        if report["task"] in loaded:
            raise DistillError(f"{file}: a second report of task {report['task']!r} "
                               f"(the first: {loaded[report['task']][0]}); give a partial re-run with --rerun")
        loaded[report["task"]] = (file, report)
    taken: dict[str, list[dict[str, Any]]] = {task: [] for task in loaded}
    # stage name -> record; a re-run's record takes its stage's place, a new stage goes last.
    stages = {task: {r["stage"]: r for r in report["stages"]} for task, (_, report) in loaded.items()}
    for path in reruns:
        file, rerun = load_report(path)
        if rerun["task"] not in loaded:
            raise DistillError(f"{file}: a re-run of task {rerun['task']!r}, which has no report among --glue")
        stages[rerun["task"]].update((r["stage"], r) for r in rerun["stages"])
        taken[rerun["task"]].append({"report": rerun, "report_path": str(file), "stages": [r["stage"] for r in rerun["stages"]]})
    ordered = [task for task in GLUE_TASKS if task in loaded]
    merged = {task: (loaded[task][0], {**loaded[task][1], "stages": list(stages[task].values())}) for task in ordered}
    return {
        "tasks": {task: {"report": loaded[task][1], "report_path": str(loaded[task][0]), "reruns": taken[task]}
                  for task in ordered},
        "rows": glue_rows(merged),
        "macro_definition": MACRO_DEFINITION,
        "rendered_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": code_commit(),
        "command": command,
    }


# ---------------------------------------------------------------- markdown


def short_commit(commit: str) -> str:
    return commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")


def _score_cell(score: dict[str, Any] | None) -> str:
    if score is None:
        return "–"
    return f"{score['mean']:.2f}" + (f" ± {score['std']:.2f}" if score["std"] is not None else "")


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _efficiency_cell(row: dict[str, Any], key: str) -> str:
    cell = row["efficiency"][key]
    if cell["mean"] is None:
        return "–"
    scale = EFFICIENCY_FIELDS[key][1]
    text = f"{cell['mean'] * scale:.2f}" + ("×" if key.startswith("speedup") else "")
    # A mean over part of the row's tasks is labelled, not passed off as the whole.
    return text + (f" ({cell['n_tasks']}/{len(row['tasks'])} tasks)" if cell["n_tasks"] < len(row["tasks"]) else "")


def _provenance(entry: dict[str, Any]) -> str:
    report = entry["report"]
    return (f"`{entry['report_path']}`, {report.get('date', '?')}, `{report.get('command', '?')}`; {report.get('machine', '?')}"
            + (f"; commit {short_commit(report['commit'])}" if report.get("commit") else ""))


def glue_markdown(summary: dict[str, Any]) -> str:
    """The score table and the size/speed table, with the definitions under them."""
    tasks = list(summary["tasks"])
    rows = summary["rows"]
    headers = ["model", "macro", "% teacher"] + [f"{GLUE_TASKS[t][0]} ({GLUE_TASKS[t][1]})" for t in tasks]
    lines = ["## GLUE dev scores (×100)", "", "| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    for row in rows:
        cells = [row["label"], _number(row["macro"], 2), _number(row["percent_of_teacher"], 1)]
        lines.append("| " + " | ".join(cells + [_score_cell(row["scores"][t]) for t in tasks]) + " |")
    seeds = sorted({s["n"] for row in rows for s in row["scores"].values() if s and s["n"] > 1})
    lines += ["", MACRO_DEFINITION + (f" Seeds per multi-seed stage: {', '.join(map(str, seeds))}." if seeds else "")]

    headers = ["model"] + [header for header, _ in EFFICIENCY_FIELDS.values()]
    lines += ["", "## Size and batch-1 speed (mean over tasks)", "",
              "| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    for row in rows:
        lines.append("| " + " | ".join([row["label"]] + [_efficiency_cell(row, key) for key in EFFICIENCY_FIELDS]) + " |")
    lines += ["", "Latency: each run's own benchmark (its report's settings: threads, sequence length); × teacher: "
              "the teacher's batch-1 latency over the row's, measured in the same process, then averaged over tasks.",
              "", "Runs:"]
    for task, entry in summary["tasks"].items():
        lines.append(f"- {GLUE_TASKS[task][0]}: " + _provenance(entry))
        lines += [f"  - its stages {', '.join(rerun['stages'])} from the re-run " + _provenance(rerun)
                  for rerun in entry.get("reruns", [])]
    lines += ["", f"Rendered {summary['rendered_at']} by `{summary['command']}`"
              + (f" at commit {short_commit(summary['commit'])}" if summary["commit"] else "") + "."]
    return "\n".join(lines)

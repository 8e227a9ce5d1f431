"""The run's report: report.json (the results format benchmarks/ keeps), report.md and a table
on the terminal, rewritten after every stage so an interrupted run still reports what it did.
When the artifacts were benchmarked, records carry latency/throughput/memory, the ratios to the
teacher measured in the same process, and report.png plots metric against latency and size."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import re
from pathlib import Path
from typing import Any

from distill.machine import code_commit, cpu_info, package_versions
from distill.recipe import Recipe
from distill.reporting.speed_front import markdown_section, plot_front, target_records

PLOT_FILE = "report.png"
LABEL_CORNERS = ((6, 6, "left"), (6, -13, "left"), (-6, 6, "right"), (-6, -13, "right"))


def machine_info() -> str:
    import torch

    cpuinfo = cpu_info()
    cpu = cpuinfo.get("model name") or platform.processor() or platform.machine()
    # The same model name hides different vector units; they decide int8/bf16 speed.
    flags = [f for f in ISA_FLAGS if f in cpuinfo.get("flags", "").split()]
    isa = f" ({' '.join(flags)})" if flags else ""
    return f"{cpu}{isa}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), {platform.system()}"


def measured_on() -> dict[str, Any]:
    """Where a figure was measured: the machine, the key packages' versions and the code's commit."""
    return {"machine": machine_info(), "packages": package_versions(), "commit": code_commit()}


ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def reference_record(records: list[dict[str, Any]], name: str | None = None) -> dict[str, Any] | None:
    """What ratios are taken against: the named record, else the first teacher stage, else the first."""
    if not records:
        return None
    if name is not None:
        return next((r for r in records if r["stage"] == name), None)
    return next((r for r in records if r.get("kind") == "teacher"), records[0])


def batch_sizes(records: list[dict[str, Any]]) -> list[int]:
    found = {int(m.group(1)) for r in records for k in r if (m := re.fullmatch(r"latency_ms_bs(\d+)", k))}
    return sorted(found)


def with_teacher_ratios(records: list[dict[str, Any]], reference: str | None = None) -> list[dict[str, Any]]:
    """Copies of the records with share_of_teacher, size_reduction_vs_teacher and, when timed,
    speedup_vs_teacher_bs<B> (teacher latency / this latency, same process)."""
    teacher = reference_record(records, reference)
    if teacher is None:
        return records
    out = []
    for record in records:
        r = dict(record)
        same_metric = r.get("metric", teacher.get("metric")) == teacher.get("metric")  # e.g. not perplexity vs accuracy
        r["share_of_teacher"] = _ratio(r.get("metric_value"), teacher.get("metric_value")) if same_metric else None
        r["size_reduction_vs_teacher"] = _ratio(teacher.get("size_bytes"), r.get("size_bytes"))
        for b in batch_sizes([r, teacher]):
            r[f"speedup_vs_teacher_bs{b}"] = _ratio(teacher.get(f"latency_ms_bs{b}"), r.get(f"latency_ms_bs{b}"))
        out.append(r)
    return out


def _ratio(a, b) -> float | None:
    return a / b if a is not None and b else None


def build_report(recipe: Recipe | None, task, records: list[dict[str, Any]], command: str, *,
                 benchmark: dict | None = None, reference: str | None = None, name: str | None = None) -> dict[str, Any]:
    report = {
        "recipe": recipe.name if recipe is not None else name,
        "recipe_hash": recipe.hash() if recipe is not None else None,
        "task": task.name,
        "metric": task.primary_metric,
        "command": command,
        **measured_on(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "stages": with_teacher_ratios(records, reference),
    }
    teacher = reference_record(records, reference)
    report["reference"] = teacher["stage"] if teacher else None
    if benchmark:
        report["benchmark"] = benchmark
    return report


def write_report(run_dir: Path, recipe: Recipe | None, task, records: list[dict[str, Any]], command: str, *,
                 benchmark: dict | None = None, reference: str | None = None, name: str | None = None) -> dict[str, Any]:
    report = build_report(recipe, task, records, command, benchmark=benchmark, reference=reference, name=name)
    run_dir = Path(run_dir)
    (run_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (run_dir / "report.md").write_text(markdown_table(report) + "\n")
    if batch_sizes(report["stages"]) or target_records(report):
        plot_report(report, run_dir / PLOT_FILE)
    print_table(report)
    return report


# ---------------------------------------------------------------- tables


def _metric(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}" if abs(value) <= 1 else f"{value:.4f}"


def _columns(report: dict[str, Any]) -> list[tuple[str, Any]]:
    """(header, record -> cell) pairs; latency columns only once something was timed."""
    timed = batch_sizes(report["stages"])
    columns: list[tuple[str, Any]] = [
        ("stage", lambda r: r["stage"]),
        ("kind", lambda r: r["kind"]),
    ]
    if timed:
        columns.append(("backend", lambda r: f"{r.get('backend', '?')} {r.get('precision', '')}".strip()))
    columns += [
        ("params", lambda r: f"{r['params'] / 1e6:.2f}M"),
        ("size", lambda r: f"{r['size_bytes'] / 2**20:.1f} MiB"),
        ("metric", _metric_cell),
        ("% teacher", lambda r: f"{100 * r['share_of_teacher']:.1f}" if r.get("share_of_teacher") is not None else "-"),
    ]
    for b in timed:
        columns.append((f"ms b={b}", lambda r, b=b: f"{r[f'latency_ms_bs{b}']:.1f}" if r.get(f"latency_ms_bs{b}") else "-"))
        columns.append((f"× b={b}", lambda r, b=b: _times(r.get(f"speedup_vs_teacher_bs{b}"))))
    if any(r.get("peak_memory_bytes") for r in report["stages"]):
        columns.append(("peak RSS", lambda r: f"{r['peak_memory_bytes'] / 2**20:.0f} MiB" if r.get("peak_memory_bytes") else "-"))
    if not timed:
        columns.append(("train s", lambda r: f"{r.get('train_seconds', 0):.0f}"))
        columns.append(("samples/s", lambda r: f"{r['samples_per_second']:.0f}" if r.get("samples_per_second") else "-"))
    return columns


def _metric_cell(record: dict[str, Any]) -> str:
    text = _metric(record["metric_value"])
    if "metric_std" in record:
        text += f" ± {100 * record['metric_std']:.2f} (n={len(record['seeds'])})"
    return text


def _threads(count) -> str:
    return f"{count} thread" + ("" if count == 1 else "s")


def _times(ratio: float | None) -> str:
    return f"{ratio:.2f}×" if ratio is not None else "-"


def markdown_table(report: dict[str, Any]) -> str:
    columns = _columns(report)
    lines = [
        f"# {report['recipe']} — {report['task']} ({report['metric']}, ×100)",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}  ",
        *([f"Packages: {', '.join(f'{k} {v}' for k, v in report['packages'].items())}  "] if report.get("packages") else []),
        f"Date: {report['date']}",
    ]
    bench = report.get("benchmark")
    if bench:
        lines += [
            "",
            f"Latency (ms per batch): {bench['timing']}; {_threads(bench['threads'])} (torch and ONNX Runtime); "
            f"inputs: {bench['inputs']}. × = speed-up over `{report['reference']}` measured in the same process."
            + (f" Peak RSS: a fresh process loading one artifact and running one batch of {max(bench['batch_sizes'])}"
               f" (torch and transformers alone: {bench['baseline_memory_bytes'] / 2**20:.0f} MiB)." if bench.get("baseline_memory_bytes") else ""),
        ]
    lines += [
        "",
        "| " + " | ".join(h for h, _ in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(cell(r) for _, cell in columns) + " |" for r in report["stages"]]
    lines += markdown_section(report)
    if bench or target_records(report):
        lines += ["", f"![{report['metric']} against latency and size]({PLOT_FILE})"]
    return "\n".join(lines)


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    columns = _columns(report)
    table = Table(title=f"{report['recipe']}: {report['task']} dev {report['metric']} (x100)")
    for header, _ in columns:
        table.add_column(header, justify="left" if header in {"stage", "kind", "backend"} else "right")
    for record in report["stages"]:
        table.add_row(*(cell(record) for _, cell in columns))
    console = Console(stderr=False)
    if not console.is_terminal:  # logs and pipes: do not squeeze the wide benchmark table into 80 columns
        console = Console(stderr=False, width=220)
    console.print(table)


# ---------------------------------------------------------------- plot


def plot_report(report: dict[str, Any], path: Path) -> Path | None:
    """Metric against batch-1 latency and against file size, one labelled point per stage; beside
    them, the candidates of any speed target (`plot_front`)."""
    try:
        import matplotlib
    except ImportError:
        print(f"report: matplotlib is not installed, no {path.name} (pip install 'distill[report]')")
        return None
    matplotlib.use("Agg")
    import matplotlib.lines
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    records = [r for r in report["stages"] if r.get("metric_value") is not None
               and r.get("metric", report["metric"]) == report["metric"]]  # one metric per y axis
    timed, front = bool(batch_sizes(records)), bool(target_records(report))
    scale = 100 if all(abs(r["metric_value"]) <= 1 for r in records) else 1
    backends = sorted({f"{r.get('backend', '?')} {r.get('precision', '')}".strip() for r in records})
    markers = dict(zip(backends, "osD^vP*Xh<>"))
    fig, axes = plt.subplots(1, 2 * timed + front, figsize=(6 * (2 * timed + front), 5.2), squeeze=False)
    axes = list(axes[0])
    if front:
        plot_front(axes.pop(), report)
    if timed:
        axes[1].sharey(axes[0])
        axes[1].tick_params(labelleft=False)
    b = batch_sizes(records)[0] if timed else None
    panels = [(f"latency_ms_bs{b}", f"latency at batch {b} (ms, log scale)"), ("size_bytes", "weights on disk (MiB, log scale)")] if timed else []
    teacher = reference_record(records, report.get("reference"))
    for ax, (key, label) in zip(axes, panels):
        points = [((r[key] / 2**20 if key == "size_bytes" else r[key]), scale * r["metric_value"], r)
                  for r in records if r.get(key) is not None]
        y_span = (max(p[1] for p in points) - min(p[1] for p in points)) or 1.0
        placed: list[tuple[float, float]] = []
        for x, y, r in points:
            backend = f"{r.get('backend', '?')} {r.get('precision', '')}".strip()
            ax.scatter(x, y, marker=markers[backend], s=70, zorder=3, label=backend, color=f"C{backends.index(backend)}")
            # Points close to ones already labelled take the next free corner for their label.
            crowd = sum(abs(math.log10(x / px)) < 0.3 and abs(y - py) < 0.06 * y_span for px, py in placed)
            dx, dy, align = LABEL_CORNERS[crowd % len(LABEL_CORNERS)]
            ax.annotate(r["stage"], (x, y), textcoords="offset points", xytext=(dx, dy), ha=align, fontsize=9)
            placed.append((x, y))
        if teacher is not None:
            ax.axhline(scale * teacher["metric_value"], color="grey", linestyle="--", linewidth=1, zorder=1)
            ax.axhline(0.97 * scale * teacher["metric_value"], color="grey", linestyle=":", linewidth=1, zorder=1)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(label)
        ax.grid(True, which="major", alpha=0.3)
        ax.margins(x=0.2, y=0.15)
    if not timed:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path
    axes[0].set_ylabel(f"dev {report['metric']}" + (" (×100)" if scale == 100 else ""))
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if teacher is not None:
        unique[f"{teacher['stage']} (reference)"] = matplotlib.lines.Line2D([], [], color="grey", linestyle="--")
        unique["97 % of reference"] = matplotlib.lines.Line2D([], [], color="grey", linestyle=":")
    fig.legend(unique.values(), unique.keys(), loc="lower center", ncol=min(4, len(unique)), fontsize=9, frameon=False)
    bench = report.get("benchmark") or {}
    fig.suptitle(f"{report['recipe']} — {report['task']}: {report['metric']} vs latency and size "
                 f"({_threads(bench.get('threads', '?'))}, seq length {bench.get('seq_length', '?')})")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

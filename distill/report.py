"""The run's report: report.json (the results format benchmarks/ keeps), report.md and a table
on the terminal, rewritten after every stage so an interrupted run still reports what it did."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

from distill.recipe import Recipe


def machine_info() -> str:
    import torch

    cpu = _cpu_model() or platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), {platform.system()}"


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def build_report(recipe: Recipe, task, records: list[dict[str, Any]], command: str) -> dict[str, Any]:
    return {
        "recipe": recipe.name,
        "recipe_hash": recipe.hash(),
        "task": task.name,
        "metric": task.primary_metric,
        "command": command,
        "machine": machine_info(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "stages": records,
    }


def write_report(run_dir: Path, recipe: Recipe, task, records: list[dict[str, Any]], command: str) -> dict[str, Any]:
    report = build_report(recipe, task, records, command)
    (run_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (run_dir / "report.md").write_text(markdown_table(report) + "\n")
    print_table(report)
    return report


def _row(record: dict[str, Any]) -> list[str]:
    value = record["metric_value"]
    metric = f"{100 * value:.2f}" if abs(value) <= 1 else f"{value:.4f}"
    if "metric_std" in record:
        metric += f" ± {100 * record['metric_std']:.2f} (n={len(record['seeds'])})"
    speed = record.get("samples_per_second")
    return [
        record["stage"],
        record["kind"],
        f"{record['params'] / 1e6:.2f}M",
        f"{record['size_bytes'] / 2**20:.1f} MiB",
        metric,
        f"{record.get('train_seconds', 0):.0f}",
        f"{speed:.0f}" if speed else "-",
    ]


HEADERS = ["stage", "kind", "params", "size", "metric", "train s", "samples/s"]


def markdown_table(report: dict[str, Any]) -> str:
    lines = [
        f"# {report['recipe']} — {report['task']} ({report['metric']}, ×100)",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}  ",
        f"Date: {report['date']}",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += ["| " + " | ".join(_row(r)) + " |" for r in report["stages"]]
    return "\n".join(lines)


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report['recipe']}: {report['task']} dev {report['metric']} (x100)")
    for header in HEADERS:
        table.add_column(header, justify="left" if header in {"stage", "kind"} else "right")
    for record in report["stages"]:
        table.add_row(*_row(record))
    Console(stderr=False).print(table)

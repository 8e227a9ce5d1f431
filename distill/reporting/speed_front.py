"""The report's part for prune stages with a speed target: what each candidate shape cost and kept
(a table in report.md, an accuracy-against-latency front in report.png)."""

from __future__ import annotations

from typing import Any


def target_records(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in report["stages"] if r.get("speed_target")]


def _shape(row: dict) -> str:
    heads, neurons = row["heads_per_layer"], row["neurons_per_layer"]
    return f"{len(row['layers_kept'])} layers {row['layers_kept']}, heads {heads}, FFN {neurons}"


def markdown_section(report: dict[str, Any]) -> list[str]:
    """Per target stage: the target, where and how it was measured, the latency model's error, and
    one row per candidate (the chosen one in bold)."""
    lines: list[str] = []
    for record in target_records(report):
        entry = record["speed_target"]
        sizes = sorted(entry["budgets_ms"], key=int)
        goal = entry["target"].get("speedup") or entry["target"].get("latency_ms")
        budgets = ", ".join(f"{entry['budgets_ms'][b]:.2f} ms at batch {b}" for b in sizes)
        unit = "×" if "speedup" in entry["target"] else " ms"
        score = next(k for k in entry["candidates"][0] if k.startswith("selection_"))
        lines += [
            "", f"## Speed target of `{record['stage']}`", "",
            f"Target: {', '.join(f'{goal[b]:g}{unit} at batch {b}' for b in sizes)} against `{entry['against']}`, "
            f"measured as {entry['measured_as']} on {entry['machine']} ({entry['threads']} threads, seq length {entry['seq_length']}). "
            f"Budgets: {budgets}. "
            f"Latency model (leave-one-out max error): "
            + ", ".join(f"batch {b} {100 * (m['loo_max_relative_error'] or m['max_relative_error']):.1f} %" for b, m in entry["latency_models"].items())
            + f". {'Met' if entry['met'] else '**Not met**'}: "
            + ", ".join(f"{entry['speedup'][b]:.2f}× / {entry['measured_ms'][b]:.2f} ms at batch {b}" for b in sizes) + ".",
            "",
            f"| shape | importance kept | predicted ms | measured ms | speed-up | {score.removeprefix('selection_')} (selection) | meets |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in entry["candidates"]:
            cells = [_shape(row), f"{row['importance_kept']:.3f}",
                     " / ".join(f"{row['predicted_ms'][b]:.2f}" for b in sizes),
                     " / ".join(f"{row['measured_ms'][b]:.2f}" for b in sizes),
                     " / ".join(f"{row['speedup'][b]:.2f}×" for b in sizes),
                     f"{100 * row[score]:.2f}", "yes" if row["meets_target"] else "no"]
            if row["chosen"]:
                cells = [f"**{c}**" for c in cells]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot_front(ax, report: dict[str, Any]) -> None:
    """Each target stage's shapes: selection-split metric against latency at the smallest target
    batch size; the screened ones as pruned and the recovered candidates (measured),
    the kept one ringed, the budget as a dashed line."""
    for i, record in enumerate(target_records(report)):
        entry = record["speed_target"]
        b = min(entry["budgets_ms"], key=int)
        score = next(k for k in entry["candidates"][0] if k.startswith("selection_"))
        screened = entry.get("screened") or []
        ax.scatter([row["measured_ms"][b] for row in screened], [100 * row[score] for row in screened], s=12, color="grey",
                   alpha=0.6, zorder=2, label="screened as pruned, before recovery" if i == 0 else None)
        points = [(row["measured_ms"][b], 100 * row[score], row) for row in entry["candidates"]]
        ax.scatter([p[0] for p in points], [p[1] for p in points], color=f"C{i}", zorder=3,
                   label=f"{record['stage']}: recovered candidates (measured ms)")
        for x, y, row in points:
            ax.annotate(f"{len(row['layers_kept'])}L", (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
            if row["chosen"]:
                ax.scatter([x], [y], s=220, facecolors="none", edgecolors=f"C{i}", linewidths=1.5, zorder=4)
        ax.axvline(entry["budgets_ms"][b], color=f"C{i}", linestyle="--", linewidth=1)
        ax.set_xlabel(f"measured latency at batch {b} (ms; dashed: budget)")
    ax.set_title("speed-target candidates (ringed: kept)", fontsize=10)
    ax.set_ylabel("selection-split metric (×100)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)

"""Every encoder family through every stage: a tiny random checkpoint of each family (with its own
kind of tokenizer, trained on real text) runs teacher -> distill -> baseline -> lora -> prune ->
factorize -> trim_vocab -> onnx dynamic / static -> qat -> bnb -> publish (dry run) on an SST-2
subset, through `distill run`. Then each artifact is reloaded outside the run and checked
(scripts/architecture_checks.py). Writes benchmarks/architectures.json and prints the matrix.

    .venv/bin/python scripts/architecture_matrix.py [--families bert roberta ...] [--out benchmarks/architectures.json]
    .venv-legacy/bin/python scripts/architecture_matrix.py --out benchmarks/architectures_legacy.json   # transformers 4.57
    .venv/bin/python scripts/architecture_matrix.py --readme README.md   # the README block from both files
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "scripts")]

from architecture_checks import check_artifact
from families import TOKENIZER_KINDS, tiny_checkpoint

from distill.reporting.report import measured_on

# Where an ONNX artifact's fp32 torch model is, to compare predictions with.
ONNX_SOURCES = {"onnx_dynamic": "trim_vocab", "onnx_static": "trim_vocab", "qat": "trim_vocab"}
STAGES = ["teacher", "distill", "baseline", "lora", "prune", "factorize", "trim_vocab", "onnx_dynamic", "onnx_static", "qat",
          "bnb", "publish"]

RECIPE = """\
name: {name}
task: sst2
seed: 7
mixed_precision: "no"
data: {{max_length: 32, train_limit: 3000}}
model: {{model: "{model}"}}
benchmark: {{enabled: false}}
stages:
  - {{kind: teacher, name: teacher, train: {{epochs: 2, learning_rate: 2.0e-3, batch_size: 32}}}}
  - kind: distill
    name: distill
    student: {{layers: [0, 2]}}
    loss: {{temperature: 2.0, alpha_kd: 1.0, alpha_hard: 1.0, alpha_hidden: 1.0, alpha_attention: 1.0}}
    train: {{epochs: 1, learning_rate: 1.0e-3, batch_size: 32}}
  - {{kind: baseline, name: baseline, student: {{layers: [0, 2]}}, train: {{epochs: 1, learning_rate: 1.0e-3, batch_size: 32}}}}
  - kind: distill
    name: lora
    student: {{layers: [0, 2]}}
    lora: {{rank: 4}}
    train: {{epochs: 1, learning_rate: 1.0e-3, batch_size: 32}}
  - kind: prune
    name: prune
    input: distill
    heads: {{share: 0.5}}
    ffn: {{share: 0.5}}
    importance: {{batches: 2}}
  - {{kind: factorize, name: factorize, input: prune, linear: {{modules: [ffn_in, ffn_out], ratio: 0.25}}}}
  - {{kind: trim_vocab, name: trim_vocab, input: prune}}
  - {{kind: onnx, name: onnx_dynamic, input: trim_vocab, quantization: dynamic}}
  - {{kind: onnx, name: onnx_static, input: trim_vocab, quantization: static, calibration_examples: 64}}
  - {{kind: qat, name: qat, input: trim_vocab, calibration_examples: 64, train: {{epochs: 1, batch_size: 32}}}}
  - {{kind: bnb, name: bnb, input: distill, bits: 8}}
  - {{kind: publish, name: publish, stage: trim_vocab, repo_id: distill-matrix/{name}, dry_run: true}}
"""


def run_family(model_type: str, work: Path, data_dir: str) -> dict:
    checkpoint = tiny_checkpoint(model_type, work / "checkpoints")
    name = f"matrix-{model_type}"
    recipe = work / f"{name}.yaml"
    recipe.write_text(RECIPE.format(name=name, model=checkpoint))
    started = time.perf_counter()
    env = {**os.environ, "DISTILL_DATA_DIR": data_dir}
    proc = subprocess.run([sys.executable, "-m", "distill", "run", str(recipe), "--output-dir", str(work / "runs")],
                          capture_output=True, text=True, env=env, cwd=work, check=False)
    run_dir = work / "runs" / name
    stages, checks = {}, {}
    for stage in STAGES:
        record = run_dir / stage / "metrics.json"
        if record.is_file():
            stages[stage], checks[stage] = check_artifact(run_dir, stage, json.loads(record.read_text()), data_dir,
                                                          ONNX_SOURCES.get(stage))
        else:
            stages[stage] = "not reached"
    if proc.returncode != 0:
        failed = next((s for s in STAGES if stages[s] == "not reached"), None)
        lines = [line for line in proc.stderr.splitlines() if "error" in line.lower()] or proc.stderr.splitlines() or ["(no output)"]
        last = lines[-1].strip()  # the error line, not a progress bar
        if failed:
            stages[failed] = f"failed: {last}"
    return {"model_type": model_type, "tokenizer": TOKENIZER_KINDS[model_type], "stages": stages, "checks": checks,
            "seconds": round(time.perf_counter() - started, 1), "exit_code": proc.returncode}


README_START, README_END = "<!-- support-matrix:start -->", "<!-- support-matrix:end -->"


def render_table(result: dict) -> str:
    """The README's support matrix: one row per family, one column per stage."""
    stages = result["stages"]
    lines = ["| family (model_type) | tokenizer | " + " | ".join(stages) + " |", "|---|---|" + "---|" * len(stages)]
    for model_type, family in result["families"].items():
        cells = ["✓" if family["stages"][s] == "ok" else family["stages"][s].split(":")[0] for s in stages]
        lines.append(f"| {model_type} | {family['tokenizer']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_block(result: dict, legacy: dict | None) -> str:
    """The README's block: the matrix on the current stack, and a line for the legacy stack's run."""
    block = render_table(result)
    if legacy is not None:
        cells = [status for family in legacy["families"].values() for status in family["stages"].values()]
        ok = sum(status == "ok" for status in cells)
        block += (f"\n\nOn the legacy stack (transformers {legacy['packages'].get('transformers')}): {ok} of {len(cells)} cells ok "
                  f"(`benchmarks/architectures_legacy.json`).")
    return block


def render_readme(readme: Path, result: dict, legacy: dict | None) -> None:
    text = readme.read_text()
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    readme.write_text(text[:start] + "\n" + render_block(result, legacy) + "\n" + text[end:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(TOKENIZER_KINDS), choices=list(TOKENIZER_KINDS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "architectures.json")
    parser.add_argument("--data-dir", default=os.environ.get("DISTILL_DATA_DIR") or str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    parser.add_argument("--readme", type=Path, help="only re-render this README's support matrix from --out")
    args = parser.parse_args(argv)
    if args.readme:
        legacy = args.out.with_name(args.out.stem + "_legacy.json")
        render_readme(args.readme, json.loads(args.out.read_text()), json.loads(legacy.read_text()) if legacy.is_file() else None)
        return 0
    os.environ.setdefault("DISTILL_TEST_DATA_DIR", args.data_dir)  # the tokenizers train on its SST-2 text
    with tempfile.TemporaryDirectory() as scratch:
        work = (args.keep or Path(scratch)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        families = {}
        for model_type in args.families:
            families[model_type] = run_family(model_type, work, args.data_dir)
            print(model_type, json.dumps(families[model_type]["stages"]), flush=True)
    result = {"command": "python scripts/architecture_matrix.py " + " ".join(argv or sys.argv[1:]), **measured_on(), "date": time.strftime("%Y-%m-%d"),
              "stages": STAGES, "families": families}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

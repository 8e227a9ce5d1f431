"""SVD factorization curve of a trained student: parameters, linear FLOPs per token, CPU latency
(batch 1 and 32) and accuracy vs kept energy, with and without recovery distillation. Each point
is one `factorize` stage run on the student; the JSON file is the list of those stages' report
records (plus `curve`, `energy`/`rank`, `recovery` and the latency numbers).

    python scripts/bench_lowrank.py --model runs/sst2/student --teacher runs/sst2/teacher \\
        --task sst2 --out benchmarks/sst2_factorization.json --recovery-epochs 1

Energy 1.0 keeps every layer dense (no rank below full saves parameters): the reference point.
`--embedding-ranks` adds points that factorize only the word embeddings (E ≈ A·B).
Quick check (seconds to minutes): add --train-limit 256 --eval-limit 128 --recovery-steps 10
--repeats 3. Points already computed under --work-dir with the same settings are reused.
"""

from __future__ import annotations

import argparse
import sys

from distill.stages.curves import add_common_args, curve_recipe, recovery_block, run_curve, variants
from distill.stages.lowrank import run_factorize_stage

BLOCK_MODULES = ["query", "key", "value", "attention_output", "ffn_in", "ffn_out"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, work_dir="runs/bench_lowrank")
    parser.add_argument("--energies", type=float, nargs="*", default=[1.0, 0.95, 0.9, 0.8, 0.7, 0.5])
    parser.add_argument("--modules", nargs="+", default=BLOCK_MODULES, choices=BLOCK_MODULES)
    parser.add_argument("--embedding-ranks", type=int, nargs="*", default=[], help="points factorizing only the word embeddings")
    return parser.parse_args(argv)


def bench_recipe(args: argparse.Namespace) -> dict:
    """The points: one factorize stage per kept energy (linear layers) or embedding rank."""
    points = [({"linear": {"modules": args.modules, "energy": e}}, f"energy-{round(e * 100)}") for e in args.energies]
    points += [({"embeddings": {"rank": r}}, f"embedding-rank-{r}") for r in args.embedding_ranks]
    stages = []
    for what, name in points:
        for recovered in variants(args):
            stage = {"kind": "factorize", "name": name + ("-recovered" if recovered else ""), "input": "student", **what}
            if recovered:
                stage["recovery"] = recovery_block(args)
            stages.append(stage)
    return curve_recipe("bench-lowrank", args, stages)


def describe(stage) -> dict:
    rule = stage.linear if stage.linear is not None else stage.embeddings
    return {
        "curve": "linear" if stage.linear is not None else "embeddings",
        "energy": rule.energy,
        "rank": rule.rank,
        "modules": stage.linear.modules if stage.linear is not None else ["word_embeddings"],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_curve("scripts/bench_lowrank.py", args, bench_recipe(args), "factorize", run_factorize_stage, describe, argv)


if __name__ == "__main__":
    sys.exit(main())

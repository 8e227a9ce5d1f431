"""Accuracy, parameters and CPU latency vs share of attention heads (and FFN neurons) pruned, with
and without recovery distillation, for a trained student. Each point is one `prune` stage run on
the student; the JSON file is the list of those stages' report records (plus `curve`, `share`,
`recovery` and the latency numbers).

    python scripts/bench_pruning.py --model runs/sst2/student --teacher runs/sst2/teacher \\
        --task sst2 --out benchmarks/sst2_pruning.json --recovery-epochs 1

Quick check (seconds to minutes): add --train-limit 256 --eval-limit 128 --importance-batches 4
--recovery-steps 10 --repeats 3. Points already computed under --work-dir with the same settings are reused.
"""

from __future__ import annotations

import argparse
import sys

from distill.stages.curves import add_common_args, curve_recipe, recovery_block, run_curve, variants
from distill.stages.prune import run_prune_stage


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser, work_dir="runs/bench_pruning")
    parser.add_argument("--head-shares", type=float, nargs="*", default=[0.0, 0.25, 0.5, 0.75])
    parser.add_argument("--ffn-shares", type=float, nargs="*", default=[0.0, 0.25, 0.5, 0.75])
    parser.add_argument("--both-shares", type=float, nargs="*", default=[],
                        help="points removing this share of the heads and the same share of the FFN neurons")
    parser.add_argument("--head-scope", choices=["global", "layer"], default="global")
    parser.add_argument("--min-heads-per-layer", type=int, default=1)
    parser.add_argument("--ffn-scope", choices=["layer", "global"], default="layer")
    parser.add_argument("--ffn-method", choices=["taylor", "magnitude"], default="taylor")
    parser.add_argument("--iterations", type=int, default=1, help="pruning steps (recovery after each)")
    parser.add_argument("--importance-batches", type=int, default=64)
    parser.add_argument("--importance-batch-size", type=int, default=32)
    return parser.parse_args(argv)


def bench_recipe(args: argparse.Namespace) -> dict:
    """The points: one prune stage per curve, share and recovery setting."""
    stages = []
    for curve, shares in (("heads", args.head_shares), ("ffn", args.ffn_shares), ("both", args.both_shares)):
        for share in shares:
            for recovered in variants(args):
                heads = {"heads": {"share": share, "scope": args.head_scope, "min_per_layer": args.min_heads_per_layer}}
                ffn = {"ffn": {"share": share, "scope": args.ffn_scope, "method": args.ffn_method}}
                what = {"heads": heads, "ffn": ffn, "both": {**heads, **ffn}}[curve]
                stage = {
                    "kind": "prune",
                    "name": f"{curve}-{round(share * 100)}{'-recovered' if recovered else ''}",
                    "input": "student",
                    "iterations": args.iterations,
                    "importance": {"batches": args.importance_batches, "batch_size": args.importance_batch_size},
                    **what,
                }
                if recovered:
                    stage["recovery"] = recovery_block(args)
                stages.append(stage)
    return curve_recipe("bench-pruning", args, stages)


def describe(stage) -> dict:
    if stage.heads is not None and stage.ffn is not None:
        return {"curve": "both", "share": stage.heads.share}
    curve = "heads" if stage.heads is not None else "ffn"
    return {"curve": curve, "share": getattr(stage, curve).share}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_curve("scripts/bench_pruning.py", args, bench_recipe(args), "prune", run_prune_stage, describe, argv)


if __name__ == "__main__":
    sys.exit(main())

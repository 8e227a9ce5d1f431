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
import datetime as dt
import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from transformers import AutoTokenizer

from distill.bench import dev_texts, fixed_length_inputs, median_latencies
from distill.errors import DistillError
from distill.models import load_classifier, load_tokenizer
from distill.pipeline import RunContext, prepare_data, stage_fingerprint, task_of
from distill.recipe import validate_recipe
from distill.report import machine_info
from distill.stages.lowrank import run_factorize_stage
from distill.train import resolve_mixed_precision

BLOCK_MODULES = ["query", "key", "value", "attention_output", "ffn_in", "ffn_out"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="trained student folder (a stage artifact)")
    parser.add_argument("--task", required=True, help="GLUE task name, e.g. sst2")
    parser.add_argument("--out", required=True, help="JSON file for the list of records")
    parser.add_argument("--teacher", help="folder of the model recovery distils from (default: the unfactorized student)")
    parser.add_argument("--data-dir", help="GLUE folder (default: $DISTILL_DATA_DIR)")
    parser.add_argument("--work-dir", default="runs/bench_lowrank", help="where each point's factorized model is written")
    parser.add_argument("--energies", type=float, nargs="*", default=[1.0, 0.95, 0.9, 0.8, 0.7, 0.5])
    parser.add_argument("--modules", nargs="+", default=BLOCK_MODULES, choices=BLOCK_MODULES)
    parser.add_argument("--embedding-ranks", type=int, nargs="*", default=[], help="points factorizing only the word embeddings")
    parser.add_argument("--no-plain", action="store_true", help="skip the points without recovery")
    parser.add_argument("--no-recovery", action="store_true", help="skip the points with recovery distillation")
    parser.add_argument("--recovery-epochs", type=float, default=1.0)
    parser.add_argument("--recovery-steps", type=int, help="optimizer steps per recovery (overrides epochs)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--train-limit", type=int)
    parser.add_argument("--eval-limit", type=int)
    parser.add_argument("--holdout-size", type=int, help="train examples that pick recovery checkpoints (default: validation)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "bf16", "fp16"])
    parser.add_argument("--latency-batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seq-length", type=int, default=64, help="dev sentences padded/cut to this many tokens for timing")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, help="torch intra-op threads while timing (default: torch's)")
    return parser.parse_args(argv)


def bench_recipe(args: argparse.Namespace) -> dict:
    """A recipe whose first stages stand for the given folders and whose factorize stages are the points."""
    stages: list[dict] = [{"kind": "teacher", "name": "student", "skip_training": True}]
    if args.teacher:
        stages.append({"kind": "teacher", "name": "teacher", "skip_training": True})
    recovery_train = {"epochs": args.recovery_epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate}
    if args.recovery_steps:
        recovery_train["max_steps"] = args.recovery_steps
    variants = ([False] if not args.no_plain else []) + ([True] if not args.no_recovery else [])
    points = [("linear", {"linear": {"modules": args.modules, "energy": e}}, f"energy-{round(e * 100)}") for e in args.energies]
    points += [("embeddings", {"embeddings": {"rank": r}}, f"embedding-rank-{r}") for r in args.embedding_ranks]
    for curve, what, name in points:
        for recovered in variants:
            stage = {"kind": "factorize", "name": name + ("-recovered" if recovered else ""), "input": "student", **what}
            if recovered:
                stage["recovery"] = {"train": recovery_train, "distill": True}
                if args.teacher:
                    stage["teacher"] = "teacher"
            stages.append(stage)
    data = {"max_length": args.max_length, "train_limit": args.train_limit, "eval_limit": args.eval_limit, "dir": args.data_dir,
            "holdout_size": args.holdout_size}
    return {
        "name": "bench-lowrank",
        "task": args.task,
        "seed": args.seed,
        "mixed_precision": args.mixed_precision,
        "data": {k: v for k, v in data.items() if v is not None},
        "model": {"model": args.model},
        "stages": stages,
    }


def measure_latency(folders: dict[str, Path], task, texts, args: argparse.Namespace) -> tuple[dict[str, dict], dict]:
    """Median latency per artifact and batch size, the artifacts timed in interleaved rounds
    (distill.bench's method; our loader, since factorized folders need it)."""
    threads = args.threads or torch.get_num_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        models = {name: load_classifier(str(folder), task).eval() for name, folder in folders.items()}
        tokenizers = {name: AutoTokenizer.from_pretrained(folder) for name, folder in folders.items()}
        results: dict[str, dict] = {name: {} for name in folders}
        with torch.inference_mode():
            for batch in args.latency_batch_sizes:
                inputs = {name: fixed_length_inputs(tokenizers[name], texts[:batch], args.seq_length) for name in folders}
                calls = {name: (lambda m=models[name], x=inputs[name]: m(**x).logits) for name in folders}
                for name, seconds in median_latencies(calls, args.warmup, args.repeats).items():
                    results[name][f"latency_ms_bs{batch}"] = 1000 * seconds
                    results[name][f"throughput_bs{batch}"] = batch / seconds
    finally:
        torch.set_num_threads(previous)
    settings = {
        "threads": threads,
        "batch_sizes": args.latency_batch_sizes,
        "inputs": f"first {max(args.latency_batch_sizes)} dev examples, padded/cut to {args.seq_length} tokens",
        "timing": f"median of {args.repeats} calls after {args.warmup} warm-up calls, models interleaved round by round",
    }
    return results, settings


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join(["python", "scripts/bench_lowrank.py", *(sys.argv[1:] if argv is None else argv)])
    try:
        for flag, folder in (("--model", args.model), ("--teacher", args.teacher)):
            if folder and not (Path(folder) / "config.json").is_file():
                raise DistillError(f"{flag} {folder}: not a saved model folder (no config.json)")
        recipe = validate_recipe(bench_recipe(args), source="bench_lowrank")
        task = task_of(recipe)
        accelerator = Accelerator(mixed_precision=resolve_mixed_precision(recipe.mixed_precision), cpu=not torch.cuda.is_available())
        tokenizer = load_tokenizer(args.model)
        data = prepare_data(recipe, task, tokenizer, args.data_dir)
        texts = dev_texts(task, args.data_dir, max(args.latency_batch_sizes))
    except DistillError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    work_dir = Path(args.work_dir)
    ctx = RunContext(recipe, work_dir, task, tokenizer, data, accelerator, command)
    ctx.outputs["student"] = Path(args.model)
    if args.teacher:
        ctx.outputs["teacher"] = Path(args.teacher)

    records, folders, out = [], {}, Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for index, stage in enumerate(recipe.stages):
        if stage.kind != "factorize":
            continue
        stage_hash = stage_fingerprint(recipe, index, {"model": str(Path(args.model).resolve()), "teacher": args.teacher})
        out_dir = work_dir / stage.name
        record = _finished(out_dir, stage_hash) or run_factorize_stage(ctx, stage, out_dir, stage_hash)
        rule = stage.linear if stage.linear is not None else stage.embeddings
        record.update(
            curve="linear" if stage.linear is not None else "embeddings",
            energy=rule.energy,
            rank=rule.rank,
            modules=stage.linear.modules if stage.linear is not None else ["word_embeddings"],
            recovery=stage.recovery is not None,
            model=args.model,
            task=task.name,
            command=command,
            machine=machine_info(),
            date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        )
        records.append(record)
        folders[stage.name] = out_dir
        out.write_text(json.dumps(records, indent=2) + "\n")  # after every point: a long run keeps what it did
        print(f"{stage.name}: {task.primary_metric} {record['metric_value']:.4f}, params {record['params']:,}, "
              f"linear FLOPs/token {-100 * record['flops_reduction']:+.1f}%", flush=True)

    latencies, settings = measure_latency(folders, task, texts, args)
    for record in records:
        record.update(latencies[record["stage"]], latency_settings=settings)
    out.write_text(json.dumps(records, indent=2) + "\n")
    for record in records:
        timing = ", ".join(f"bs{b} {record[f'latency_ms_bs{b}']:.1f} ms" for b in args.latency_batch_sizes)
        print(f"{record['stage']}: {timing}")
    return 0


def _finished(out_dir: Path, stage_hash: str) -> dict | None:
    metrics = out_dir / "metrics.json"
    if metrics.is_file():
        record = json.loads(metrics.read_text())
        if record.get("stage_hash") == stage_hash:
            return record
    return None


if __name__ == "__main__":
    sys.exit(main())

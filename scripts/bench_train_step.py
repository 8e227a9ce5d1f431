"""Median training-step time of the MiniLM teacher in fp32 and under bf16 autocast on this CPU,
measured in one process (ratios are what to compare across machines).

    python scripts/bench_train_step.py [--batch 32] [--seq 24] [--steps 8] [--out benchmarks/train_step.json]

Why it exists: on CPUs without native bf16 (no AVX512-BF16/AMX) bf16 autocast is emulated and
slower than fp32, which is why recipes default to `mixed_precision: auto`.
"""

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

from distill.models.sources import resolve_model_path
from distill.reporting.report import machine_info
from distill.training.loop import resolve_mixed_precision


def step_times(model, batch, bf16: bool, steps: int, warmup: int = 2) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    times = []
    for i in range(warmup + steps):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if i >= warmup:
            times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=24)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/train_step.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(resolve_model_path("minilm-l6"), num_labels=2)
    batch = {"input_ids": torch.randint(1000, 20000, (args.batch, args.seq)), "labels": torch.randint(0, 2, (args.batch,))}
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    fp32 = statistics.median(step_times(model, batch, False, args.steps))
    bf16 = statistics.median(step_times(model, batch, True, args.steps))
    result = {
        "fp32_step_seconds_median": fp32,
        "bf16_autocast_step_seconds_median": bf16,
        "bf16_over_fp32": bf16 / fp32,
        "auto_mixed_precision_here": resolve_mixed_precision("auto"),
        "batch": args.batch, "seq_len": args.seq, "timed_steps": args.steps, "warmup_steps": 2,
        "threads": torch.get_num_threads(),
        "command": "python " + " ".join(sys.argv),
        "machine": machine_info(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

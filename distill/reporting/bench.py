"""Latency, throughput and peak memory of saved artifacts, measured the same way for every backend.

- Inputs: real dev examples of the task, padded (or cut) to a fixed `seq_length`, so every model
  does the same work whatever its tokenizer does with padding.
- Latency: `warmup` untimed calls, then the median of `repeats` timed calls per batch size. The
  models are timed in interleaved rounds (one call each per round), so a change in background
  load hits every model alike and the ratios between them stay fair.
- Threads: torch.set_num_threads and ONNX Runtime's intra-op threads set to one stated number.
- Peak memory: the RSS high-water mark of a fresh process that loads one artifact and runs one
  batch of the largest size (`python -m distill.reporting.bench`), so artifacts never share a process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distill import DistillError
from distill.recipe import BenchmarkConfig

MEMORY_WORKER_TIMEOUT_S = 1800


def dev_texts(task, data_dir: str | Path | None, count: int, validation_file: str | None = None) -> list[tuple[str, ...]]:
    """The first `count` dev examples of the task, as tuples of its text fields (a tagger's words joined
    by spaces, as a user would pass a sentence to `pipeline("token-classification")`)."""
    from distill.data.splits import load_task_splits, resolve_data_dir

    split = load_task_splits(task, resolve_data_dir(data_dir), validation_file=validation_file, splits=("validation",))["validation"]
    return split_texts(task, split, count)


def split_texts(task, split, count: int) -> list[tuple[str, ...]]:
    """`dev_texts` of a split already loaded (raw rows)."""
    if len(split) == 0:
        raise DistillError(f"task {task.name}: the validation split is empty")
    rows = split.select(range(min(count, len(split))))
    texts = [tuple(" ".join(row[field]) if task.is_token_classification else row[field] for field in task.text_fields)
             for row in rows]
    while len(texts) < count:  # tiny dev sets: repeat examples to fill the largest batch
        texts += texts[: count - len(texts)]
    return texts


def fixed_length_inputs(tokenizer, texts: list[tuple[str, ...]], seq_length: int) -> dict:
    columns = list(zip(*texts))
    return dict(tokenizer(*columns, padding="max_length", truncation=True, max_length=seq_length, return_tensors="pt"))


def median_latencies(calls: dict[str, Callable[[], Any]], warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each callable, timed in interleaved rounds after `warmup` calls."""
    return {name: statistics.median(values) for name, values in latency_samples(calls, warmup, repeats).items()}


def latency_samples(calls: dict[str, Callable[[], Any]], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of each timed call of each callable, in interleaved rounds after `warmup` calls."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def benchmark_folders(folders: dict[str, Path], texts: list[tuple[str, ...]], cfg: BenchmarkConfig) -> tuple[dict[str, dict], dict]:
    """{name: {backend, precision, latency_ms_bs<B>, throughput_bs<B>, peak_memory_bytes}} and the settings used."""
    import torch

    from distill.models.loading import load_tokenizer
    from distill.quantize.artifacts import load_artifact

    threads = cfg.threads or torch.get_num_threads()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        models, kinds, inputs = {}, {}, {}
        for name, folder in folders.items():
            models[name], kinds[name] = load_artifact(folder, threads=threads)
            tokenizer = load_tokenizer(str(folder))
            inputs[name] = {b: fixed_length_inputs(tokenizer, texts[:b], cfg.seq_length) for b in cfg.batch_sizes}
        results = {name: {"backend": kinds[name].backend, "precision": kinds[name].precision} for name in folders}
        with torch.inference_mode():
            for batch in cfg.batch_sizes:
                calls = {name: _call(models[name], inputs[name][batch]) for name in folders}
                for name, seconds in median_latencies(calls, cfg.warmup, cfg.repeats).items():
                    results[name][f"latency_ms_bs{batch}"] = 1000 * seconds
                    results[name][f"throughput_bs{batch}"] = batch / seconds
        del models
    finally:
        torch.set_num_threads(previous_threads)
    baseline = None
    if cfg.memory:
        peaks = peak_memories([None, *folders.values()], texts[:max(cfg.batch_sizes)], cfg.seq_length, threads)
        baseline = peaks[0]
        for name, peak in zip(folders, peaks[1:]):
            results[name]["peak_memory_bytes"] = peak
    settings = {
        **cfg.model_dump(exclude={"enabled"}),
        "threads": threads,
        "inputs": f"first {max(cfg.batch_sizes)} dev examples, padded/cut to {cfg.seq_length} tokens",
        "timing": f"median of {cfg.repeats} calls after {cfg.warmup} warm-up calls, models interleaved round by round",
        "baseline_memory_bytes": baseline,
        "cpu_threads_available": os.cpu_count(),
    }
    return results, settings


def _call(model, inputs: dict) -> Callable[[], Any]:
    return lambda: model(**inputs).logits


def peak_memories(folders: list[Path | None], texts: list[tuple[str, ...]], seq_length: int, threads: int) -> list[int]:
    """`peak_memory_bytes` of each folder, one process per CPU core at a time: each process's
    high-water mark is its own, and most of their time is imports (single-threaded), so running
    them side by side after the timings costs no figure and saves most of that wait."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(len(folders), os.cpu_count() or 1))) as pool:
        return list(pool.map(lambda folder: peak_memory_bytes(folder, texts, seq_length, threads), folders))


def peak_memory_bytes(folder: Path | None, texts: list[tuple[str, ...]], seq_length: int, threads: int) -> int:
    """Peak RSS of a fresh process that loads `folder` and runs one batch of `texts`; with no
    folder, of a process that only imports torch and transformers (the baseline)."""
    payload = {"folder": str(folder) if folder else None, "texts": texts, "seq_length": seq_length, "threads": threads}
    proc = subprocess.run([sys.executable, "-m", "distill.reporting.bench"], input=json.dumps(payload), capture_output=True,
                          text=True, timeout=MEMORY_WORKER_TIMEOUT_S, env=os.environ.copy())
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DistillError(f"{folder or 'baseline'}: the peak-memory process failed ({reason})")
    return int(json.loads(lines[-1])["peak_rss_bytes"])


def _memory_worker(payload: dict) -> int:
    # The baseline imports what loading any artifact needs (torch, transformers); an artifact's
    # peak also counts its backend's own library (onnxruntime, bitsandbytes): that is its cost.
    import torch
    import transformers  # noqa: F401

    torch.set_num_threads(payload["threads"])
    if payload["folder"]:
        from distill.models.loading import load_tokenizer
        from distill.quantize.artifacts import load_artifact

        model, _ = load_artifact(payload["folder"], threads=payload["threads"])
        tokenizer = load_tokenizer(payload["folder"])
        inputs = fixed_length_inputs(tokenizer, [tuple(t) for t in payload["texts"]], payload["seq_length"])
        with torch.inference_mode():
            model(**inputs)
    return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """This process's RSS high-water mark. Linux: VmHWM, because getrusage's ru_maxrss survives
    fork+exec and would report the (larger) parent's peak; elsewhere ru_maxrss (bytes on macOS)."""
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


# ---------------------------------------------------------------- run and command-line entry points


MASKED_LM_KINDS = ("mlm_head", "general_distill")


def model_folders(folders: dict[str, Path]) -> dict[str, Path]:
    """The stage folders that hold a model (a publish stage's does not)."""
    return {name: Path(f) for name, f in folders.items() if f is not None and (Path(f) / "config.json").is_file()}


def benchmark_run(ctx, records: list[dict], data_dir: str | None = None) -> tuple[list[dict], dict]:
    """At the end of `distill run`: measure every stage artifact and merge the numbers into the records."""
    cfg = ctx.recipe.benchmark
    # Masked LMs (mlm_head, general_distill) are not task models: there is nothing to score or time.
    folders = model_folders({r["stage"]: ctx.outputs.get(r["stage"]) for r in records if r["kind"] not in MASKED_LM_KINDS})
    if not folders:
        return records, {}
    ctx.accelerator.print(f"[benchmark] {len(folders)} artifacts: batch sizes {cfg.batch_sizes}, seq length {cfg.seq_length}")
    data = ctx.recipe.data
    texts = dev_texts(ctx.task, data.dir or data_dir, max(cfg.batch_sizes), data.validation_file)
    results, settings = benchmark_folders(folders, texts, cfg)
    return [{**r, **results.get(r["stage"], {})} for r in records], settings


def bench_dirs(dirs: list[str], task, *, data_dir: str | None, cfg: BenchmarkConfig, reference: str | None,
               output_dir: Path, command: str, eval_batch_size: int = 128, max_length: int = 128) -> dict:
    """`distill bench`: the run report (table, JSON, plot) for any saved artifacts."""
    from distill.reporting.report import write_report

    folders = _named_folders(dirs)
    if reference is not None:
        ref = _named_folders([reference])
        name = next(iter(ref))
        folders = {name: ref[name], **{k: v for k, v in folders.items() if v.resolve() != ref[name].resolve()}}
    records = [_artifact_record(name, folder, task, data_dir, eval_batch_size, max_length) for name, folder in folders.items()]
    texts = dev_texts(task, data_dir, max(cfg.batch_sizes))
    results, settings = benchmark_folders(folders, texts, cfg)
    records = [{**r, **results[r["stage"]]} for r in records]
    output_dir.mkdir(parents=True, exist_ok=True)
    return write_report(output_dir, None, task, records, command, benchmark=settings, reference=next(iter(folders)), name="bench")


def _named_folders(dirs: list[str]) -> dict[str, Path]:
    folders: dict[str, Path] = {}
    for d in dirs:
        folder = Path(d)
        if not (folder / "config.json").is_file():
            raise DistillError(f"{d}: not a model folder (no config.json)")
        name = folder.resolve().name
        if name in folders:
            name = f"{folder.resolve().parent.name}/{name}"
        folders[name] = folder
    return folders


def _artifact_record(name: str, folder: Path, task, data_dir, batch_size: int, max_length: int) -> dict:
    """What the stage recorded (metrics.json, same metric code), else a fresh dev-set evaluation."""
    from distill.models.loading import weights_size_bytes

    saved = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    if saved.get("metric") == task.primary_metric:
        metrics, params, kind = saved["metrics"], saved["params"], saved.get("kind", "artifact")
        value = saved["metric_value"]
    else:
        metrics, params = _evaluate_folder(folder, task, data_dir, batch_size, max_length)
        value, kind = metrics[task.primary_metric], "artifact"
    return {"stage": name, "kind": kind, "path": str(folder), "metric": task.primary_metric, "metric_value": value,
            "metrics": metrics, "params": params, "size_bytes": weights_size_bytes(folder)}


def _evaluate_folder(folder: Path, task, data_dir, batch_size: int, max_length: int) -> tuple[dict, int]:
    from distill.data.splits import load_task_splits, resolve_data_dir

    split = load_task_splits(task, resolve_data_dir(data_dir), splits=("validation",))["validation"]
    metrics, model, kind = evaluate_folder(folder, task, split, batch_size, max_length)
    return metrics, _parameter_count(model, kind, folder)


def evaluate_folder(folder: Path, task, split, batch_size: int, max_length: int):
    """The task's metrics of any saved artifact (torch, ONNX Runtime, bitsandbytes) on `split` (raw
    rows), tokenized by the artifact's own tokenizer; also the loaded model and its kind."""
    import datasets
    import torch
    from accelerate import Accelerator

    from distill.data.splits import make_collator, tokenize_splits
    from distill.models.loading import load_tokenizer
    from distill.quantize.artifacts import load_artifact
    from distill.training.evaluation import evaluate_model

    model, kind = load_artifact(folder)
    tokenizer = load_tokenizer(str(folder))
    tokenized = tokenize_splits(datasets.DatasetDict(scored=split), tokenizer, task, max_length)["scored"]
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    return evaluate_model(model, tokenized, task, make_collator(task, tokenizer), batch_size, accelerator), model, kind


def _parameter_count(model, kind, folder: Path) -> int:
    if kind.backend == "onnxruntime":
        from distill.quantize.ort_session import onnx_parameter_count

        return onnx_parameter_count(folder)
    if kind.backend == "bitsandbytes":
        from distill.quantize.bnb import parameter_count

        return parameter_count(model)
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":  # the peak-memory worker: JSON payload on stdin, JSON result on stdout's last line
    result = _memory_worker(json.loads(sys.stdin.read()))
    print(json.dumps({"peak_rss_bytes": result}))

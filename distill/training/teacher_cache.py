"""Teacher logits computed once over the training set and reused by every logits-only
distillation epoch (and every seed), so such distillation costs about what plain fine-tuning of
the student costs.

The cache is a safetensors file keyed by the teacher's weights and the exact tokenized inputs
(which fix the data, the tokenizer and max_length). The teacher runs in eval mode, as it does in
uncached distillation, so cached and live logits are the same numbers.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from distill.training.evaluation import predict_logits

INDEX_COLUMN = "example_index"


def weights_digest(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def inputs_digest(dataset) -> str:
    digest = hashlib.sha256()
    for column in ("input_ids", "token_type_ids", "attention_mask"):
        if column in dataset.column_names:
            for row in dataset[column]:
                digest.update(np.asarray(row, dtype=np.int64).tobytes())
                digest.update(b"|")
    return digest.hexdigest()


def cache_key(teacher_dir: Path, dataset) -> str:
    return hashlib.sha256((weights_digest(teacher_dir) + inputs_digest(dataset)).encode()).hexdigest()[:24]


def teacher_logits(teacher, teacher_dir: Path, dataset, collator, batch_size: int, accelerator, cache_dir: Path) -> tuple[torch.Tensor, dict]:
    """[N, num_labels] logits of `teacher` on `dataset` in row order, from the cache when present.
    Returns them and {"cache_file", "cache_hit", "cache_seconds"} for the report."""
    started = time.perf_counter()
    path = Path(cache_dir) / f"{cache_key(teacher_dir, dataset)}.safetensors"
    hit = path.is_file()
    if hit:
        logits = load_file(str(path))["logits"]
    else:
        # predict_logits scores shortest rows first and returns row order; it needs labels in the
        # batch, the cache keeps only the logits.
        logits = torch.from_numpy(predict_logits(teacher, dataset, collator, batch_size, accelerator)[0])
        if accelerator.is_main_process:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            save_file({"logits": logits.contiguous()}, str(tmp))
            tmp.replace(path)
        accelerator.wait_for_everyone()
    return logits, {"cache_file": str(path), "cache_hit": hit, "cache_seconds": time.perf_counter() - started}


def with_example_index(dataset):
    """The training set plus each row's position, so a batch can look up its cached logits."""
    return dataset.add_column(INDEX_COLUMN, list(range(len(dataset))))


def cached_distillation_step(logits_table: torch.Tensor, loss_fn):
    """Like distillation_step, but the teacher's logits come from the table (no teacher forward)."""

    def step(student, batch):
        index = batch.pop(INDEX_COLUMN)
        labels = batch.pop("labels")
        teacher_out = SimpleNamespace(logits=logits_table[index.cpu()].to(batch["input_ids"].device))
        student_out = student(**batch)
        total, values = loss_fn(student_out, teacher_out, labels, batch.get("attention_mask"))
        return total, {k: v for k, v in values.items() if k != "loss"}

    return step

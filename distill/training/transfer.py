"""A distill stage's transfer set: extra inputs that only the teacher labels.

TinyBERT's large gains on small GLUE tasks come from such a set: the student sees many more
inputs than the task has labels, and learns the teacher's soft targets on them. Two sources:

- augmentation: copies of each training example in which a share of the word pieces is masked
  and replaced by one of a masked LM's top-k predictions (TinyBERT replaces whole words one at a
  time and uses GloVe for multi-piece words; here every chosen piece is masked at once, so one
  MLM forward makes one copy, and a piece is replaced by a piece of the same kind: word start or
  continuation);
- unlabelled in-domain text files, one example per line (pair tasks: two texts, tab-separated).

Extra rows carry the "no label" marker (IGNORE_INDEX, or NaN for regression), so the hard-label
term skips them (distill.training.losses.hard_label_loss). Augmented copies are cached on disk, keyed by
the MLM's weights, the training inputs and the settings.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from pathlib import Path

import datasets
import torch

from distill import DistillError
from distill.data.files import default_search_dirs, resolve_corpus_file
from distill.data.tasks import IGNORE_INDEX, TaskSpec
from distill.data.textfiles import read_text
from distill.training.teacher_cache import inputs_digest, weights_digest

INPUT_COLUMNS = ("input_ids", "token_type_ids", "attention_mask")


def unlabelled_marker(task: TaskSpec) -> float | int:
    return math.nan if task.is_regression else IGNORE_INDEX


# --- unlabelled files ----------------------------------------------------------------------


def file_texts(paths: list[Path], n_fields: int) -> list[tuple[str, ...]]:
    """Each non-empty line as a tuple of `n_fields` texts (tab-separated for pairs)."""
    rows = []
    for path in paths:
        for number, line in enumerate(read_text(path).splitlines(), start=1):
            if not line.strip():
                continue
            fields = tuple(line.split("\t")) if n_fields > 1 else (line,)
            if len(fields) != n_fields or not all(f.strip() for f in fields):
                raise DistillError(f"{path}:{number}: expected {n_fields} non-empty tab-separated texts, "
                                   f"found {len([f for f in fields if f.strip()])}")
            rows.append(fields)
    return rows


def tokenized_file_rows(transfer, task: TaskSpec, tokenizer, max_length: int, data_dir: str | None, field: str) -> datasets.Dataset:
    dirs = default_search_dirs(data_dir)
    paths = [resolve_corpus_file(name, dirs, f"{field}.files[{i}]") for i, name in enumerate(transfer.files)]
    rows = file_texts(paths, len(task.text_fields))
    if not rows:
        raise DistillError(f"{field}.files: no text lines in {', '.join(map(str, paths))}")
    if transfer.max_file_examples is not None and transfer.max_file_examples < len(rows):
        rows = random.Random(transfer.seed).sample(rows, transfer.max_file_examples)
    encoded = dict(tokenizer(*([row[i] for row in rows] for i in range(len(task.text_fields))),
                             truncation=True, max_length=max_length))
    return datasets.Dataset.from_dict({k: v for k, v in encoded.items() if k in INPUT_COLUMNS})


# --- augmentation --------------------------------------------------------------------------


def continuation_pieces(tokenizer) -> torch.Tensor:
    """[V] bool: which vocabulary entries continue a word (WordPiece "##x"; for vocabularies that
    mark word starts instead, "▁x" / "Ġx", every entry without the mark)."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    if any(t.startswith("##") for t in tokens):
        return torch.tensor([t.startswith("##") for t in tokens])
    for mark in ("▁", "Ġ"):
        if sum(t.startswith(mark) for t in tokens) > len(tokens) // 10:
            return torch.tensor([not t.startswith(mark) for t in tokens])
    return torch.zeros(len(tokens), dtype=torch.bool)


@torch.no_grad()
def augment_rows(mlm, rows: list[dict], *, copies: int, replace_share: float, top_k: int, special_ids: set[int],
                 continuation: torch.Tensor, mask_id: int, pad_id: int, seed: int, batch_size: int = 64) -> list[dict]:
    """`copies` variants of every row (dicts of input_ids / token_type_ids / attention_mask lists),
    in row order. In each, every non-special piece is chosen with probability `replace_share`
    (at least one per row), all chosen pieces are masked, and each is replaced by a draw from
    the MLM's `top_k` pieces of its kind, never the original piece nor a special token."""
    from distill.training.mlm import mlm_forward

    generator = torch.Generator().manual_seed(seed)
    banned = torch.zeros(len(continuation), dtype=torch.bool)
    banned[list(special_ids)] = True
    device = next(mlm.parameters()).device
    jobs = [(row, copy) for row in rows for copy in range(copies)]
    out = []
    for start in range(0, len(jobs), batch_size):
        chunk = [row for row, _ in jobs[start:start + batch_size]]
        length = max(len(r["input_ids"]) for r in chunk)
        ids = torch.full((len(chunk), length), pad_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        types = torch.zeros_like(ids)
        chosen = torch.zeros_like(ids, dtype=torch.bool)
        for i, row in enumerate(chunk):
            n = len(row["input_ids"])
            ids[i, :n] = torch.tensor(row["input_ids"])
            attention[i, :n] = torch.tensor(row.get("attention_mask", [1] * n))
            if "token_type_ids" in row:
                types[i, :n] = torch.tensor(row["token_type_ids"])
            candidates = torch.tensor([t not in special_ids for t in row["input_ids"]])
            draw = (torch.rand(n, generator=generator) < replace_share) & candidates
            if not draw.any() and candidates.any():  # every copy differs from its original
                positions = candidates.nonzero().flatten()
                draw[positions[torch.randint(len(positions), (1,), generator=generator)]] = True
            chosen[i, :n] = draw
        original = ids[chosen]
        masked = ids.clone()
        masked[chosen] = mask_id
        inputs = {"input_ids": masked.to(device), "attention_mask": attention.to(device)}
        if "token_type_ids" in chunk[0]:
            inputs["token_type_ids"] = types.to(device)
        logits, _ = mlm_forward(mlm, inputs, chosen.to(device))
        logits = logits.float().cpu()
        # Only pieces of the original's kind; never the original itself or a special token.
        allowed = (continuation[None, :] == continuation[original][:, None]) & ~banned[None, :]
        allowed[torch.arange(len(original)), original] = False
        logits = logits.masked_fill(~allowed, -math.inf)
        best = logits.topk(min(top_k, logits.shape[-1]), dim=-1)
        pick = torch.randint(best.indices.shape[1], (len(original),), generator=generator)
        replacement = best.indices[torch.arange(len(original)), pick]
        # A row with fewer than top_k allowed pieces may draw a -inf entry: keep the original there.
        replacement = torch.where(best.values[torch.arange(len(original)), pick].isfinite(), replacement, original)
        ids[chosen] = replacement
        for i, row in enumerate(chunk):
            n = len(row["input_ids"])
            out.append({**{k: v for k, v in row.items() if k in INPUT_COLUMNS}, "input_ids": ids[i, :n].tolist()})
    return out


def augmented_set(ctx, augment, seed: int, field: str) -> tuple[datasets.Dataset, dict]:
    """The augmented copies of ctx.data.train (cached), and how long making them took."""
    from transformers import AutoTokenizer

    from distill.models.mlm import load_mlm_model
    from distill.models.sources import resolve_model_path

    source = str(ctx.outputs[augment.mlm_stage]) if augment.mlm_stage else resolve_model_path(augment.mlm_model)
    name = f"{field}.augment.{'mlm_stage' if augment.mlm_stage else 'mlm_model'}"
    settings = json.dumps(augment.model_dump(exclude={"batch_size"}), sort_keys=True) + f"|seed={seed}"
    train = ctx.data.train.select_columns([c for c in INPUT_COLUMNS if c in ctx.data.train.column_names])
    started = time.perf_counter()
    mlm, _ = load_mlm_model(source, require_head=True, field=name)
    try:
        vocabulary = AutoTokenizer.from_pretrained(source).get_vocab()
    except (OSError, ValueError):
        vocabulary = None
    if vocabulary != ctx.tokenizer.get_vocab():
        raise DistillError(f"{name}: '{source}' does not have the run's vocabulary; the augmented pieces would be other tokens")
    key = hashlib.sha256(f"{source}|{weights_digest(source)}|{inputs_digest(train)}|{settings}".encode()).hexdigest()[:24]
    path = Path(ctx.recipe.output_dir) / ".transfer_cache" / key
    if path.is_dir():
        return datasets.load_from_disk(str(path)), {"augment_cache_hit": True, "augment_seconds": time.perf_counter() - started}
    tokenizer = ctx.tokenizer
    mlm.to(ctx.accelerator.device).eval()
    rows = augment_rows(mlm, train.to_list(), copies=augment.copies, replace_share=augment.replace_share, top_k=augment.top_k,
                        special_ids=set(tokenizer.all_special_ids), continuation=continuation_pieces(tokenizer),
                        mask_id=tokenizer.mask_token_id, pad_id=tokenizer.pad_token_id, seed=seed, batch_size=augment.batch_size)
    dataset = datasets.Dataset.from_list(rows)
    if ctx.accelerator.is_main_process:
        tmp = path.with_name(path.name + ".tmp")
        dataset.save_to_disk(str(tmp))
        tmp.replace(path)
    ctx.accelerator.wait_for_everyone()
    return dataset, {"augment_cache_hit": False, "augment_seconds": time.perf_counter() - started}


def with_transfer_set(ctx, stage) -> tuple[datasets.Dataset, dict]:
    """ctx.data.train followed by the stage's transfer rows (unlabelled), and what they cost."""
    transfer = stage.transfer
    field = f"stages.{stage.name}.transfer"
    if ctx.tokenizer.mask_token_id is None and transfer.augment is not None:
        raise DistillError(f"{field}.augment: the run's tokenizer has no mask token")
    parts, info = [], {}
    if transfer.augment is not None:
        augmented, info = augmented_set(ctx, transfer.augment, transfer.seed, field)
        parts.append(augmented)
        info["augmented_examples"] = len(augmented)
    if transfer.files:
        from_files = tokenized_file_rows(transfer, ctx.task, ctx.tokenizer, ctx.data.max_length,
                                         ctx.recipe.data.dir, field)
        parts.append(from_files)
        info["file_examples"] = len(from_files)
    train = ctx.data.train
    marker = unlabelled_marker(ctx.task)
    extra = datasets.concatenate_datasets([p.select_columns([c for c in train.column_names if c != "labels"]) for p in parts])
    extra = extra.add_column("labels", [marker] * len(extra)).cast(train.features)
    info.update(labelled_examples=len(train), transfer_examples=len(extra))
    return datasets.concatenate_datasets([train, extra]), info

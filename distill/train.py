"""One Accelerate training loop for every stage that trains (teacher fine-tuning, distillation,
baseline), so `accelerate launch` works the same for all of them.

A stage supplies `step_loss(model, batch) -> (loss, {term: value})`; the loop owns the optimizer,
schedule, accumulation, clipping, mixed precision, periodic evaluation, best-checkpoint keeping,
progress bar and the JSONL log.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup
from transformers.trainer_pt_utils import LengthGroupedSampler

from distill.errors import DistillError
from distill.recipe import TrainConfig

StepLoss = Callable[[nn.Module, dict], "tuple[torch.Tensor, dict[str, float]]"]
Evaluate = Callable[[nn.Module], "dict[str, float]"]


@dataclass
class TrainOutcome:
    steps: int
    train_seconds: float  # optimisation only; periodic evaluation excluded
    samples_per_second: float
    eval_seconds: float = 0.0
    best_step: int | None = None
    best_selection_metrics: dict[str, float] | None = None
    history: list[dict] = field(default_factory=list)


def micro_batch_size(cfg: TrainConfig, accelerator: Accelerator) -> int:
    """`batch_size` is the global batch of one optimizer step, whatever the launch: it is split
    over processes and accumulation steps, so 1 process and N processes train the same way."""
    parts = accelerator.num_processes * cfg.grad_accum_steps
    if cfg.batch_size % parts:
        raise DistillError(
            f"train.batch_size: {cfg.batch_size} does not split evenly over "
            f"{accelerator.num_processes} process(es) x {cfg.grad_accum_steps} accumulation step(s)"
        )
    return cfg.batch_size // parts


def resolve_mixed_precision(setting: str) -> str:
    """"auto" -> bf16 where the hardware computes it natively, else "no"."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return "no"
    return "bf16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "no"


def _optimizer(params: list[tuple[str, nn.Parameter]], cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and LayerNorm weights, as in BERT's original recipe.
    decay = [p for n, p in params if p.requires_grad and not (n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n)]
    no_decay = [p for n, p in params if p.requires_grad and (n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate)


def train_model(
    model: nn.Module,
    train_dataset,
    *,
    cfg: TrainConfig,
    accelerator: Accelerator,
    collator,
    step_loss: StepLoss,
    evaluate: Evaluate | None,
    primary_metric: str,
    seed: int,
    log_path: Path | None = None,
    description: str = "train",
    extra_modules: list[nn.Module] = (),
) -> tuple[nn.Module, TrainOutcome]:
    """Train `model` in place (returned unwrapped); restores the best evaluated weights if asked."""
    micro = micro_batch_size(cfg, accelerator)
    accelerator.gradient_accumulation_steps = cfg.grad_accum_steps
    generator = torch.Generator().manual_seed(seed)
    if cfg.group_by_length:
        lengths = [len(ids) for ids in train_dataset["input_ids"]]
        sampler = LengthGroupedSampler(micro, lengths=lengths, generator=generator)
        loader = DataLoader(train_dataset, batch_size=micro, sampler=sampler, collate_fn=collator)
    else:
        loader = DataLoader(train_dataset, batch_size=micro, shuffle=True, collate_fn=collator, generator=generator)
    named = list(model.named_parameters())
    for i, module in enumerate(extra_modules):
        named += [(f"extra{i}.{n}", p) for n, p in module.named_parameters()]
    optimizer = _optimizer(named, cfg)
    prepared = accelerator.prepare(model, optimizer, loader, *extra_modules)
    model, optimizer, loader = prepared[:3]

    steps_per_epoch = max(1, math.ceil(len(loader) / cfg.grad_accum_steps))
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    # Stepped by hand once per optimizer step (an accelerate-prepared scheduler steps once per process).
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    eval_every = cfg.eval_every or steps_per_epoch

    log = _JsonlLog(log_path if accelerator.is_main_process else None)
    outcome = TrainOutcome(steps=0, train_seconds=0.0, samples_per_second=0.0)
    best_value, best_state = -math.inf, None
    examples, running = 0, {}
    # Redraw rarely when logging to a file, so a long run's log stays readable.
    interval = 0.1 if sys.stderr.isatty() else 60
    bar = tqdm(total=total_steps, desc=description, disable=not accelerator.is_local_main_process, dynamic_ncols=True, mininterval=interval)
    started = time.perf_counter()
    model.train()
    while outcome.steps < total_steps:
        for batch in loader:
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    loss, terms = step_loss(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_([p for _, p in named], cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            examples += batch["input_ids"].shape[0] * accelerator.num_processes
            for key, value in {"loss": loss.item(), **terms}.items():
                running[key] = running.get(key, 0.0) + value
            running["_n"] = running.get("_n", 0) + 1
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            outcome.steps += 1
            elapsed = time.perf_counter() - started - outcome.eval_seconds
            rate = examples / max(elapsed, 1e-9)
            bar.update(1)
            if outcome.steps % cfg.log_every == 0 or outcome.steps == total_steps:
                means = {k: v / running["_n"] for k, v in running.items() if k != "_n"}
                bar.set_postfix(loss=f"{means['loss']:.4f}", samples_s=f"{rate:.0f}")
                log.write({"step": outcome.steps, "epoch": outcome.steps / steps_per_epoch, "lr": scheduler.get_last_lr()[0], "samples_per_second": rate, **means})
                running = {}
            if evaluate is not None and (outcome.steps % eval_every == 0 or outcome.steps == total_steps):
                eval_started = time.perf_counter()
                metrics = evaluate(accelerator.unwrap_model(model))
                model.train()
                outcome.eval_seconds += time.perf_counter() - eval_started
                record = {"step": outcome.steps, "eval": metrics}
                outcome.history.append(record)
                log.write(record)
                value = metrics[primary_metric]
                if value > best_value:
                    best_value, outcome.best_step, outcome.best_selection_metrics = value, outcome.steps, metrics
                    if cfg.keep_best:
                        best_state = {k: v.detach().cpu().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}
            if outcome.steps >= total_steps:
                break
    bar.close()
    outcome.train_seconds = time.perf_counter() - started - outcome.eval_seconds
    outcome.samples_per_second = examples / max(outcome.train_seconds, 1e-9)
    model = accelerator.unwrap_model(model)
    if best_state is not None:
        model.load_state_dict(best_state)
    accelerator.free_memory()
    return model, outcome


class _JsonlLog:
    """Metrics as one JSON object per line (only the main process writes)."""

    def __init__(self, path: Path | None):
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

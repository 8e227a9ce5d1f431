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
import warnings
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

from distill import DistillError
from distill.machine import cpu_flags
from distill.recipe import TrainConfig
from distill.training import checkpoints

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
    # The selection metrics of the weights returned, when an evaluation scored exactly those in
    # full precision (the best checkpoint restored, or the last step's); None otherwise.
    final_metrics: dict[str, float] | None = None


def loader_batch_size(cfg: TrainConfig, accelerator: Accelerator) -> int:
    """`batch_size` is the global batch of one optimizer step, whatever the launch. The loader
    yields batch_size / grad_accum_steps examples per micro-step and Accelerate (split_batches)
    hands each process its slice, so 1 and N processes see the same examples in each step."""
    per_micro_step, rest = divmod(cfg.batch_size, cfg.grad_accum_steps)
    if rest or per_micro_step % accelerator.num_processes:
        raise DistillError(
            f"train.batch_size: {cfg.batch_size} does not split evenly over "
            f"{accelerator.num_processes} process(es) x {cfg.grad_accum_steps} accumulation step(s)"
        )
    return per_micro_step


def resolve_mixed_precision(setting: str) -> str:
    """"auto" -> bf16 where the hardware computes it natively, else "no"."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    flags = cpu_flags()
    return "bf16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "no"


def _optimizer(params: list[tuple[str, nn.Parameter]], cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and LayerNorm weights, as in BERT's original recipe.
    decay = [p for n, p in params if p.requires_grad and not (n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n)]
    no_decay = [p for n, p in params if p.requires_grad and (n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate)


def _train_loader(train_dataset, cfg: TrainConfig, micro: int, collator, generator: torch.Generator) -> DataLoader:
    if cfg.group_by_length:
        lengths = [len(ids) for ids in train_dataset["input_ids"]]
        sampler = LengthGroupedSampler(micro, lengths=lengths, generator=generator)
        return DataLoader(train_dataset, batch_size=micro, sampler=sampler, collate_fn=collator)
    return DataLoader(train_dataset, batch_size=micro, shuffle=True, collate_fn=collator, generator=generator)


@dataclass
class _Progress:
    """Where training stands; saved with every checkpoint so a killed run continues exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of the current epoch already consumed
    examples: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    best_value: float = -math.inf
    best_step: int | None = None
    best_metrics: dict | None = None
    history: list = field(default_factory=list)


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
    checkpoint_dir: Path | None = None,
) -> tuple[nn.Module, TrainOutcome]:
    """Train `model` in place (returned unwrapped); restores the best evaluated weights if asked.

    With `checkpoint_dir`, the full training state is saved every `cfg.checkpoint_every` steps and
    a call that finds a checkpoint there continues from it: same data order (each epoch's order
    depends only on seed and epoch), same RNG, optimizer and schedule, hence the same result."""
    micro = loader_batch_size(cfg, accelerator)
    # One training at a time per Accelerator: forget objects a previous (maybe interrupted) one
    # prepared, so checkpoints hold exactly this run's model and optimizer.
    accelerator.free_memory()
    accelerator.gradient_accumulation_steps = cfg.grad_accum_steps
    generator = torch.Generator()
    loader = _train_loader(train_dataset, cfg, micro, collator, generator)
    # Only modules that train (e.g. the loss's projections) are prepared: DDP rejects parameterless ones.
    extra_modules = [m for m in extra_modules if any(p.requires_grad for p in m.parameters())]
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

    progress, best_state = _Progress(), None
    if checkpoint_dir is not None and (latest := checkpoints.latest(checkpoint_dir)) is not None:
        progress, best_state = checkpoints.load(latest, accelerator, _Progress)
        with warnings.catch_warnings():  # replaying the schedule, not training: no optimizer.step() due
            warnings.simplefilter("ignore")
            for _ in range(progress.step):
                scheduler.step()
        accelerator.print(f"[{description}] resuming at step {progress.step}/{total_steps} from {latest}")

    log = _JsonlLog(log_path if accelerator.is_main_process else None)
    log.drop_after(progress.step)  # lines logged after the checkpoint will be logged again
    running: dict[str, float] = {}
    # Redraw rarely when logging to a file, so a long run's log stays readable.
    interval = 0.1 if sys.stderr.isatty() else 60
    bar = tqdm(total=total_steps, initial=progress.step, desc=description, disable=not accelerator.is_local_main_process,
               dynamic_ncols=True, mininterval=interval)
    started, seconds_before = time.perf_counter(), progress.train_seconds + progress.eval_seconds
    model.train()
    while progress.step < total_steps:
        generator.manual_seed(seed + progress.epoch)
        batches = accelerator.skip_first_batches(loader, progress.batch_in_epoch) if progress.batch_in_epoch else loader
        for batch in batches:
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    loss, terms = step_loss(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_([p for _, p in named], cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            progress.batch_in_epoch += 1
            progress.examples += batch["input_ids"].shape[0] * accelerator.num_processes  # this process's slice
            for key, value in {"loss": loss.item(), **terms}.items():
                running[key] = running.get(key, 0.0) + value
            running["_n"] = running.get("_n", 0) + 1
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            progress.step += 1
            progress.train_seconds = seconds_before + time.perf_counter() - started - progress.eval_seconds
            rate = progress.examples / max(progress.train_seconds, 1e-9)
            bar.update(1)
            if progress.step % cfg.log_every == 0 or progress.step == total_steps:
                means = {k: v / running["_n"] for k, v in running.items() if k != "_n"}
                bar.set_postfix(loss=f"{means['loss']:.4f}", samples_s=f"{rate:.0f}")
                log.write({"step": progress.step, "epoch": progress.step / steps_per_epoch, "lr": scheduler.get_last_lr()[0],
                           "samples_per_second": rate, **means})
                running = {}
            if evaluate is not None and (progress.step % eval_every == 0 or progress.step == total_steps):
                eval_started = time.perf_counter()
                metrics = evaluate(accelerator.unwrap_model(model))
                model.train()
                progress.eval_seconds += time.perf_counter() - eval_started
                progress.history.append({"step": progress.step, "eval": metrics})
                log.write(progress.history[-1])
                if metrics[primary_metric] > progress.best_value:
                    progress.best_value, progress.best_step, progress.best_metrics = metrics[primary_metric], progress.step, metrics
                    if cfg.keep_best:
                        best_state = {k: v.detach().cpu().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}
            if checkpoint_dir is not None and cfg.checkpoint_every and progress.step % cfg.checkpoint_every == 0 \
                    and progress.step < total_steps:
                checkpoints.save(checkpoint_dir, progress, best_state, accelerator)
            if progress.step >= total_steps:
                break
        else:  # the epoch ran out
            progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0
    bar.close()
    # keep_fp32_wrapper=False: under mixed precision Accelerate wraps forward in autocast, and a
    # returned model that kept it would be scored (and used by later stages) in bf16, not as saved.
    model = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    if best_state is not None:
        model.load_state_dict(best_state)
    final_metrics = None
    if accelerator.mixed_precision == "no":  # an evaluation under autocast scored other numbers than a saved model gives
        if best_state is not None:
            final_metrics = progress.best_metrics
        elif progress.history and progress.history[-1]["step"] == progress.step:
            final_metrics = progress.history[-1]["eval"]
    accelerator.free_memory()
    outcome = TrainOutcome(
        steps=progress.step,
        train_seconds=progress.train_seconds,
        samples_per_second=progress.examples / max(progress.train_seconds, 1e-9),
        eval_seconds=progress.eval_seconds,
        best_step=progress.best_step,
        best_selection_metrics=progress.best_metrics,
        history=progress.history,
        final_metrics=final_metrics,
    )
    return model, outcome


class _JsonlLog:
    """Metrics as one JSON object per line (only the main process writes)."""

    def __init__(self, path: Path | None):
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def drop_after(self, step: int) -> None:
        if self.path is not None and self.path.is_file():
            lines = self.path.read_text(encoding="utf-8").splitlines()
            kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
            self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write(self, record: dict) -> None:
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

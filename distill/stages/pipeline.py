"""Run a recipe: prepare data once, then run its stages in order, each writing an evaluated
artifact under runs/<recipe>/<stage>/, and the report after every stage."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import datasets
from accelerate import Accelerator, DataLoaderConfiguration

from distill import DistillError
from distill.data.splits import load_task_splits, make_collator, resolve_data_dir, take_subset, tokenize_splits
from distill.data.tasks import TaskSpec, task_of
from distill.machine import code_commit
from distill.models.loading import load_tokenizer
from distill.recipe import Recipe, dump_recipe, fingerprint
from distill.reporting.report import write_report
from distill.stages.context import RunContext, TaskData, finished_record
from distill.stages.preflight import check_output_dir, check_recipe_against_models, check_stages_for_task, check_transfer
from distill.training.loop import resolve_mixed_precision


def prepare_data(recipe: Recipe, task: TaskSpec, tokenizer, data_dir: str | None) -> TaskData:
    cfg = recipe.data
    splits = load_task_splits(
        task, resolve_data_dir(cfg.dir or data_dir), train_file=cfg.train_file, validation_file=cfg.validation_file
    )
    train = take_subset(splits["train"], cfg.train_limit, recipe.seed)
    validation = take_subset(splits["validation"], cfg.eval_limit, recipe.seed)
    tokenized = tokenize_splits(datasets.DatasetDict(train=train, validation=validation), tokenizer, task, cfg.max_length,
                                label_all_subtokens=bool(cfg.label_all_subtokens))
    train, selection = tokenized["train"], tokenized["validation"]
    if cfg.holdout_size:
        if cfg.holdout_size >= len(train):
            raise DistillError(f"data.holdout_size: {cfg.holdout_size} leaves no training examples (train has {len(train)})")
        parts = train.train_test_split(test_size=cfg.holdout_size, seed=recipe.seed)
        train, selection = parts["train"], parts["test"]
    if len(train) == 0 or len(tokenized["validation"]) == 0:
        raise DistillError(f"task {task.name}: the train or validation split is empty")
    return TaskData(train, selection, tokenized["validation"], make_collator(task, tokenizer),
                    raw_validation=validation, max_length=cfg.max_length)


# Settings that change how a run is carried out or logged, never its results.
_OPERATIONAL_TRAIN_KEYS = ("log_every", "checkpoint_every", "eval_batch_size")


def stage_fingerprint(recipe: Recipe, index: int, upstream: dict[str, str]) -> str:
    """What a stage's result depends on: the task, data, start model and run-wide settings, its
    own config and the stages before it. A finished stage with the same fingerprint is reused."""
    # Unset (None) fields are left out, so adding an optional setting to the schema does not
    # invalidate finished stages.
    shared = {key: getattr(recipe, key) for key in ("task", "seed", "mixed_precision", "data", "model")}
    stage = recipe.stages[index].model_dump(mode="json", exclude_none=True)
    if isinstance(stage.get("train"), dict):
        stage["train"] = {k: v for k, v in stage["train"].items() if k not in _OPERATIONAL_TRAIN_KEYS}
    shared = {k: v.model_dump(mode="json", exclude_none=True) if hasattr(v, "model_dump") else v for k, v in shared.items()}
    return fingerprint({"shared": shared, "stage": stage, "upstream": upstream})


class Pipeline:
    def __init__(self, recipe: Recipe, *, data_dir: str | None = None, command: str | None = None,
                 only_stages: list[str] | None = None):
        self.recipe = recipe
        # Run just these stages (e.g. independent ones in parallel processes); the others are
        # reused when finished and skipped when not.
        self.only_stages = only_stages
        if only_stages is not None:
            names = [stage.name for stage in recipe.stages]
            if not only_stages:
                raise DistillError(f"--stages: name at least one stage (stages: {', '.join(names)})")
            if unknown := [name for name in only_stages if name not in names]:
                raise DistillError(f"--stages: no stage named {', '.join(unknown)} in recipe '{recipe.name}' "
                                   f"(stages: {', '.join(names)})")
        self.data_dir = data_dir
        self.command = command or " ".join(["distill", *sys.argv[1:]])
        self.run_dir = Path(recipe.output_dir) / recipe.name

    def run(self) -> list[dict[str, Any]]:
        from distill.stages.runners import STAGE_RUNNERS

        recipe = self.recipe
        check_stage_packages(recipe)
        check_output_dir(self.run_dir)
        check_recipe_against_models(recipe)
        task = task_of(recipe)
        check_stages_for_task(recipe, task)
        check_transfer(recipe, task, self.data_dir)
        accelerator = Accelerator(
            mixed_precision=resolve_mixed_precision(recipe.mixed_precision),
            cpu=_no_gpu(),
            # Each loader batch is split across processes: the same global batches as one process.
            dataloader_config=DataLoaderConfiguration(split_batches=True),
        )
        tokenizer = load_tokenizer(recipe.model.model, trust_remote_code=recipe.model.trust_remote_code, revision=recipe.model.revision)
        data = prepare_data(recipe, task, tokenizer, self.data_dir)
        ctx = RunContext(recipe, self.run_dir, task, tokenizer, data, accelerator, self.command)
        if accelerator.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            dump_recipe(recipe, self.run_dir / "recipe.yaml")
        code_commit()  # read (and cached) now: reports name the code this run started with
        self._check_speed_targets(ctx)
        records: list[dict[str, Any]] = []
        for index, stage in enumerate(recipe.stages):
            stage_hash = stage_fingerprint(recipe, index, dict(ctx.stage_hashes))
            out_dir = self.run_dir / stage.name
            record = finished_record(out_dir, stage_hash)
            ctx.stage_hashes[stage.name] = stage_hash  # later stages' fingerprints chain through it, run or not
            if record is not None:
                accelerator.print(f"[{stage.name}] already done with this recipe (hash {stage_hash}): reusing {out_dir}")
            elif self.only_stages is not None and stage.name not in self.only_stages:
                accelerator.print(f"[{stage.name}] not finished and not in --stages: skipped")
                continue
            else:
                accelerator.print(f"[{stage.name}] {stage.kind} stage")
                record = STAGE_RUNNERS[stage.kind](ctx, stage, out_dir, stage_hash)
            ctx.outputs[stage.name] = out_dir
            records.append(record)
            if accelerator.is_main_process:
                write_report(self.run_dir, recipe, task, records, self.command)
        if recipe.benchmark.enabled and accelerator.is_main_process:
            from distill.reporting.bench import benchmark_run

            records, settings = benchmark_run(ctx, records, self.data_dir)
            write_report(self.run_dir, recipe, task, records, self.command, benchmark=settings)
        accelerator.wait_for_everyone()
        return records


    def _check_speed_targets(self, ctx: RunContext) -> None:
        """The speed targets of the prune stages this run will carry out, before any stage trains."""
        hashes: dict[str, str] = {}
        finished: dict[str, Path] = {}
        for index, stage in enumerate(self.recipe.stages):
            hashes[stage.name] = stage_fingerprint(self.recipe, index, dict(hashes))
            if finished_record(self.run_dir / stage.name, hashes[stage.name]) is not None:
                finished[stage.name] = self.run_dir / stage.name
        pending = [s for s in self.recipe.stages if getattr(s, "target", None) is not None and s.name not in finished
                   and (self.only_stages is None or s.name in self.only_stages)]
        if pending:
            from distill.stages.speed_check import check_speed_targets

            check_speed_targets(ctx, pending, finished)


# Optional packages a stage needs, and the extra that installs them.
STAGE_PACKAGES = {"onnx": (("onnx", "onnxruntime"), "onnx"), "qat": (("onnx", "onnxruntime"), "onnx"), "bnb": (("bitsandbytes",), "bnb")}
LORA_PACKAGES = (("peft",), "lowrank")


def check_stage_packages(recipe: Recipe) -> None:
    """A missing optional package fails the run before any stage trains, in one line."""
    from importlib.util import find_spec

    for index, stage in enumerate(recipe.stages):
        packages, extra = STAGE_PACKAGES.get(stage.kind) or (LORA_PACKAGES if getattr(stage, "lora", None) else ((), ""))
        if missing := [name for name in packages if find_spec(name) is None]:
            raise DistillError(f"stages[{index}] ({stage.name}): needs {', '.join(missing)}, which is not installed: "
                               f"pip install 'distill[{extra}]'")


def _no_gpu() -> bool:
    import torch

    return not torch.cuda.is_available()



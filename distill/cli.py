"""`distill run | validate | eval`: the command line. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from distill.errors import DistillError

DATA_DIR_HELP = "local GLUE folder (<dir>/<task>/{train,dev}.tsv); default: $DISTILL_DATA_DIR, else the Hub"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distill",
        description="Make 🤗 Transformers models small and fast: one YAML recipe runs teacher fine-tuning, "
        "distillation and evaluation.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a recipe's stages in order", description="Run a recipe's stages in order; "
                              "finished stages whose inputs are unchanged are reused.")
    run.add_argument("recipe", help="recipe YAML file")
    run.add_argument("overrides", nargs="*", metavar="key.path=value", help="override recipe fields, e.g. stages.student.train.epochs=2")
    run.add_argument("--data-dir", help=DATA_DIR_HELP)
    run.add_argument("--output-dir", help="where run folders go (default: the recipe's output_dir, runs/)")

    validate = commands.add_parser("validate", help="check a recipe without running it", description="Validate a recipe "
                                   "(and overrides) and print the resolved recipe.")
    validate.add_argument("recipe")
    validate.add_argument("overrides", nargs="*", metavar="key.path=value")

    evaluate = commands.add_parser("eval", help="evaluate a saved model on a task's dev set", description="Evaluate a "
                                   "saved classifier folder on a task's validation split with the task's metrics.")
    evaluate.add_argument("model_dir")
    evaluate.add_argument("--task", required=True, help="GLUE task name (sst2, mrpc, rte, cola, stsb, qnli, wnli)")
    evaluate.add_argument("--data-dir", help=DATA_DIR_HELP)
    evaluate.add_argument("--max-length", type=int, default=128)
    evaluate.add_argument("--batch-size", type=int, default=128)
    evaluate.add_argument("--limit", type=int, help="evaluate on the first N shuffled examples only")
    return parser


def cmd_run(args) -> int:
    from distill.pipeline import Pipeline
    from distill.recipe import load_recipe

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    recipe = load_recipe(args.recipe, overrides)
    command = " ".join(["distill", "run", args.recipe, *args.overrides] + (["--data-dir", args.data_dir] if args.data_dir else []))
    Pipeline(recipe, data_dir=args.data_dir, command=command).run()
    return 0


def cmd_validate(args) -> int:
    import yaml

    from distill.pipeline import task_of
    from distill.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    task_of(recipe)
    print(yaml.safe_dump(recipe.to_dict(), sort_keys=False), end="")
    print(f"# ok: {args.recipe} (hash {recipe.hash()})", file=sys.stderr)
    return 0


def cmd_eval(args) -> int:
    import datasets
    from accelerate import Accelerator
    from transformers import DataCollatorWithPadding

    from distill.data import load_task_splits, resolve_data_dir, take_subset, tokenize_splits
    from distill.evaluation import evaluate_model
    from distill.models import load_classifier, load_tokenizer
    from distill.tasks import get_task

    if not Path(args.model_dir).is_dir():
        raise DistillError(f"{args.model_dir}: no such model folder")
    task = get_task(args.task)
    tokenizer = load_tokenizer(args.model_dir)
    model = load_classifier(args.model_dir, task)
    splits = load_task_splits(task, resolve_data_dir(args.data_dir), splits=("validation",))
    validation = take_subset(splits["validation"], args.limit, seed=0)
    tokenized = tokenize_splits(datasets.DatasetDict(validation=validation), tokenizer, task, args.max_length)
    accelerator = Accelerator(cpu=True) if not _has_gpu() else Accelerator()
    metrics = evaluate_model(model, tokenized["validation"], task, DataCollatorWithPadding(tokenizer), args.batch_size, accelerator)
    print(json.dumps({"model": args.model_dir, "task": task.name, "examples": len(validation), **metrics}, indent=2))
    return 0


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "eval": cmd_eval}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return COMMANDS[args.command](args)
    except DistillError as err:
        print(f"distill: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("distill: interrupted; finished stages are kept and reused by the next run", file=sys.stderr)
        return 130


def _quiet_libraries() -> None:
    """Keep the terminal for our progress bars: the libraries' info chatter goes."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers
    import datasets

    transformers.logging.set_verbosity_error()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()


if __name__ == "__main__":
    sys.exit(main())

"""`distill run | validate | eval | push | bench | report`: the command line. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from distill import DistillError
from distill.machine import check_versions

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
    run.add_argument("--stages", metavar="NAME[,NAME…]", help="run only these stages (others are reused when "
                     "finished, skipped when not), e.g. independent stages in parallel processes; a final run "
                     "without --stages reuses them all and writes the full report")

    validate = commands.add_parser("validate", help="check a recipe without running it", description="Validate a recipe "
                                   "(and overrides) and print the resolved recipe.")
    validate.add_argument("recipe")
    validate.add_argument("overrides", nargs="*", metavar="key.path=value")

    evaluate = commands.add_parser("eval", help="evaluate a saved model on a task's dev set", description="Evaluate a "
                                   "saved classifier folder (torch, ONNX Runtime or bitsandbytes) on a task's "
                                   "validation split with the task's metrics.")
    evaluate.add_argument("model_dir")
    evaluate.add_argument("--task", required=True, help="built-in task name (sst2, mrpc, rte, cola, stsb, qnli, wnli, wnut17)")
    evaluate.add_argument("--data-dir", help=DATA_DIR_HELP)
    evaluate.add_argument("--max-length", type=int, default=128)
    evaluate.add_argument("--batch-size", type=int, default=128)
    evaluate.add_argument("--limit", type=int, help="evaluate on the first N shuffled examples only")
    evaluate.add_argument("--split", choices=("validation", "test"), default="validation",
                          help="the split to score (test: tasks with a labelled test set, e.g. wnut17)")

    push = commands.add_parser("push", help="publish a run's evaluated artifact to the Hugging Face Hub", description="Push "
                               "one stage's artifact of a run folder to the Hub with a model card (results, lineage, recipe). "
                               "Token: $HF_TOKEN or the `hf auth login` cache; endpoint: $HF_ENDPOINT or the Hub.")
    push.add_argument("run_dir", help="a run folder, runs/<recipe>/ (holds report.json and recipe.yaml)")
    push.add_argument("--repo-id", required=True, help="ORG/NAME of the model repo (created when missing)")
    push.add_argument("--stage", help="stage whose artifact to push (default: the last stage with a model, baselines last)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", help="branch to push to (created when missing; default: main)")
    push.add_argument("--dry-run", metavar="DIR", help="write the exact folder that would be uploaded to DIR; upload nothing")
    push.add_argument("--license", help="license id for the card (default: the recipe's publish stage, else apache-2.0)")
    push.add_argument("--include-logs", action="store_true", help="also upload training logs (train_log.jsonl)")

    bench = commands.add_parser("bench", help="measure saved models: metric, size, latency, memory", description="Benchmark "
                                "saved model folders (torch, ONNX Runtime, bitsandbytes) the same way: dev metric (from their "
                                "metrics.json, else evaluated), size, latency at fixed batch sizes, peak memory; writes "
                                "report.md, report.json and report.png.")
    bench.add_argument("model_dirs", nargs="+", metavar="DIR")
    bench.add_argument("--task", required=True, help="built-in task name (its dev set gives the inputs and the metric)")
    bench.add_argument("--data-dir", help=DATA_DIR_HELP)
    bench.add_argument("--reference", metavar="DIR", help="ratios are taken against this model (default: the first DIR)")
    bench.add_argument("--output-dir", default="bench", help="where the report goes (default: ./bench)")
    bench.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    bench.add_argument("--seq-length", type=int, default=64, help="dev sentences padded/cut to this many tokens (default 64)")
    bench.add_argument("--warmup", type=int, default=3)
    bench.add_argument("--repeats", type=int, default=20, help="timed calls per model and batch size; the median is kept")
    bench.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default: torch's, all cores)")
    bench.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")

    report = commands.add_parser("report", help="tables across runs: the GLUE table", description="Render the GLUE "
                                 "table (DistilBERT README style) from the runs of recipes/glue/*.yaml: per-task dev "
                                 "scores ×100, macro score, % of teacher, then size and batch-1 speed.")
    report.add_argument("--glue", required=True, nargs="+", metavar="RUN_DIR",
                        help="run folders (runs/glue_rte) or their report.json files, one per GLUE task")
    report.add_argument("--json", metavar="FILE", help="also write the summary (tables' cells and the reports) as JSON, "
                        "e.g. benchmarks/glue.json")
    report.add_argument("--markdown", metavar="FILE", help="also write the two tables to this markdown file")
    report.add_argument("--rerun", nargs="+", default=[], metavar="RUN_DIR",
                        help="reports of partial re-runs (distill run --stages) of tasks given to --glue: their stages "
                             "replace the same-named stages of that task's report")
    return parser


def _run_overrides(args) -> list[str]:
    return [*args.overrides, *([f"output_dir={args.output_dir}"] if getattr(args, "output_dir", None) else [])]


def check_recipe_data(args) -> None:
    """The recipe's task data files, checked before the heavy imports (see check_task_files)."""
    from distill.data.files import check_task_files
    from distill.recipe import load_recipe

    check_task_files(load_recipe(args.recipe, _run_overrides(args)), getattr(args, "data_dir", None))


def cmd_run(args) -> int:
    from distill.recipe import load_recipe
    from distill.stages.pipeline import Pipeline

    recipe = load_recipe(args.recipe, _run_overrides(args))
    command = " ".join(["distill", "run", args.recipe, *args.overrides] + (["--data-dir", args.data_dir] if args.data_dir else [])
                       + (["--stages", args.stages] if args.stages is not None else []))
    only_stages = [name.strip() for name in args.stages.split(",") if name.strip()] if args.stages is not None else None
    Pipeline(recipe, data_dir=args.data_dir, command=command, only_stages=only_stages).run()
    return 0


def cmd_validate(args) -> int:
    import yaml

    from distill.data.tasks import task_of
    from distill.recipe import load_recipe
    from distill.stages.preflight import check_recipe_against_models, check_stages_for_task, check_transfer

    recipe = load_recipe(args.recipe, args.overrides)
    task = task_of(recipe)
    check_stages_for_task(recipe, task)
    check_transfer(recipe, task, None)
    check_recipe_against_models(recipe)
    print(yaml.safe_dump(recipe.to_dict(), sort_keys=False), end="")
    print(f"# ok: {args.recipe} (hash {recipe.hash()})", file=sys.stderr)
    return 0


def cmd_eval(args) -> int:
    from distill.data.splits import load_task_splits, resolve_data_dir, take_subset
    from distill.data.tasks import get_task
    from distill.quantize.artifacts import describe_artifact
    from distill.reporting.bench import evaluate_folder

    if not Path(args.model_dir).is_dir():
        raise DistillError(f"{args.model_dir}: no such model folder")
    task = get_task(args.task)
    backend = describe_artifact(args.model_dir).backend  # first: a folder without config.json fails in one short line
    split = load_task_splits(task, resolve_data_dir(args.data_dir), splits=(args.split,))[args.split]
    split = take_subset(split, args.limit, seed=0)
    # The same loading and scoring as the run's reports and `distill bench` (saved dtype, pruned/factorized maps).
    metrics = evaluate_folder(Path(args.model_dir), task, split, args.batch_size, args.max_length)[0]
    print(json.dumps({"model": args.model_dir, "backend": backend, "task": task.name, "split": args.split,
                      "examples": len(split), **metrics}, indent=2))
    return 0


def cmd_push(args) -> int:
    from distill.publish import push_run

    result = push_run(
        args.run_dir,
        args.repo_id,
        stage=args.stage,
        private=args.private,
        revision=args.revision,
        dry_run_dir=args.dry_run,
        license=args.license,
        include_logs=args.include_logs,
    )
    if result.folder is not None:
        print(f"dry run: {len(result.files)} files of stage '{result.stage}' for {result.repo_id} written to {result.folder} (nothing uploaded)")
    else:
        print(f"pushed stage '{result.stage}' ({len(result.files)} files) to {result.repo_id}: {result.commit_url}")
    return 0


def cmd_bench(args) -> int:
    from pydantic import ValidationError

    from distill.data.tasks import get_task
    from distill.recipe import BenchmarkConfig
    from distill.reporting.bench import bench_dirs

    try:
        cfg = BenchmarkConfig(enabled=True, batch_sizes=args.batch_sizes, seq_length=args.seq_length, warmup=args.warmup,
                              repeats=args.repeats, threads=args.threads, memory=not args.no_memory)
    except ValidationError as err:
        first = err.errors()[0]
        raise DistillError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None
    command = " ".join(["distill", "bench", *sys.argv[2:]]) if sys.argv[1:2] == ["bench"] else "distill bench"
    report = bench_dirs(args.model_dirs, get_task(args.task), data_dir=args.data_dir, cfg=cfg, reference=args.reference,
                        output_dir=Path(args.output_dir), command=command)
    print(f"report: {Path(args.output_dir) / 'report.md'} ({len(report['stages'])} models)")
    return 0


def cmd_report(args) -> int:
    from distill.reporting.glue_table import glue_markdown, glue_summary

    command = " ".join(["distill", "report", "--glue", *args.glue] + (["--rerun", *args.rerun] if args.rerun else [])
                       + (["--json", args.json] if args.json else []) + (["--markdown", args.markdown] if args.markdown else []))
    summary = glue_summary(args.glue, command=command, reruns=args.rerun)
    markdown = glue_markdown(summary)
    print(markdown)
    # The notes go to stderr: stdout stays the markdown alone, for pipes.
    for path, text in ((args.json, json.dumps(summary, indent=2) + "\n"), (args.markdown, markdown + "\n")):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
            print(f"report: wrote {path}", file=sys.stderr)
    return 0


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "eval": cmd_eval, "push": cmd_push, "bench": cmd_bench,
            "report": cmd_report}
# Checks that need no heavy library, run before transformers/datasets load: a bad data file fails in a second, not ten.
EARLY_CHECKS = {"run": check_recipe_data, "validate": check_recipe_data}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may also follow options (`run r.yaml --data-dir D a=1`): argparse leaves those over.
    args, extra = parser.parse_known_args(argv)
    if extra and (not hasattr(args, "overrides") or any("=" not in e or e.startswith("-") for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    try:
        check_versions()  # before the libraries are imported: an old one may fail with a traceback
        if args.command in EARLY_CHECKS:
            EARLY_CHECKS[args.command](args)
        if args.command != "validate":  # validate imports neither library
            _quiet_libraries()
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
    # transformers 5 imports peft, which imports bitsandbytes, which warns on import about an
    # optional CPU kernel package: not the user's concern, and it breaks one-line errors.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    # 5.x draws a "Loading weights" bar on stderr at every from_pretrained: errors stay one line.
    transformers.logging.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()


if __name__ == "__main__":
    sys.exit(main())

"""Render the model card of one stage of a finished run, without pushing anything.

    python scripts/render_card.py runs/quickstart model_cards/quickstart-student.md --stage student \
        --repo-id ORG/minilm-l3-sst2

The card is exactly the README.md `distill push` would upload for that stage and repo id.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distill import DistillError
from distill.publish.card import render_card
from distill.publish.push import check_repo_id, recipe_license
from distill.publish.run_info import default_stage, load_run, require_evaluation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a run folder, runs/<recipe>/")
    parser.add_argument("out", help="where to write the card (markdown)")
    parser.add_argument("--stage", help="stage to describe (default: the one `distill push` would publish)")
    parser.add_argument("--repo-id", help="ORG/NAME used in the usage snippets (default: distill/<recipe>-<stage>)")
    parser.add_argument("--license", help="license id (default: the recipe's publish stage, else apache-2.0)")
    args = parser.parse_args(argv)
    try:
        run = load_run(args.run_dir)
        stage = args.stage or default_stage(run)
        require_evaluation(run, stage)
        repo_id = args.repo_id or f"distill/{run.recipe.get('name', run.run_dir.name)}-{stage}"
        check_repo_id(repo_id)
        card = render_card(run, stage, repo_id, license=args.license or recipe_license(run, stage) or "apache-2.0")
    except DistillError as err:
        print(f"render_card: error: {err}", file=sys.stderr)
        return err.exit_code
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    card.save(args.out)
    print(f"wrote the card of {run.run_dir}/{stage} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

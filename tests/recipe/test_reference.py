"""docs/recipes.md: the recipe reference generated from the schema, never edited by hand."""

import typing
from pathlib import Path

from distill.recipe import DataConfig, Stage
from distill.recipe.reference import COMMAND, main, recipe_reference

REPO = Path(__file__).resolve().parents[2]


def test_docs_recipes_md_is_the_reference_generated_from_the_schema():
    page = REPO / "docs" / "recipes.md"
    assert page.is_file(), f"docs/recipes.md is missing: run {COMMAND}"
    assert page.read_text(encoding="utf-8") == recipe_reference(), (
        f"docs/recipes.md is out of date with the schema in distill/recipe/: run {COMMAND}")


def test_every_stage_kind_has_a_section_in_union_order():
    kinds = [typing.get_args(m.model_fields["kind"].annotation)[0] for m in typing.get_args(typing.get_args(Stage)[0])]
    headings = [line.removeprefix("### ") for line in recipe_reference().splitlines() if line.startswith("### ")]
    assert [h for h in headings if h in kinds] == kinds


def test_a_fields_source_comment_is_its_meaning_with_type_and_default():
    assert "holdout_size" in DataConfig.model_fields and DataConfig.model_fields["holdout_size"].description is None
    row = next(line for line in recipe_reference().splitlines() if line.startswith("| `holdout_size` |"))
    # The two comment lines above the field, joined; its ge=0 constraint and default.
    assert row == ("| `holdout_size` | `int` (>= 0) | `0` | Examples carved out of train to pick the best checkpoint, "
                   "so the reported dev metric is not also the one that selected the checkpoint. 0 = select on validation. |")


def test_nested_blocks_are_documented_once_and_linked(capsys):
    page = recipe_reference()
    assert page.count("### TrainConfig\n") == 1 and "[TrainConfig](#trainconfig)" in page
    assert "| `recovery` | [RecoveryConfig](#recoveryconfig) \\| None | `None` |" in page
    main([])  # no argument: the page goes to stdout, unchanged
    assert capsys.readouterr().out == page

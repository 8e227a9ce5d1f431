"""The README's support matrix is benchmarks/architectures.json as measured, in the issue's form."""

import json
from pathlib import Path

import pytest
from helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT / "benchmarks" / "architectures.json"


def test_the_readme_shows_the_measured_support_matrix():
    matrix = load_script("architecture_matrix")
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(matrix.README_START) + len(matrix.README_START):readme.index(matrix.README_END)]
    legacy = MEASURED.with_name("architectures_legacy.json")
    expected = matrix.render_block(json.loads(MEASURED.read_text()), json.loads(legacy.read_text()) if legacy.is_file() else None)
    assert block.strip() == expected, \
        "README.md is stale: python scripts/architecture_matrix.py --readme README.md"


@pytest.mark.parametrize("name", ["architectures.json", "architectures_legacy.json"])
def test_every_family_and_stage_has_a_status_in_each_stacks_matrix(name):
    matrix = load_script("architecture_matrix")
    measured = json.loads((MEASURED.parent / name).read_text())
    assert list(measured["families"]) == list(matrix.TOKENIZER_KINDS)
    for family in measured["families"].values():
        assert list(family["stages"]) == matrix.STAGES
        assert all(status == "ok" or status.startswith("refused: ") for status in family["stages"].values())

"""`distill run` / `validate` check the recipe's task data files before transformers and datasets
load: a missing or malformed file fails within a second, in one line, exit code 2."""

import subprocess
import sys

import pytest
import yaml

import distill.cli
from distill import DistillError
from distill.cli import main
from distill.data.files import check_task_files
from distill.recipe import load_recipe

RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"
GOOD_ROWS = RTE_HEADER + "0\tA man sleeps.\tSomeone sleeps.\tentailment\n"
BAD_LABEL_ROWS = RTE_HEADER + "0\ta\tb\tmaybe\n"


def write_recipe(tmp_path, task="rte", data=None):
    recipe = {"name": "early", "task": task, "data": {"max_length": 32, **(data or {})}, "model": {"model": "minilm-l6"},
              "stages": [{"kind": "distill", "name": "student", "train": {"max_steps": 1, "batch_size": 8}}]}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def data_dir(tmp_path, files: dict[str, str]):
    folder = tmp_path / "data"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


@pytest.fixture
def no_heavy_imports(monkeypatch):
    """Fail the test if main() gets as far as importing transformers and datasets."""
    def refuse():
        raise AssertionError("the libraries were loaded before the data check failed")
    monkeypatch.setattr(distill.cli, "_quiet_libraries", refuse)


def assert_one_line_error(capsys, expected):
    err = capsys.readouterr().err.strip()
    assert err.startswith("distill: error:") and "\n" not in err, err
    assert expected in err, err


def test_malformed_label_stops_run_with_file_and_line_before_any_work(tmp_path, capsys, no_heavy_imports):
    folder = data_dir(tmp_path, {"rte/train.tsv": GOOD_ROWS, "rte/dev.tsv": BAD_LABEL_ROWS})
    argv = ["run", str(write_recipe(tmp_path)), "--data-dir", str(folder), f"output_dir={tmp_path / 'runs'}"]
    assert main(argv) == 2
    assert_one_line_error(capsys, f"{folder / 'rte' / 'dev.tsv'}:2: label 'maybe' is not one of entailment, not_entailment")
    assert not (tmp_path / "runs").exists()


def test_missing_train_split_stops_run_with_the_split_missing_line(tmp_path, capsys, no_heavy_imports):
    folder = data_dir(tmp_path, {"rte/dev.tsv": GOOD_ROWS})
    argv = ["run", str(write_recipe(tmp_path)), "--data-dir", str(folder), f"output_dir={tmp_path / 'runs'}"]
    assert main(argv) == 2
    assert_one_line_error(capsys, f"rte: the train split is missing: no file {folder / 'rte' / 'train.tsv'}")
    assert not (tmp_path / "runs").exists()


def test_validate_checks_the_data_folder_given_as_an_override(tmp_path, capsys, no_heavy_imports):
    folder = data_dir(tmp_path, {"rte/train.tsv": GOOD_ROWS, "rte/dev.tsv": BAD_LABEL_ROWS})
    assert main(["validate", str(write_recipe(tmp_path)), f"data.dir={folder}"]) == 2
    assert_one_line_error(capsys, "dev.tsv:2: label 'maybe'")


def test_token_task_files_are_only_checked_to_exist(tmp_path):
    folder = data_dir(tmp_path, {"wnut17/train.conll": "not a conll line\n"})  # parsed later, with datasets
    with pytest.raises(DistillError, match="wnut17: the validation split is missing"):
        check_task_files(load_recipe(write_recipe(tmp_path, task="wnut17")), str(folder))
    (folder / "wnut17" / "dev.conll").write_text("also not conll\n")
    check_task_files(load_recipe(write_recipe(tmp_path, task="wnut17")), str(folder))


def test_early_check_imports_no_heavy_library(tmp_path):
    folder = data_dir(tmp_path, {"rte/train.tsv": GOOD_ROWS, "rte/dev.tsv": BAD_LABEL_ROWS})
    code = (
        "import sys\n"
        "from distill.cli import main\n"
        f"assert main(['run', {str(write_recipe(tmp_path))!r}, '--data-dir', {str(folder)!r}]) == 2\n"
        "heavy = [name for name in ('datasets', 'torch', 'transformers') if name in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "dev.tsv:2: label 'maybe'" in result.stderr


def test_good_recipe_passes_the_check(tmp_path, glue_data_dir):
    check_task_files(load_recipe(write_recipe(tmp_path)), str(glue_data_dir))

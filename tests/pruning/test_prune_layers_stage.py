"""The prune stage's `layers:` block: which layers `count` removes, in how many steps, and a tiny
`distill run` / `distill validate` through the CLI."""

import json

import pytest
import torch
import yaml
from families import sample_batch, tiny_checkpoint, tiny_classifier

from distill.cli import main
from distill.models.families import transformer_blocks
from distill.pruning import PRUNING_KEY, load_pruned, remove_layers
from distill.recipe import validate_recipe
from distill.stages.prune import _layers_to_keep


def prune_stage(layers: dict, iterations: int = 1):
    recipe = {
        "name": "t",
        "task": "sst2",
        "stages": [{"kind": "teacher", "skip_training": True}, {"kind": "prune", "layers": layers, "iterations": iterations}],
    }
    return validate_recipe(recipe).stages[1]


def own_loss(model, batch):
    return model(**batch).loss


def test_count_removes_the_layer_that_contributes_nothing():
    model = tiny_classifier("bert")
    silent = transformer_blocks(model)[1][2]
    with torch.no_grad():  # its attention output and FFN output add nothing: no gate moves the loss
        silent.attention.output.dense.weight.zero_()
        silent.output.dense.weight.zero_()
    assert _layers_to_keep(prune_stage({"count": 1}), model, [sample_batch()], own_loss, 1.0, 4) == [0, 1, 3]


def test_count_is_reached_in_equal_steps_counted_from_the_stages_input():
    model, stage = tiny_classifier("bert"), prune_stage({"count": 2}, iterations=2)
    first = _layers_to_keep(stage, model, [sample_batch()], own_loss, 0.5, 4)
    remove_layers(model, first)
    assert len(first) == 3 and len(_layers_to_keep(stage, model, [sample_batch()], own_loss, 1.0, 4)) == 2


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    return tiny_checkpoint("bert", tmp_path_factory.mktemp("checkpoints"))  # 4 layers of 4 heads


def write_recipe(tmp_path, teacher, prune: dict):
    recipe = {
        "name": "layers",
        "task": "sst2",
        "seed": 0,
        "mixed_precision": "no",
        "data": {"max_length": 32, "train_limit": 32, "eval_limit": 24},
        "model": {"model": str(teacher)},
        "stages": [
            {"kind": "teacher", "skip_training": True},
            {"kind": "prune", "importance": {"batches": 1, "batch_size": 8}, **prune},
        ],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_distill_run_prunes_heads_then_removes_the_least_valuable_layer(tmp_path, tiny_teacher, glue_data_dir):
    path = write_recipe(tmp_path, tiny_teacher, {"heads": {"per_layer": {2: [0, 1]}}, "layers": {"count": 1}})
    assert main(["run", str(path), f"output_dir={tmp_path / 'runs'}", "--data-dir", str(glue_data_dir)]) == 0
    record = json.loads((tmp_path / "runs" / "layers" / "report.json").read_text())["stages"][-1]
    assert (record["layers_pruned"], record["layers_total"], len(record["layers_kept"])) == (1, 4, 3)
    model = load_pruned(tmp_path / "runs" / "layers" / "pruned")
    assert getattr(model.config, PRUNING_KEY)["layers_kept"] == record["layers_kept"] and model.config.num_hidden_layers == 3
    # Heads were removed first, by the input's layer indices: layer 2 lost two, wherever it is now.
    assert [len(h) for h in getattr(model.config, PRUNING_KEY)["heads_kept"]] == [
        4 if i != 2 else 2 for i in record["layers_kept"]
    ]


def test_distill_validate_refuses_a_drop_beyond_the_input_in_one_line_with_exit_2(tmp_path, tiny_teacher, glue_data_dir, capsys):
    path = write_recipe(tmp_path, tiny_teacher, {"layers": {"drop": [0, 4]}})
    assert main(["validate", str(path), f"data.dir={glue_data_dir}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"distill: error: stages[1].layers.drop: layer 4 is beyond the input's 4 layers (0..3) in {tiny_teacher}", err

"""Removing whole layers in every family: the same as skipping them, reloadable exactly, composable
with head and FFN pruning in either order, and refused when the list cannot be kept."""

import json
from contextlib import contextmanager

import pytest
import torch
from families import TOKENIZER_KINDS, masking, sample_batch, tiny_classifier
from transformers import AutoModelForSequenceClassification

from distill import DistillError
from distill.models.families import transformer_blocks
from distill.pruning import (
    PRUNING_KEY,
    ffn_importance,
    head_importance,
    kept_layers,
    load_pruned,
    loads_natively,
    prune_ffn,
    prune_heads,
    remove_layers,
)

FAMILIES = list(TOKENIZER_KINDS)
# Layer 0 goes: ModernBERT's first kept block keeps its attn_norm, and layers 1 and 3 are both
# local, where their new indices would make the first one global.
KEEP = [1, 3]
HEADS = {1: [0, 2], 3: [1, 2, 3]}  # original layer indices
NEURONS = {1: list(range(0, 48, 2)), 3: [4, 5, 40]}


def _logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@contextmanager
def _skipping(model, layers):
    """The model with the blocks at `layers` passing their input through unchanged."""

    def identity(module, args, kwargs, output):
        hidden = args[0] if args else kwargs["hidden_states"]
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    blocks = transformer_blocks(model)[1]
    handles = [blocks[i].register_forward_hook(identity, with_kwargs=True) for i in layers]
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()


def _skipped_logits(model, batch, keep):
    with _skipping(model, [i for i in range(len(transformer_blocks(model)[1])) if i not in keep]):
        return _logits(model, batch)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_removing_layers_equals_skipping_them(model_type):
    model, batch = tiny_classifier(model_type), sample_batch(length=20)
    expected = _skipped_logits(model, batch, KEEP)
    remove_layers(model, KEEP)
    assert len(transformer_blocks(model)[1]) == model.config.num_hidden_layers == 2
    torch.testing.assert_close(_logits(model, batch), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_a_layer_removed_model_reloads_exactly_with_json_config(model_type, tmp_path):
    model, batch = tiny_classifier(model_type), sample_batch(length=20)
    remove_layers(model, KEEP)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved[PRUNING_KEY]["layers_kept"] == KEEP
    reloaded = load_pruned(tmp_path)
    assert kept_layers(reloaded) == KEEP
    torch.testing.assert_close(_logits(reloaded, batch), _logits(model, batch), atol=1e-6, rtol=0)


@pytest.mark.parametrize("model_type", FAMILIES)
@pytest.mark.parametrize("order", ["heads and FFN first", "layers first"])
def test_layer_removal_composes_with_head_and_ffn_pruning_in_either_order(model_type, order):
    model, batch = tiny_classifier(model_type), sample_batch(length=20)
    with masking(model, HEADS, NEURONS):
        expected = _skipped_logits(model, batch, KEEP)
    if order == "layers first":
        remove_layers(model, KEEP)
        position = {original: i for i, original in enumerate(KEEP)}
        prune_heads(model, {position[layer]: heads for layer, heads in HEADS.items()})
        prune_ffn(model, {position[layer]: keep for layer, keep in NEURONS.items()})
    else:
        prune_heads(model, HEADS)
        prune_ffn(model, NEURONS)
        remove_layers(model, KEEP)
    torch.testing.assert_close(_logits(model, batch), expected, atol=1e-5, rtol=1e-4)
    assert getattr(model.config, PRUNING_KEY) == {
        "layers_kept": KEEP,
        "heads_kept": [[1, 3], [0]],
        "intermediate_sizes": [24, 3],
        "original_intermediate_size": 48,
    }


@pytest.mark.parametrize("model_type", FAMILIES)
def test_a_layer_removed_and_pruned_model_reloads_exactly(model_type, tmp_path):
    model, batch = tiny_classifier(model_type), sample_batch(length=20)
    prune_heads(model, HEADS)
    prune_ffn(model, NEURONS)
    remove_layers(model, KEEP)
    model.save_pretrained(tmp_path)
    torch.testing.assert_close(_logits(load_pruned(tmp_path), batch), _logits(model, batch), atol=1e-6, rtol=0)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_importance_scores_the_layers_left(model_type):
    model = tiny_classifier(model_type)
    remove_layers(model, [0, 2])
    prune_heads(model, {1: [3]})
    heads, neurons = head_importance(model, [sample_batch()]), ffn_importance(model, [sample_batch()])
    assert heads.shape == (2, 4) and torch.isnan(heads[1, 3]) and torch.isfinite(heads[0]).all()
    assert [len(n) for n in neurons] == [48, 48] and all(torch.isfinite(n).all() for n in neurons)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_removing_twice_records_the_original_indices_and_equals_removing_once(model_type):
    model, once, batch = tiny_classifier(model_type), tiny_classifier(model_type), sample_batch(length=20)
    remove_layers(model, [0, 2, 3])
    remove_layers(model, [1, 2])
    remove_layers(once, [2, 3])
    assert getattr(model.config, PRUNING_KEY)["layers_kept"] == [2, 3]
    torch.testing.assert_close(_logits(model, batch), _logits(once, batch), atol=0, rtol=0)


@pytest.mark.parametrize("model_type", FAMILIES)
@pytest.mark.parametrize("keep", [[0, 3], [1, 3], [0, 2]])
def test_loads_natively_says_whether_plain_from_pretrained_rebuilds_a_layer_removed_model(model_type, keep, tmp_path):
    """ModernBERT: a first kept layer other than layer 0 keeps an attn_norm that a native first block
    lacks; on transformers 4.x, kinds that differ from those of the new indices ([0, 2]: both global)."""
    model, batch = tiny_classifier(model_type), sample_batch(length=20)
    remove_layers(model, keep)
    model.save_pretrained(tmp_path)
    native = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    same = torch.allclose(_logits(native, batch), _logits(model, batch), atol=1e-6, rtol=0)
    assert loads_natively(json.loads((tmp_path / "config.json").read_text())) == loads_natively(model) == same
    assert same or model_type == "modernbert"


def test_a_folder_saved_before_layers_could_be_removed_still_loads(tmp_path):
    model, batch = tiny_classifier("modernbert"), sample_batch(length=20)
    prune_heads(model, HEADS)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config[PRUNING_KEY]["layers_kept"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert loads_natively(config) == loads_natively(model)
    reloaded = load_pruned(tmp_path)
    assert kept_layers(reloaded) == [0, 1, 2, 3]
    torch.testing.assert_close(_logits(reloaded, batch), _logits(model, batch), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "keep, message",
    [
        ([], r"^layers to keep: the list is empty; a model keeps at least one layer$"),
        ([0, 4], r"^layers to keep: layer 4 out of range; the model has layers 0\.\.3$"),
        ([-1], r"^layers to keep: layer -1 out of range"),
        ([1, 2, 1], r"^layers to keep: \[1\] listed twice$"),
    ],
)
def test_a_keep_list_that_cannot_be_kept_is_refused_in_one_line(keep, message):
    with pytest.raises(DistillError, match=message):
        remove_layers(tiny_classifier("bert"), keep)


def test_a_deberta_whose_convolution_follows_the_first_layer_keeps_that_layer():
    model = tiny_classifier("deberta-v2", conv_kernel_size=3)
    with pytest.raises(DistillError, match=r"^layers to keep: must include layer 0: encoder\.conv runs on its output$"):
        remove_layers(model, [1, 2])
    remove_layers(model, [0, 2])

"""Structured pruning in every family: removing heads and neurons is the same as masking them,
and the pruned model reloads exactly."""

import pytest
import torch
from families import TOKENIZER_KINDS, masking, sample_batch, tiny_classifier

from distill.models.families import transformer_blocks
from distill.pruning import head_importance, kept_heads, load_pruned, prune_ffn, prune_heads, pruning_counts

FAMILIES = list(TOKENIZER_KINDS)
HEADS = {0: [0, 1, 2, 3], 1: [1], 2: [0, 3]}  # layer 0 loses every head
NEURONS = {1: list(range(0, 48, 3)), 3: [1, 5, 7]}


def _logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def _masked_logits(model, batch, heads, neurons):
    """The unpruned model's logits with the removed heads' and neurons' contributions zeroed."""
    with masking(model, heads, neurons):
        return _logits(model, batch)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_removing_heads_and_neurons_equals_masking_them(model_type):
    model, batch = tiny_classifier(model_type), sample_batch()
    expected = _masked_logits(model, batch, HEADS, NEURONS)
    prune_heads(model, HEADS)
    prune_ffn(model, NEURONS)
    torch.testing.assert_close(_logits(model, batch), expected, atol=1e-5, rtol=1e-4)
    assert pruning_counts(model)["heads_pruned"] == 7


@pytest.mark.parametrize("model_type", FAMILIES)
def test_a_pruned_model_of_every_family_reloads_exactly(model_type, tmp_path):
    model, batch = tiny_classifier(model_type), sample_batch()
    prune_heads(model, HEADS)
    prune_ffn(model, NEURONS)
    model.save_pretrained(tmp_path)
    reloaded = load_pruned(tmp_path)
    assert kept_heads(reloaded) == kept_heads(model)
    torch.testing.assert_close(_logits(reloaded, batch), _logits(model, batch), atol=1e-6, rtol=0)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_head_importance_scores_every_kept_head_of_every_family(model_type):
    model = tiny_classifier(model_type)
    prune_heads(model, {1: [2]})
    scores = head_importance(model, [sample_batch()])
    assert torch.isnan(scores[1, 2]) and torch.isfinite(scores[0]).all() and (scores[0] > 0).all()


def test_a_gated_ffn_keeps_each_neurons_up_and_gate_rows_together():
    model = tiny_classifier("modernbert")
    wi = transformer_blocks(model)[1][0].mlp.Wi.weight.detach().clone()
    prune_ffn(model, {0: [3, 10]})
    kept = transformer_blocks(model)[1][0].mlp.Wi.weight
    torch.testing.assert_close(kept, wi[[3, 10, 48 + 3, 48 + 10]])


def test_deberta_position_projections_lose_the_same_heads_as_key_and_query():
    model = tiny_classifier("deberta-v2", share_att_key=False)
    prune_heads(model, {0: [1, 2]})
    attention = transformer_blocks(model)[1][0].attention.self
    assert attention.pos_key_proj.out_features == attention.key_proj.out_features == 16
    assert attention.pos_query_proj.out_features == 16

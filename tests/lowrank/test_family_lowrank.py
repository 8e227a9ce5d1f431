"""Factorization and LoRA in every family: the architecture layer names the layers, the result
reloads exactly."""

import pytest
import torch
from families import TOKENIZER_KINDS, sample_batch, tiny_classifier

from distill.lowrank import load_factorized
from distill.lowrank.factorize import BLOCK_MODULES, RankRule, factorize_model
from distill.lowrank.lora import add_lora, merge_lora
from distill.models.families import family_of
from distill.pruning import prune_ffn, prune_heads
from distill.recipe import LoraSettings

FAMILIES = list(TOKENIZER_KINDS)


def _logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.mark.parametrize("model_type", FAMILIES)
def test_every_block_layer_of_every_family_factorizes_and_reloads_exactly(model_type, tmp_path):
    model, batch = tiny_classifier(model_type), sample_batch()
    prune_heads(model, {0: [0, 1, 2, 3], 1: [2]})  # pruned first, as in a chain
    prune_ffn(model, {2: list(range(20))})
    result = factorize_model(model, modules=BLOCK_MODULES if family_of(model).qkv else [m for m in BLOCK_MODULES if m != "qkv"],
                             linear_rule=RankRule(rank=2))
    assert any(".ffn" in p or "Wi" in p or "lin1" in p or "intermediate" in p for p in result.ranks)
    model.save_pretrained(tmp_path)
    torch.testing.assert_close(_logits(load_factorized(tmp_path), batch), _logits(model, batch), atol=1e-6, rtol=0)


def test_query_key_and_value_name_a_fused_projection_once():
    model = tiny_classifier("modernbert")
    result = factorize_model(model, modules=["query", "key", "value"], linear_rule=RankRule(rank=2))
    assert sorted(result.ranks) == [f"model.layers.{i}.attn.Wqkv" for i in range(4)]


@pytest.mark.parametrize("model_type", FAMILIES)
def test_lora_adapts_each_familys_default_layers_and_merges_to_the_same_function(model_type):
    model, batch = tiny_classifier(model_type), sample_batch()
    peft_model = add_lora(model, LoraSettings(rank=2))
    adapted = {name for name, _ in peft_model.named_modules() if name.endswith("lora_A")}
    assert adapted and all(any(t in name for t in family_of(model).lora_targets) for name in adapted)
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.1)  # B starts at 0: make the update count
    expected = _logits(peft_model.eval(), batch)
    torch.testing.assert_close(_logits(merge_lora(peft_model).eval(), batch), expected, atol=1e-5, rtol=1e-4)

"""ONNX export in every family, pruned shapes and removed layers included: plain onnxruntime gives torch's logits."""

import numpy as np
import pytest
import torch
from families import TOKENIZER_KINDS, sample_batch, tiny_classifier

from distill.pruning import prune_ffn, prune_heads, remove_layers
from distill.quantize.ort import export_onnx, graph_input_names

FAMILIES = list(TOKENIZER_KINDS)


def assert_onnxruntime_gives_torchs_logits(model, folder):
    import onnxruntime

    batch = sample_batch(length=20)
    path = export_onnx(model, folder / "model.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    # The exporter drops an input the graph never reads (DeBERTa-v3 takes token_type_ids but has no type embeddings).
    assert names[:2] == ["input_ids", "attention_mask"] and set(names) <= set(graph_input_names(model))
    feed = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "token_type_ids": torch.zeros_like(batch["input_ids"]),
    }
    with torch.no_grad():
        expected = model(**{n: feed[n] for n in names}).logits.numpy()
    np.testing.assert_allclose(session.run(["logits"], {n: feed[n].numpy() for n in names})[0], expected, atol=1e-4)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_a_pruned_model_of_every_family_exports_to_onnx_with_torchs_logits(model_type, tmp_path):
    model = tiny_classifier(model_type)
    prune_heads(model, {0: [0, 1, 2, 3], 1: [2]})
    prune_ffn(model, {2: list(range(20))})
    assert_onnxruntime_gives_torchs_logits(model, tmp_path)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_a_model_of_every_family_without_some_layers_exports_to_onnx_with_torchs_logits(model_type, tmp_path):
    model = tiny_classifier(model_type)
    remove_layers(model, [1, 3])  # ModernBERT: its first block keeps an attn_norm, both blocks are local
    assert_onnxruntime_gives_torchs_logits(model, tmp_path)

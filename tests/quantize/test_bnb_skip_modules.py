"""bitsandbytes `skip_modules`: the task head (classifier and BERT's pooler) stays unquantized on
transformers 4.57 and 5.x alike, although the two match skip names differently."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import wordpiece_tokenizer
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from distill import DistillError
from distill.data.tasks import get_task
from distill.models.loading import label_config, save_model

pytest.importorskip("bitsandbytes")

from distill.quantize.bnb import bnb_config, load_bnb_classifier, quantize_bnb, quantized_linear_count  # noqa: E402

LAYERS = 2
ENCODER_LINEARS = 6 * LAYERS  # query, key, value, attention output, intermediate, output


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    tokenizer = wordpiece_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "good", "film"])
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=LAYERS, num_attention_heads=4, intermediate_size=37,
                        vocab_size=len(tokenizer), **label_config(get_task("sst2")))
    folder = tmp_path_factory.mktemp("tiny") / "model"
    save_model(BertForSequenceClassification(config).eval(), tokenizer, folder)
    return folder


@pytest.fixture
def eager_bitsandbytes():
    """bitsandbytes torch.compiles its 4-bit dequantization on CPU: slow to build, irrelevant here."""
    import torch._dynamo

    with torch._dynamo.config.patch(disable=True):
        yield


@pytest.mark.parametrize("bits", [8, 4])
def test_default_skip_modules_keep_the_pooler_and_classifier_unquantized(tiny_dir, bits, eager_bitsandbytes):
    model = quantize_bnb(tiny_dir, bnb_config(bits))
    assert type(model.bert.pooler.dense) is nn.Linear and type(model.classifier) is nn.Linear
    assert quantized_linear_count(model) == ENCODER_LINEARS


def test_skip_modules_are_saved_as_full_paths_and_reload_unquantized(tiny_dir, tmp_path, eager_bitsandbytes):
    save_model(quantize_bnb(tiny_dir, bnb_config(8)), wordpiece_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]"]), tmp_path / "bnb")
    saved = json.loads((tmp_path / "bnb" / "config.json").read_text())["quantization_config"]["llm_int8_skip_modules"]
    assert saved == ["bert.pooler.dense", "classifier"]
    reloaded = load_bnb_classifier(tmp_path / "bnb")
    assert type(reloaded.bert.pooler.dense) is nn.Linear and quantized_linear_count(reloaded) == ENCODER_LINEARS


def test_a_skip_module_that_names_no_linear_layer_is_an_error(tiny_dir):
    with pytest.raises(DistillError, match=r"^stages\[2\]\.skip_modules: 'head' names no Linear layer of BertForSequenceClassification$"):
        quantize_bnb(tiny_dir, bnb_config(8, skip_modules=["classifier", "head"]), skip_field="stages[2].skip_modules")

"""Quantization-aware training: the fake-quant layer's arithmetic, range calibration and tracking,
the QDQ export that ONNX Runtime runs in int8, the recipe schema, and one tiny run through the CLI
after prune, trim_vocab and factorize."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import wordpiece_tokenizer
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from distill.quantize.qat import (
    FakeQuantEmbedding,
    FakeQuantLinear,
    calibrate,
    export_qat_onnx,
    fake_quant_layers,
    insert_fake_quant,
    set_mode,
    table_qparams,
    weights_description,
)
from distill.quantize.skip_modules import skipped_linear_paths
from distill.recipe import validate_recipe


def layer(momentum=0.5, reduce_range=False):
    torch.manual_seed(0)
    return FakeQuantLinear(nn.Linear(8, 4), momentum=momentum, reduce_range=reduce_range)


def test_calibration_records_the_inputs_min_and_max_and_computes_the_plain_linear():
    fq = layer()
    x = torch.tensor([[-1.0, 2.0, 0.5, 0.0, 3.0, -0.5, 1.0, 0.2]])
    out = fq(x)
    assert torch.allclose(out, F.linear(x, fq.weight, fq.bias))
    assert fq.input_min.item() == -1.0 and fq.input_max.item() == 3.0


def test_weights_are_symmetric_int8_per_output_channel():
    fq = layer()
    q = fq.quantized_weight().detach()
    scale = fq.weight.detach().abs().amax(dim=1, keepdim=True) / 127
    steps = q / scale
    assert torch.allclose(steps, steps.round(), atol=1e-4) and steps.abs().max() <= 127 + 1e-4
    assert (q - fq.weight.detach()).abs().le(scale / 2 + 1e-7).all()


def test_reduce_range_keeps_weights_in_seven_bits():
    fq = layer(reduce_range=True)
    steps = fq.quantized_weight().detach() / (fq.weight.detach().abs().amax(dim=1, keepdim=True) / 63)
    assert steps.abs().max() <= 63 + 1e-4


def test_a_reduce_range_record_says_its_weights_use_seven_bits():
    assert "±63" in weights_description(True) and "reduce_range" in weights_description(True)
    assert "±127" in weights_description(False) and "reduce_range" not in weights_description(False)


def test_a_quantized_forward_is_the_linear_of_the_rounded_input_and_weight():
    fq = layer()
    fq(torch.tensor([[-1.0] * 4 + [3.0] * 4]))  # range [-1, 3]
    set_mode(fq, "frozen")
    x = torch.linspace(-1, 3, 8).reshape(1, 8)
    scale, zero = 4.0 / 255, round(1.0 / (4.0 / 255))
    x_q = (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale
    assert torch.allclose(fq(x), F.linear(x_q, fq.quantized_weight(), fq.bias), atol=1e-6)
    assert fq(torch.zeros(1, 8)).sub(F.linear(torch.zeros(1, 8), fq.quantized_weight(), fq.bias)).abs().max() < 1e-6  # 0 is exact


def test_ranges_follow_training_batches_as_a_moving_average_and_stay_in_eval_or_frozen():
    fq = layer(momentum=0.25)
    fq(torch.tensor([[-1.0] * 4 + [3.0] * 4]))
    set_mode(fq, "train")
    fq.train()
    fq(torch.tensor([[-5.0] * 4 + [7.0] * 4]))
    assert fq.input_min.item() == pytest.approx(-1 + 0.25 * (-5 + 1)) and fq.input_max.item() == pytest.approx(3 + 0.25 * 4)
    before = (fq.input_min.item(), fq.input_max.item())
    fq.eval()
    fq(torch.tensor([[-50.0] * 8]))
    set_mode(fq, "frozen")
    fq.train()
    fq(torch.tensor([[-50.0] * 8]))
    assert (fq.input_min.item(), fq.input_max.item()) == before


def test_gradients_pass_through_the_rounding_to_weights_and_inputs():
    fq = layer()
    fq(torch.randn(4, 8))
    set_mode(fq, "train")
    x = torch.randn(4, 8, requires_grad=True)
    fq(x).sum().backward()
    assert fq.weight.grad is not None and fq.weight.grad.abs().sum() > 0 and x.grad.abs().sum() > 0


# ---------------------------------------------------------------- models and export


@pytest.fixture
def tiny_bert():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                        max_position_embeddings=32, num_labels=2)
    return BertForSequenceClassification(config).eval()


def test_the_task_head_stays_fp32_by_default_and_every_encoder_linear_and_embedding_table_is_wrapped(tiny_bert):
    kept = skipped_linear_paths(tiny_bert, None)
    assert kept == ["bert.pooler.dense", "classifier"]
    wrapped = insert_fake_quant(tiny_bert, kept, momentum=0.01)
    assert len(wrapped) == 2 * 6 + 3 and not any(p in kept for p in wrapped)
    assert isinstance(tiny_bert.classifier, nn.Linear) and not isinstance(tiny_bert.classifier, FakeQuantLinear)
    assert isinstance(tiny_bert.bert.embeddings.word_embeddings, FakeQuantEmbedding)


def test_embedding_tables_can_stay_fp32(tiny_bert):
    wrapped = insert_fake_quant(tiny_bert, [], momentum=0.01, embeddings=False)
    assert not any(isinstance(m, FakeQuantEmbedding) for m in tiny_bert.modules()) and len(wrapped) == 2 * 6 + 2


def test_an_embedding_table_is_rounded_to_256_levels_of_one_uint8_range_that_holds_zero():
    torch.manual_seed(0)
    table = FakeQuantEmbedding(nn.Embedding(50, 8))
    with torch.no_grad():
        table.weight.uniform_(0.1, 2.0)  # a table whose values do not straddle zero
    rounded = table.quantized_weight().detach()
    scale, zero_point = table_qparams(table.weight)
    assert float(scale) == pytest.approx(float(table.weight.detach().max()) / 255) and int(zero_point) == 0  # the range is [0, max]
    levels = torch.round(rounded / scale) + zero_point
    assert torch.allclose(rounded, (levels - zero_point) * scale, atol=1e-6) and levels.min() >= 0 and levels.max() <= 255
    assert torch.equal(table(torch.tensor([3, 7])), rounded[[3, 7]])


def test_the_exported_qdq_graph_runs_its_matmuls_in_int8_and_gives_the_fake_quant_logits(tiny_bert, tmp_path):
    from distill.quantize.ort_session import load_onnx_classifier

    tokenizer = wordpiece_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(55)])
    insert_fake_quant(tiny_bert, skipped_linear_paths(tiny_bert, None), momentum=0.01)
    generator = torch.Generator().manual_seed(1)
    batches = [{"input_ids": torch.randint(5, 60, (4, 12), generator=generator), "attention_mask": torch.ones(4, 12, dtype=torch.long)}]
    calibrate(tiny_bert, batches)
    details = export_qat_onnx(tiny_bert, tokenizer, tmp_path / "qat", {"mode": "qat"})
    assert details["kernels"]["int8_matmuls"] == 12  # q, k, v, attention output, FFN in and out, x 2 layers
    with torch.no_grad():
        expected = tiny_bert(**batches[0]).logits
    got = load_onnx_classifier(tmp_path / "qat")(**batches[0]).logits
    assert np.allclose(got.numpy(), expected.numpy(), atol=2e-3)
    saved = json.loads((tmp_path / "qat" / "ort_config.json").read_text())
    assert saved["quantization"]["mode"] == "qat" and saved["quantization"]["kernels"]["int8_matmuls"] == 12


def test_the_exported_graph_stores_the_embedding_tables_and_encoder_weights_in_eight_bits(tiny_bert, tmp_path):
    import onnx

    tokenizer = wordpiece_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(55)])
    insert_fake_quant(tiny_bert, skipped_linear_paths(tiny_bert, None), momentum=0.01)
    calibrate(tiny_bert, [{"input_ids": torch.randint(5, 60, (4, 12)), "attention_mask": torch.ones(4, 12, dtype=torch.long)}])
    export_qat_onnx(tiny_bert, tokenizer, tmp_path / "qat", {"mode": "qat"})
    graph = onnx.load(str(tmp_path / "qat" / "model.onnx")).graph
    eight_bit = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    large = [(t.data_type in eight_bit, int(np.prod(t.dims))) for t in graph.initializer if np.prod(t.dims) >= 32 * 32]
    assert (True, 60 * 32) in large  # the word embeddings
    assert sum(not is_8bit for is_8bit, _ in large) == 1  # only the pooler's weight, kept fp32 with the head
    assert sum(node.op_type == "Gather" for node in graph.node if node.input[0].endswith("_quantized")) == 3


def test_reduce_range_exports_and_stores_every_encoder_weight_in_seven_bits(tiny_bert, tmp_path):
    import onnx
    from onnx import numpy_helper

    tokenizer = wordpiece_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(55)])
    insert_fake_quant(tiny_bert, skipped_linear_paths(tiny_bert, None), momentum=0.01, reduce_range=True)
    calibrate(tiny_bert, [{"input_ids": torch.randint(5, 60, (4, 12)), "attention_mask": torch.ones(4, 12, dtype=torch.long)}])
    export_qat_onnx(tiny_bert, tokenizer, tmp_path / "qat", {"mode": "qat"})
    graph = onnx.load(str(tmp_path / "qat" / "model.onnx")).graph
    int8_weights = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2]
    assert len(int8_weights) == 12 and max(int(np.abs(w.astype(np.int32)).max()) for w in int8_weights) == 63


def test_calibration_without_inputs_reaching_a_layer_is_an_error(tiny_bert):
    insert_fake_quant(tiny_bert, [], momentum=0.01)
    with pytest.raises(RuntimeError, match="saw no input"):
        calibrate(tiny_bert, [])
    assert fake_quant_layers(tiny_bert)


# ---------------------------------------------------------------- recipe


def test_qat_train_settings_default_to_a_short_run_at_a_small_rate_under_what_the_recipe_sets():
    recipe = validate_recipe({"name": "r", "task": "sst2", "stages": [{"kind": "teacher"}, {"kind": "qat", "train": {"batch_size": 8}}]})
    train = recipe.stages[1].train
    assert (train.epochs, train.learning_rate, train.batch_size) == (1.0, 2e-5, 8)


def test_cli_runs_qat_after_prune_trim_vocab_and_factorize(tmp_path, glue_data_dir):
    from distill.cli import main
    from distill.quantize.artifacts import describe_artifact, load_artifact

    # A tiny BERT over characters and a few words: SST-2 text tokenizes into many pieces, and
    # trim_vocab has something to drop (the pieces training text never uses).
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *[f"##{c}" for c in letters], "the", "film", "zzz", "qqq"]
    tokenizer = wordpiece_tokenizer(vocab)
    source = tmp_path / "tiny_bert"
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                             intermediate_size=48, max_position_embeddings=64)).save_pretrained(source)
    tokenizer.save_pretrained(source)
    small = {"max_steps": 2, "batch_size": 8, "eval_every": 1}
    recipe = {
        "name": "tiny_qat", "task": "sst2", "seed": 0, "mixed_precision": "no",
        "data": {"max_length": 48, "train_limit": 48, "eval_limit": 24, "holdout_size": 8},
        "model": {"model": str(source)},
        "stages": [
            {"kind": "teacher", "train": small},
            {"kind": "prune", "heads": {"share": 0.25}, "ffn": {"share": 0.5}},
            {"kind": "trim_vocab"},
            {"kind": "qat", "name": "qat_trimmed", "seeds": [1, 2], "train": small, "calibration_examples": 16},
            {"kind": "factorize", "input": "teacher", "linear": {"ratio": 0.5, "modules": ["ffn_in", "ffn_out"]}},
            {"kind": "qat", "name": "qat_factorized", "train": small, "calibration_examples": 16, "activation_ranges": "frozen"},
        ],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["run", str(path), f"output_dir={tmp_path / 'runs'}", "--data-dir", str(glue_data_dir)]) == 0
    run = tmp_path / "runs" / "tiny_qat"
    records = {r["stage"]: r for r in json.loads((run / "report.json").read_text())["stages"]}
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(run / "trimmed")) < len(vocab)  # QAT trained on remapped ids
    trimmed = records["qat_trimmed"]
    assert [s["seed"] for s in trimmed["seeds"]] == [1, 2] and trimmed["backend"] == "onnxruntime"
    assert trimmed["quantization"]["kernels"]["int8_matmuls"] > 0 and trimmed["quantization"]["activation_ranges"] == "ema"
    assert records["qat_factorized"]["quantization"]["kernels"]["int8_matmuls"] > 0
    for name in ("qat_trimmed", "qat_factorized"):
        assert describe_artifact(run / name).precision == "int8"
        model, _ = load_artifact(run / name)
        assert model(input_ids=torch.tensor([[2, 7, 3]]), attention_mask=torch.ones(1, 3, dtype=torch.long)).logits.shape == (1, 2)

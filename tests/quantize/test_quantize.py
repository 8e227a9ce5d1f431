"""Quantization backends: ONNX Runtime int8 (torch.onnx export + onnxruntime, no Optimum),
bitsandbytes 8/4-bit, fp16/bf16 casts; the stages that run them; and how close int8 stays to fp32
on real SST-2 sentences."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast, pipeline

from distill import DistillError
from distill.data.tasks import get_task
from distill.models.loading import count_parameters, label_config, save_model, weights_size_bytes
from distill.quantize.artifacts import describe_artifact, load_artifact, require_torch_artifact
from distill.quantize.bnb import bnb_config, load_bnb_classifier, parameter_count, quantize_bnb, quantized_linear_count
from distill.quantize.cast import cast_classifier
from distill.quantize.ort import build_onnx_classifier, detect_isa
from distill.quantize.ort_session import ONNX_FILE, load_onnx_classifier, optimized_op_counts
from distill.recipe import validate_recipe

WORDS = "a the film movie is was good great bad dull boring fun funny long short and but not very too it".split()
SENTENCES = ["a great fun film", "the movie was too long and dull", "not very good", "it is funny but too short"]


# ---------------------------------------------------------------- tiny models


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> BertTokenizerFast:
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return BertTokenizerFast.from_pretrained(vocab.parent)  # transformers 5 ignores vocab_file=


def tiny_bert(tokenizer, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                        vocab_size=len(tokenizer), **label_config(get_task("sst2")))
    return BertForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def tiny_dir(tokenizer, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "model"
    save_model(tiny_bert(tokenizer), tokenizer, folder)
    return folder


def encode(tokenizer, sentences=SENTENCES) -> dict:
    return dict(tokenizer(sentences, padding=True, return_tensors="pt"))


@torch.no_grad()
def logits_of(model, inputs) -> torch.Tensor:
    return torch.as_tensor(model(**inputs).logits).float()


# ---------------------------------------------------------------- ONNX Runtime


@pytest.mark.parametrize("flags, machine, expected", [
    ({"avx2", "avx512f", "avx512bw", "avx512_vnni"}, "x86_64", "avx512_vnni"),
    ({"avx2", "avx512f", "avx512bw"}, "x86_64", "avx512"),
    ({"avx", "avx2", "fma"}, "x86_64", "avx2"),
    (set(), "aarch64", "arm64"),
])
def test_isa_is_chosen_from_cpu_flags(flags, machine, expected):
    assert detect_isa(flags, machine) == expected


def test_onnx_fp32_export_matches_torch_on_padded_batches(tokenizer, tmp_path):
    model = tiny_bert(tokenizer)
    build_onnx_classifier(model, tokenizer, tmp_path / "ort", quantization="none")
    inputs = encode(tokenizer)
    torch.testing.assert_close(logits_of(load_onnx_classifier(tmp_path / "ort"), inputs), logits_of(model, inputs), atol=1e-5, rtol=1e-5)
    assert describe_artifact(tmp_path / "ort").label == "onnxruntime fp32"


def test_onnx_graph_takes_token_type_ids_so_pair_tasks_keep_their_segments(tokenizer, tmp_path):
    model = tiny_bert(tokenizer)
    build_onnx_classifier(model, tokenizer, tmp_path / "ort", quantization="none")
    pairs = dict(tokenizer(["a great film", "not very good"], ["it is fun", "the movie was long"], padding=True, return_tensors="pt"))
    assert pairs["token_type_ids"].any()
    ort_model = load_onnx_classifier(tmp_path / "ort")
    assert ort_model.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    torch.testing.assert_close(logits_of(ort_model, pairs), logits_of(model, pairs), atol=1e-5, rtol=1e-5)


def test_onnx_artifact_runs_in_a_plain_inference_session(tokenizer, tmp_path):
    import onnxruntime
    from transformers import AutoTokenizer

    model = tiny_bert(tokenizer)
    build_onnx_classifier(model, tokenizer, tmp_path / "int8")
    # The README's snippet: nothing of distill, only onnxruntime and the folder's tokenizer.
    session = onnxruntime.InferenceSession(str(tmp_path / "int8" / "model.onnx"), providers=["CPUExecutionProvider"])
    batch = AutoTokenizer.from_pretrained(tmp_path / "int8")(SENTENCES, padding=True, return_tensors="np")
    logits = session.run(["logits"], {i.name: batch[i.name] for i in session.get_inputs()})[0]
    assert logits.argmax(-1).tolist() == logits_of(load_onnx_classifier(tmp_path / "int8"), encode(tokenizer)).argmax(-1).tolist()


def test_onnx_artifact_loads_with_optimum_where_it_is_installed(tokenizer, tmp_path):
    optimum_ort = pytest.importorskip("optimum.onnxruntime", reason="optimum-onnx installs only beside transformers < 4.58")
    model = tiny_bert(tokenizer)
    build_onnx_classifier(model, tokenizer, tmp_path / "ort", quantization="none")
    reloaded = optimum_ort.ORTModelForSequenceClassification.from_pretrained(tmp_path / "ort")
    inputs = encode(tokenizer)
    torch.testing.assert_close(logits_of(reloaded, inputs), logits_of(model, inputs), atol=1e-5, rtol=1e-5)
    predictions = pipeline("text-classification", model=reloaded, tokenizer=tokenizer)(SENTENCES)
    assert [p["label"] for p in predictions] == [model.config.id2label[i] for i in logits_of(model, inputs).argmax(-1).tolist()]


@pytest.mark.parametrize("per_channel", [True, False])
def test_onnx_dynamic_int8_is_smaller_and_records_how_it_was_quantized(tokenizer, tmp_path, per_channel):
    model = tiny_bert(tokenizer)
    build_onnx_classifier(model, tokenizer, tmp_path / "fp32", quantization="none")
    details = build_onnx_classifier(model, tokenizer, tmp_path / "int8", quantization="dynamic", per_channel=per_channel, isa="avx2")

    assert details["isa"] == "avx2" and details["per_channel"] is per_channel
    # Tiny model: the unquantized position embeddings weigh as much as its layers (MiniLM: < 0.3, below).
    assert weights_size_bytes(tmp_path / "int8") < 0.75 * weights_size_bytes(tmp_path / "fp32")
    quantization = json.loads((tmp_path / "int8" / "ort_config.json").read_text())["quantization"]
    assert (quantization["mode"], quantization["per_channel"], quantization["weights_dtype"]) == ("dynamic", per_channel, "QUInt8")
    assert describe_artifact(tmp_path / "int8").label == "onnxruntime int8"


def integer_ops(folder: Path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node}


def test_onnx_static_int8_is_a_qdq_graph_calibrated_on_the_examples_it_is_given(tokenizer, tmp_path):
    import datasets

    calibration = datasets.Dataset.from_dict(dict(tokenizer(SENTENCES * 2, truncation=True)))
    details = build_onnx_classifier(tiny_bert(tokenizer), tokenizer, tmp_path / "static", quantization="static",
                                    calibration_dataset=calibration, per_channel=True, calibration_method="percentile")

    assert details["calibration_examples"] == 8 and details["calibration_method"] == "percentile"
    assert {"QuantizeLinear", "DequantizeLinear"} <= integer_ops(tmp_path / "static")
    assert json.loads((tmp_path / "static" / "ort_config.json").read_text())["quantization"]["format"] == "QDQ"
    assert [p.name for p in tmp_path.rglob("*") if p.suffix == ".onnx"] == ["model.onnx"]  # calibration graphs are gone
    assert logits_of(load_onnx_classifier(tmp_path / "static"), encode(tokenizer)).shape == (4, 2)


def test_static_int8_leaves_matmul_outputs_float_so_no_requantization_runs(tokenizer, tmp_path):
    import datasets

    calibration = datasets.Dataset.from_dict(dict(tokenizer(SENTENCES * 2, truncation=True)))
    model = tiny_bert(tokenizer)
    build_onnx_classifier(model, tokenizer, tmp_path / "static", quantization="static", calibration_dataset=calibration)
    # q, k, v, attention output, FFN in and out: each output feeds a float op. (Scores x values
    # feeds the next int8 matmul through Transpose/Reshape, so it stays a QLinearMatMul.)
    assert optimized_op_counts(tmp_path / "static" / ONNX_FILE)["MatMulIntegerToFloat"] >= 6 * model.config.num_hidden_layers
    inputs = encode(tokenizer)
    torch.testing.assert_close(logits_of(load_onnx_classifier(tmp_path / "static"), inputs), logits_of(model, inputs), atol=0.05, rtol=0)


def test_int8_artifacts_record_that_their_matmuls_run_in_int8_kernels(tokenizer, tmp_path):
    import datasets

    calibration = datasets.Dataset.from_dict(dict(tokenizer(SENTENCES * 2, truncation=True)))
    dynamic = build_onnx_classifier(tiny_bert(tokenizer), tokenizer, tmp_path / "dynamic")
    static = build_onnx_classifier(tiny_bert(tokenizer), tokenizer, tmp_path / "static", quantization="static",
                                   calibration_dataset=calibration)
    layers = tiny_bert(tokenizer).config.num_hidden_layers
    assert dynamic["kernels"]["int8_matmuls"] >= 6 * layers  # q, k, v, attention output, FFN in / out
    assert static["kernels"]["int8_matmuls"] >= 6 * layers


def test_our_sessions_leave_onnx_runtimes_skip_layernorm_fusion_off(tokenizer, tmp_path):
    import onnx
    import onnxruntime

    from distill.quantize.ort_session import ONNX_FILE, onnx_session, ort_session_options

    build_onnx_classifier(tiny_bert(tokenizer), tokenizer, tmp_path / "int8")

    def ops_run(open_session) -> list[str]:
        options = ort_session_options(1)
        options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        open_session(options)
        return [node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node]

    path = tmp_path / "int8" / ONNX_FILE
    assert "SkipLayerNormalization" in ops_run(lambda o: onnxruntime.InferenceSession(str(path), o, providers=["CPUExecutionProvider"]))
    assert "SkipLayerNormalization" not in ops_run(lambda o: onnx_session(path, options=o))


def test_layers_kept_fp32_and_the_op_types_quantized_are_the_recipes(tokenizer, tmp_path):
    from distill.quantize.ort import onnx_nodes_of_modules

    model = tiny_bert(tokenizer)
    last = f"bert.encoder.layer.{model.config.num_hidden_layers - 1}.output.dense"
    everything = build_onnx_classifier(model, tokenizer, tmp_path / "all")
    kept = build_onnx_classifier(model, tokenizer, tmp_path / "kept", keep_fp32=[last, "classifier"], op_types=["MatMul"])
    assert kept["kept_fp32"] == [last, "classifier"] and kept["op_types"] == ["MatMul"]
    assert kept["kernels"]["int8_matmuls"] == everything["kernels"]["int8_matmuls"] - 1  # the last FFN out matmul
    assert kept["kernels"]["float_matmuls"] > everything["kernels"]["float_matmuls"]
    with pytest.raises(DistillError, match="keep_fp32: module 'bert.nothing' has no node in the exported graph"):
        onnx_nodes_of_modules(tmp_path / "all" / "model.onnx", ["bert.nothing"])


@pytest.mark.parametrize("quantization", ["dynamic", "static"])
def test_fp32_attention_matmuls_leave_two_float_matmuls_per_layer_and_the_weights_int8(tokenizer, tmp_path, quantization):
    import datasets

    calibration = datasets.Dataset.from_dict(dict(tokenizer(SENTENCES * 2, truncation=True)))
    model = tiny_bert(tokenizer)
    layers = model.config.num_hidden_layers
    built = {matmuls: build_onnx_classifier(model, tokenizer, tmp_path / matmuls, quantization=quantization,
                                            calibration_dataset=calibration, attention_matmuls=matmuls)
             for matmuls in ("int8", "fp32")}
    assert built["int8"]["kernels"]["float_matmuls"] == 0 and built["fp32"]["kernels"]["float_matmuls"] == 2 * layers
    assert built["fp32"]["kernels"]["int8_matmuls"] == built["int8"]["kernels"]["int8_matmuls"] - 2 * layers
    assert built["fp32"]["attention_matmuls"] == "fp32"
    inputs = encode(tokenizer)
    torch.testing.assert_close(logits_of(load_onnx_classifier(tmp_path / "fp32"), inputs), logits_of(model, inputs), atol=0.05, rtol=0)


def test_onnx_level_2_fuses_attention_and_matches_torch(tokenizer, tmp_path):
    model = tiny_bert(tokenizer)
    details = build_onnx_classifier(model, tokenizer, tmp_path / "o2", quantization="none", optimization_level=2)
    assert details["fused_operators"]["Attention"] == 2 and details["fused_operators"]["SkipLayerNormalization"] >= 2
    assert "Attention" in integer_ops(tmp_path / "o2")
    inputs = encode(tokenizer)
    torch.testing.assert_close(logits_of(load_onnx_classifier(tmp_path / "o2"), inputs), logits_of(model, inputs), atol=1e-4, rtol=1e-4)


def test_onnx_level_2_dynamic_int8_quantizes_the_fused_attention(tokenizer, tmp_path):
    model = tiny_bert(tokenizer)
    build_onnx_classifier(model, tokenizer, tmp_path / "o2int8", quantization="dynamic", optimization_level=2)
    assert "QAttention" in integer_ops(tmp_path / "o2int8")
    inputs = encode(tokenizer)
    torch.testing.assert_close(logits_of(load_onnx_classifier(tmp_path / "o2int8"), inputs), logits_of(model, inputs), atol=0.05, rtol=0)


def test_head_pruned_model_keeps_attention_unfused_at_level_2_and_matches_torch(tokenizer, tmp_path):
    from distill.pruning import prune_heads

    model = prune_heads(tiny_bert(tokenizer), {0: [1], 1: [0, 3]})  # 3 and 2 heads: not the config's 4
    details = build_onnx_classifier(model, tokenizer, tmp_path / "o2", quantization="none", optimization_level=2)
    assert "Attention" not in details["fused_operators"]
    inputs = encode(tokenizer)
    torch.testing.assert_close(logits_of(load_onnx_classifier(tmp_path / "o2"), inputs), logits_of(model, inputs), atol=1e-4, rtol=1e-4)


def test_pruned_model_with_an_empty_layer_exports_and_matches_torch(tokenizer, tmp_path):
    from distill.pruning import loads_natively, prune_ffn, prune_heads
    from distill.quantize.artifacts import load_torch_classifier

    model = prune_heads(tiny_bert(tokenizer), {0: [0, 1, 2, 3], 1: [2]})  # layer 0 keeps no head
    model = prune_ffn(model, [list(range(20)), list(range(30))])  # per-layer FFN sizes
    save_model(model, tokenizer, tmp_path / "pruned")
    assert not loads_natively(model)
    build_onnx_classifier(load_torch_classifier(tmp_path / "pruned"), tokenizer, tmp_path / "ort", quantization="none")
    inputs = encode(tokenizer)
    torch.testing.assert_close(logits_of(load_onnx_classifier(tmp_path / "ort"), inputs), logits_of(model, inputs), atol=1e-4, rtol=1e-4)


def test_factorized_model_exports_to_int8_and_stays_close_to_torch(tokenizer, tmp_path):
    from distill.lowrank import RankRule, factorize_model
    from distill.quantize.artifacts import load_torch_classifier, loads_with_from_pretrained

    model = tiny_bert(tokenizer)
    assert factorize_model(model, modules=["ffn_in", "ffn_out"], linear_rule=RankRule(rank=4)).ranks
    save_model(model, tokenizer, tmp_path / "factorized")
    assert not loads_with_from_pretrained(tmp_path / "factorized")  # so a bnb stage refuses it
    build_onnx_classifier(load_torch_classifier(tmp_path / "factorized"), tokenizer, tmp_path / "int8")
    inputs = encode(tokenizer)
    torch.testing.assert_close(logits_of(load_onnx_classifier(tmp_path / "int8"), inputs), logits_of(model, inputs), atol=0.05, rtol=0)


@pytest.mark.parametrize("level, quantization, message", [
    (99, "dynamic", "99 bakes hardware-specific ops in"),
    (2, "static", "static int8 calibrates the unfused graph"),
])
def test_optimization_levels_the_int8_quantizer_cannot_read_are_refused(tokenizer, tmp_path, level, quantization, message):
    with pytest.raises(DistillError, match=f"optimization_level: {message}"):
        build_onnx_classifier(tiny_bert(tokenizer), tokenizer, tmp_path / "x", quantization=quantization, optimization_level=level)
    assert not (tmp_path / "x").exists()  # refused before any export


def test_onnx_export_prints_no_library_chatter(tokenizer, tmp_path, capfd):
    import datasets

    calibration = datasets.Dataset.from_dict(dict(tokenizer(SENTENCES, truncation=True)))
    build_onnx_classifier(tiny_bert(tokenizer), tokenizer, tmp_path / "static", quantization="static", calibration_dataset=calibration)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


# ---------------------------------------------------------------- bitsandbytes


@pytest.fixture
def eager_bitsandbytes():
    """bitsandbytes torch.compiles its 4-bit dequantization on CPU (one inductor build per weight
    shape: tens of seconds on a cold compile cache). These tests check results, not speed."""
    import torch._dynamo

    with torch._dynamo.config.patch(disable=True):
        yield


@pytest.mark.parametrize("bits, quant_type", [(8, None), (4, "nf4"), (4, "fp4")])
def test_bnb_model_saved_before_inference_reloads_with_the_same_predictions(tiny_dir, tmp_path, bits, quant_type, eager_bitsandbytes):
    config = bnb_config(bits, quant_type=quant_type or "nf4")
    model = quantize_bnb(tiny_dir, config)
    save_model(model, BertTokenizerFast.from_pretrained(tiny_dir), tmp_path / "bnb")
    inputs = encode(BertTokenizerFast.from_pretrained(tiny_dir))
    in_memory = logits_of(model, inputs)
    reloaded = load_bnb_classifier(tmp_path / "bnb")

    torch.testing.assert_close(logits_of(reloaded, inputs), in_memory, atol=0, rtol=0)
    assert quantized_linear_count(reloaded) == 2 * 6  # q, k, v, attention out, FFN in and out per layer
    assert type(reloaded.classifier) is torch.nn.Linear and type(reloaded.bert.pooler.dense) is torch.nn.Linear
    expected = "int8" if bits == 8 else quant_type
    assert describe_artifact(tmp_path / "bnb").label == f"bitsandbytes {expected}"


def test_bnb_4bit_layers_never_repack_weights_for_cpu_inference(tiny_dir, eager_bitsandbytes):
    import bitsandbytes as bnb

    model = quantize_bnb(tiny_dir, bnb_config(4))
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and not any(layer.support_avx512bf16_for_cpu for layer in layers)


def test_bnb_4bit_counts_parameters_before_packing(tiny_dir, tokenizer, eager_bitsandbytes):
    assert parameter_count(quantize_bnb(tiny_dir, bnb_config(4))) == count_parameters(tiny_bert(tokenizer))


@pytest.mark.parametrize("kwargs, field", [
    ({"bits": 3}, "bits"), ({"bits": 4, "quant_type": "int4"}, "quant_type"), ({"bits": 4, "compute_dtype": "fp8"}, "compute_dtype"),
])
def test_bad_bnb_settings_name_their_field(kwargs, field):
    with pytest.raises(DistillError, match=f"^{field}:"):
        bnb_config(**kwargs)


# ---------------------------------------------------------------- casts and loading any artifact


@pytest.mark.parametrize("dtype, torch_dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_cast_saves_half_the_bytes_and_reloads_in_its_dtype(tokenizer, tiny_dir, tmp_path, dtype, torch_dtype):
    model = cast_classifier(tiny_bert(tokenizer), dtype)
    save_model(model, tokenizer, tmp_path / dtype)
    reloaded, kind = load_artifact(tmp_path / dtype)

    assert kind.label == f"torch {dtype}" and next(reloaded.parameters()).dtype == torch_dtype
    assert weights_size_bytes(tmp_path / dtype) < 0.55 * weights_size_bytes(tiny_dir)
    inputs = encode(tokenizer)
    torch.testing.assert_close(logits_of(reloaded, inputs), logits_of(model, inputs), atol=0, rtol=0)


def test_quantizing_an_already_quantized_artifact_is_refused(tokenizer, tmp_path):
    build_onnx_classifier(tiny_bert(tokenizer), tokenizer, tmp_path / "int8")
    with pytest.raises(DistillError, match=r"stages\[2\]\.input: needs a torch model.*onnxruntime int8 artifact"):
        require_torch_artifact(tmp_path / "int8", "stages[2].input")


# ---------------------------------------------------------------- the recipe stages


def recipe_with(stage: dict, name: str = "q") -> dict:
    return {"name": name, "task": "sst2", "stages": [{"kind": "teacher"}, {**stage}]}


@pytest.mark.parametrize("stage, message", [
    ({"kind": "onnx", "optimization_level": 99}, r"stages\[1\]\.optimization_level: 99 bakes hardware-specific ops in"),
    ({"kind": "onnx", "quantization": "static", "optimization_level": 2}, r"stages\[1\]\.optimization_level: static int8 calibrates"),
    ({"kind": "onnx", "optimization_level": 3}, r"stages\[1\]\.optimization_level: Input should be 0, 1, 2 or 99"),
    ({"kind": "onnx", "quantization": "int4"}, r"stages\[1\]\.quantization: Input should be 'none', 'dynamic' or 'static'"),
    ({"kind": "onnx", "isa": "sse4"}, r"stages\[1\]\.isa: Input should be 'auto'"),
    ({"kind": "onnx", "attention_matmuls": "int4"}, r"stages\[1\]\.attention_matmuls: Input should be 'int8' or 'fp32'"),
    ({"kind": "onnx", "calibration_examples": 0}, r"stages\[1\]\.calibration_examples: Input should be greater than 0"),
    ({"kind": "onnx", "max_metric_drop": -0.1}, r"stages\[1\]\.max_metric_drop: Input should be greater than or equal to 0"),
    ({"kind": "bnb", "bits": 2}, r"stages\[1\]\.bits: Input should be 4 or 8"),
    ({"kind": "bnb", "bits": 8, "quant_type": "nf4"}, r"stages\[1\]\.quant_type: only applies to bits: 4"),
    ({"kind": "bnb", "bits": 8, "double_quant": False}, r"stages\[1\]\.double_quant: only applies to bits: 4"),
    ({"kind": "cast"}, r"stages\[1\]\.dtype: required field is missing"),
    ({"kind": "cast", "dtype": "int8"}, r"stages\[1\]\.dtype: Input should be 'fp16' or 'bf16'"),
    ({"kind": "onnx", "input": "nowhere"}, r"stages\[1\]\.input: no earlier stage named 'nowhere'"),
    ({"kind": "cast", "dtype": "fp16", "bits": 4}, r"stages\[1\]\.bits: unknown key"),
])
def test_bad_quantization_stage_specs_fail_naming_the_field(stage, message):
    with pytest.raises(DistillError, match=message):
        validate_recipe(recipe_with(stage))


def test_quantization_stages_get_default_names():
    recipe = validate_recipe({"name": "q", "task": "sst2", "stages": [
        {"kind": "teacher"}, {"kind": "onnx"}, {"kind": "bnb", "input": "teacher"}, {"kind": "cast", "dtype": "fp16", "input": "teacher"}]})
    assert [s.name for s in recipe.stages] == ["teacher", "onnx", "bnb", "cast"]


def stub_context(tmp_path: Path, tokenizer, tiny_dir: Path, stage: dict, evaluated: float, input_metric: float):
    """A run context whose input stage scored `input_metric` and whose evaluation returns
    `evaluated`: what the metric-drop check sees, without training or data."""
    from accelerate import Accelerator

    source = tmp_path / "runs" / "q" / "teacher"
    save_model(BertForSequenceClassification.from_pretrained(tiny_dir), tokenizer, source)
    (source / "metrics.json").write_text(json.dumps({"stage": "teacher", "metric": "accuracy", "metric_value": input_metric,
                                                     "metrics": {"accuracy": input_metric}}))
    recipe = validate_recipe({**recipe_with(stage), "output_dir": str(tmp_path / "runs")})
    return SimpleNamespace(recipe=recipe, task=get_task("sst2"), tokenizer=tokenizer, accelerator=Accelerator(cpu=True),
                           evaluate=lambda model, dataset=None, tokenizer=None: {"accuracy": evaluated},
                           input_dir=lambda s: source), recipe.stages[1]


def test_metric_drop_beyond_the_threshold_fails_after_writing_the_evaluated_artifact(tmp_path, tokenizer, tiny_dir):
    from distill.stages.quantize import run_cast_stage

    ctx, stage = stub_context(tmp_path, tokenizer, tiny_dir, {"kind": "cast", "dtype": "fp16", "max_metric_drop": 0.01},
                              evaluated=0.80, input_metric=0.85)
    out = tmp_path / "runs" / "q" / "cast"
    with pytest.raises(DistillError, match=r"stages\[1\]\.max_metric_drop \(cast\): accuracy fell from 0\.8500 \('teacher'\) to 0\.8000"):
        run_cast_stage(ctx, stage, out, "hash123")
    record = json.loads((out / "metrics.json").read_text())
    assert record["metric_drop"] == pytest.approx(0.05) and "failed_check" in record
    assert "stage_hash" not in record  # so the next run recomputes and re-checks it
    assert describe_artifact(out).label == "torch fp16"


def test_metric_drop_within_the_threshold_commits_the_stage(tmp_path, tokenizer, tiny_dir):
    from distill.stages.quantize import run_cast_stage

    ctx, stage = stub_context(tmp_path, tokenizer, tiny_dir, {"kind": "cast", "dtype": "bf16", "max_metric_drop": 0.01},
                              evaluated=0.845, input_metric=0.85)
    record = run_cast_stage(ctx, stage, tmp_path / "runs" / "q" / "cast", "hash123")
    assert record["stage_hash"] == "hash123" and record["input"] == "teacher"
    assert (record["backend"], record["precision"], record["quantization"]) == ("torch", "bf16", {"dtype": "bf16"})


# ---------------------------------------------------------------- the real MiniLM on real SST-2


def _sst2(path: Path, count: int) -> tuple[list[str], np.ndarray]:
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:count]
    return [r["sentence"] for r in rows], np.array([int(r["label"]) for r in rows])


@pytest.fixture(scope="module")
def minilm_sst2(minilm_dir, glue_data_dir, tmp_path_factory):
    """The packaged MiniLM with a linear head fitted on 256 SST-2 training sentences (frozen encoder,
    logistic regression on the pooled output: seconds, and margins an int8 model can be judged on),
    saved as a torch folder, plus its ONNX Runtime dynamic int8 export and 100 real dev sentences."""
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_dir, **label_config(get_task("sst2"))).eval()
    train, labels = _sst2(glue_data_dir / "sst2" / "train.tsv", 256)
    with torch.no_grad():
        pooled = model.bert(**tok(train, padding=True, truncation=True, max_length=64, return_tensors="pt")).pooler_output
    head = LogisticRegression(C=10.0, max_iter=2000).fit(pooled.numpy(), labels)
    with torch.no_grad():
        w, b = torch.tensor(head.coef_[0], dtype=torch.float32) / 2, float(head.intercept_[0]) / 2
        model.classifier.weight.copy_(torch.stack([-w, w]))
        model.classifier.bias.copy_(torch.tensor([-b, b]))
    root = tmp_path_factory.mktemp("minilm")
    save_model(model, tok, root / "torch")
    build_onnx_classifier(model, tok, root / "int8", quantization="dynamic", per_channel=True)
    dev, dev_labels = _sst2(glue_data_dir / "sst2" / "dev.tsv", 100)
    inputs = dict(tok(dev, padding=True, truncation=True, max_length=64, return_tensors="pt"))
    return SimpleNamespace(root=root, model=model, tokenizer=tok, inputs=inputs, sentences=dev, labels=dev_labels,
                           fp32=logits_of(model, inputs).argmax(-1).numpy())


# The head's margins are small by construction, so a few sentences flip: measured 0.93+ with int8
# weights (VNNI machines) and 0.91 / 0.92 with the uint8 weights `isa: auto` builds on AVX2-only CPUs.
# A broken int8 path (the saturation collapse of NNCF #1498) agrees on about half.
INT8_AGREEMENT = 0.9


@pytest.mark.integration
def test_ort_int8_agrees_with_fp32_on_real_dev_sentences(minilm_sst2):
    int8 = logits_of(load_onnx_classifier(minilm_sst2.root / "int8"), minilm_sst2.inputs).argmax(-1).numpy()
    assert (int8 == minilm_sst2.fp32).mean() >= INT8_AGREEMENT
    assert weights_size_bytes(minilm_sst2.root / "int8") < 0.3 * weights_size_bytes(minilm_sst2.root / "torch")


@pytest.mark.integration
def test_ort_int8_minilm_fuses_attention_at_level_2_and_keeps_its_predictions(minilm_sst2, tmp_path):
    details = build_onnx_classifier(minilm_sst2.model, minilm_sst2.tokenizer, tmp_path / "o2int8", optimization_level=2)
    assert (details["fused_operators"]["Attention"], details["fused_operators"]["EmbedLayerNormalization"]) == (6, 1)
    fused = logits_of(load_onnx_classifier(tmp_path / "o2int8"), minilm_sst2.inputs).argmax(-1).numpy()
    assert (fused == minilm_sst2.fp32).mean() >= INT8_AGREEMENT


@pytest.mark.integration
@pytest.mark.parametrize("bits, threshold", [(8, 0.97), (4, 0.8)])  # nf4 is lossier: 0.85 seen with this head
def test_bnb_minilm_agrees_with_fp32_on_real_dev_sentences(minilm_sst2, bits, threshold, eager_bitsandbytes):
    model = quantize_bnb(minilm_sst2.root / "torch", bnb_config(bits))
    predictions = logits_of(model, minilm_sst2.inputs).argmax(-1).numpy()
    assert (predictions == minilm_sst2.fp32).mean() >= threshold


@pytest.mark.integration
def test_eval_command_scores_an_onnx_artifact_as_it_scores_the_torch_one(minilm_sst2, glue_data_dir, capsys):
    from distill.cli import main

    scores = {}
    for folder in ("torch", "int8"):
        assert main(["eval", str(minilm_sst2.root / folder), "--task", "sst2", "--data-dir", str(glue_data_dir),
                     "--limit", "300", "--max-length", "64"]) == 0
        scores[folder] = json.loads(capsys.readouterr().out)
    assert [scores[f]["backend"] for f in ("torch", "int8")] == ["torch", "onnxruntime"]
    assert scores["torch"]["accuracy"] > 0.6  # a head fitted on 256 sentences: well above chance
    assert scores["int8"]["accuracy"] == pytest.approx(scores["torch"]["accuracy"], abs=0.03)


def test_a_recipe_whose_onnx_stage_lacks_onnxruntime_stops_before_any_stage(monkeypatch, tmp_path):
    import importlib.util

    from distill.stages.pipeline import Pipeline

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a))
    recipe = validate_recipe({**recipe_with({"kind": "onnx", "name": "int8"}), "output_dir": str(tmp_path)})
    with pytest.raises(DistillError, match=r"stages\[1\] \(int8\): needs onnxruntime, which is not installed: pip install 'distill\[onnx\]'"):
        Pipeline(recipe).run()
    assert not (tmp_path / "q").exists()  # nothing ran

"""Low-rank compression: LoRA merges into the weights it adapts, truncated SVD factorization keeps
what it should (and reloads and exports exactly), vocabulary trimming leaves in-vocabulary
outputs unchanged, bad specs fail naming the field, and the stages run in a real recipe."""

from __future__ import annotations

import importlib.util
import json
import warnings

import pytest
import torch
from helpers import load_script, wordpiece_tokenizer
from torch import nn
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
)

from distill import DistillError
from distill.lowrank import (
    FactorizedEmbedding,
    FactorizedLinear,
    RankRule,
    add_lora,
    choose_rank,
    factorize_linear,
    factorize_model,
    linear_flops_per_token,
    load_factorized,
    merge_lora,
    target_linears,
    token_counts,
    tokens_to_keep,
    trim_vocabulary,
)
from distill.lowrank.svd import singular_values
from distill.lowrank.vocab import InputIdMap, token_id_map
from distill.recipe import LoraSettings, validate_recipe

HIDDEN, HEADS, LAYERS, FFN, VOCAB = 32, 4, 2, 37, 99
WORDS = ["the", "movie", "film", "was", "good", "bad", "great", "act", "##ed", "##ing", "!", ".", ","]
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *LETTERS, *("##" + c for c in LETTERS), *WORDS]


def tiny_bert(seed: int = 0, vocab_size: int = VOCAB) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=FFN, vocab_size=vocab_size)
    return BertForSequenceClassification(config).eval()


def padded_inputs(seed: int = 1, vocab_size: int = VOCAB) -> dict:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, vocab_size, (3, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, 6:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def assert_close(a, b, atol):
    torch.testing.assert_close(a, b, atol=atol, rtol=0)


# ---------------------------------------------------------------- LoRA


def _randomize_adapters(model) -> None:
    """LoRA's B starts at zero (the adapter starts as a no-op): give it values, as training would."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name or "modules_to_save" in name:
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))


def test_lora_trains_only_adapters_of_query_and_value_and_the_head():
    model = add_lora(tiny_bert(), LoraSettings(rank=4))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "classifier.modules_to_save" in n for n in trainable)
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable if "lora_" in n}
    assert adapted == {"query", "value"}
    assert any("classifier.modules_to_save" in n for n in trainable)


def test_merged_lora_model_gives_the_adapter_model_outputs():
    inputs = padded_inputs()
    model = add_lora(tiny_bert(), LoraSettings(rank=4, dropout=0.0)).eval()
    _randomize_adapters(model)
    with_adapters = logits(model, inputs)
    assert not torch.allclose(with_adapters, logits(tiny_bert(), inputs), atol=1e-3)  # the adapters do something
    merged = merge_lora(model)
    assert type(merged) is BertForSequenceClassification
    assert all(p.requires_grad for p in merged.parameters())
    assert_close(logits(merged.eval(), inputs), with_adapters, atol=1e-5)


def test_saved_adapter_reloads_onto_the_base_model(tmp_path):
    from peft import PeftModel

    inputs = padded_inputs()
    model = add_lora(tiny_bert(), LoraSettings(rank=4, dropout=0.0)).eval()
    _randomize_adapters(model)
    with_adapters = logits(model, inputs)
    merge_lora(model, adapter_dir=tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    reloaded = PeftModel.from_pretrained(tiny_bert(), tmp_path / "adapter").eval()
    assert_close(logits(reloaded, inputs), with_adapters, atol=1e-6)


def test_lora_defaults_for_distilbert_adapt_q_and_v_and_train_its_two_layer_head():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    model = DistilBertForSequenceClassification(DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=37, vocab_size=99))
    trainable = [n for n, p in add_lora(model, LoraSettings(rank=2)).named_parameters() if p.requires_grad]
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable if "lora_" in n} == {"q_lin", "v_lin"}
    assert any("pre_classifier.modules_to_save" in n for n in trainable)


def test_lora_target_modules_that_match_nothing_name_the_field():
    with pytest.raises(DistillError, match=r"^stages\[0\]\.lora\.target_modules: "):
        add_lora(tiny_bert(), LoraSettings(target_modules=["q_proj"]), field="stages[0].lora")


# ---------------------------------------------------------------- SVD and rank choice


def _matrix_with_singular_values(values: list[float], rows: int = 6, cols: int = 5) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(rows, len(values), generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, len(values), generator=generator, dtype=torch.float64))
    return (u * torch.tensor(values, dtype=torch.float64)) @ v.T


def test_full_rank_svd_reproduces_the_layer():
    torch.manual_seed(0)
    linear = nn.Linear(32, 37)
    factorized = factorize_linear(linear, rank=32)
    x = torch.randn(5, 32)
    assert_close(factorized.weight @ factorized.down.weight, linear.weight.detach(), atol=1e-5)
    assert_close(factorized(x).detach(), linear(x).detach(), atol=1e-5)


def test_truncated_svd_error_is_the_dropped_singular_values():
    """Eckart–Young: the rank-2 approximation of diag(4, 3, 2, 1) misses sqrt(2² + 1²) in Frobenius norm."""
    linear = nn.Linear(5, 6, bias=False)
    with torch.no_grad():
        linear.weight.copy_(_matrix_with_singular_values([4.0, 3.0, 2.0, 1.0]))
    factorized = factorize_linear(linear, rank=2)
    error = torch.linalg.matrix_norm(factorized.weight @ factorized.down.weight - linear.weight).item()
    assert error == pytest.approx(5**0.5, abs=1e-5)


@pytest.mark.parametrize(
    "energy, rank",
    # squared singular values 16, 9, 4, 1 (sum 30): cumulative shares .533, .833, .967, 1
    [(0.5, 1), (16 / 30, 1), (0.8, 2), (25 / 30, 2), (0.9, 3), (0.99, 4), (1.0, 4)],
)
def test_energy_threshold_keeps_the_smallest_rank_holding_that_share(energy, rank):
    values = singular_values(_matrix_with_singular_values([4.0, 3.0, 2.0, 1.0]))
    assert choose_rank(values, energy=energy) == rank


def test_fixed_rank_and_ratio_rules():
    values = torch.tensor([4.0, 3.0, 2.0, 1.0])
    assert choose_rank(values, rank=3) == 3
    assert choose_rank(values, rank=9) == 4  # capped at full rank
    assert choose_rank(values, ratio=0.5) == 2
    assert choose_rank(values, ratio=0.3) == 2  # rounded up


# ---------------------------------------------------------------- factorizing a model


def test_factorize_model_replaces_the_chosen_layers_and_records_their_ranks():
    model = tiny_bert()
    result = factorize_model(model, modules=["ffn_in", "ffn_out"], linear_rule=RankRule(rank=8), embedding_rule=RankRule(rank=6))
    expected = {f"bert.encoder.layer.{i}.{m}": 8 for i in range(LAYERS) for m in ("intermediate.dense", "output.dense")}
    expected["bert.embeddings.word_embeddings"] = 6
    assert result.ranks == expected
    assert model.config.distill_factorization == {"format": 1, "ranks": expected}
    assert isinstance(model.bert.encoder.layer[1].output.dense, FactorizedLinear)
    assert isinstance(model.bert.embeddings.word_embeddings, FactorizedEmbedding)
    assert type(model.bert.encoder.layer[1].attention.self.query) is nn.Linear


def test_layers_whose_rank_would_not_save_parameters_stay_dense():
    model = tiny_bert()
    result = factorize_model(model, modules=["query"], linear_rule=RankRule(energy=1.0))  # full rank 32 of 32 x 32
    assert result.ranks == {} and set(result.kept_dense.values()) == {32}
    assert not hasattr(model.config, "distill_factorization")
    assert all(type(m) is nn.Linear for m in target_linears(model, ["query"]).values())


def test_flops_and_parameters_follow_the_shapes():
    model = tiny_bert()
    dense = 2 * LAYERS * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN)  # q, k, v, o + FFN in and out, per block
    assert linear_flops_per_token(model) == dense
    params = sum(p.numel() for p in model.parameters())
    factorize_model(model, modules=["ffn_in", "ffn_out"], linear_rule=RankRule(rank=8))
    assert linear_flops_per_token(model) == dense - LAYERS * 2 * (2 * HIDDEN * FFN - 2 * 8 * (HIDDEN + FFN))
    assert sum(p.numel() for p in model.parameters()) == params - LAYERS * 2 * (HIDDEN * FFN - 8 * (HIDDEN + FFN))


def test_factorized_model_reloads_exactly_through_our_loader(tmp_path):
    inputs = padded_inputs()
    model = tiny_bert()
    factorize_model(model, modules=["query", "key", "value", "attention_output", "ffn_in", "ffn_out"],
                    linear_rule=RankRule(energy=0.6), embedding_rule=RankRule(ratio=0.25))
    expected = logits(model, inputs)
    model.save_pretrained(tmp_path / "f", safe_serialization=True)
    reloaded = load_factorized(tmp_path / "f")
    assert_close(logits(reloaded, inputs), expected, atol=1e-6)
    assert reloaded.config.distill_factorization == model.config.distill_factorization


def test_load_task_model_hands_factorized_folders_to_our_loader(tmp_path):
    from distill.data.tasks import get_task
    from distill.quantize.artifacts import load_task_model

    inputs = padded_inputs()
    model = tiny_bert()
    factorize_model(model, modules=["ffn_in"], linear_rule=RankRule(rank=4))
    model.save_pretrained(tmp_path / "f", safe_serialization=True)
    assert_close(logits(load_task_model(str(tmp_path / "f"), get_task("sst2")), inputs), logits(model, inputs), atol=1e-6)


def test_plain_from_pretrained_refuses_a_factorized_folder_instead_of_loading_random_weights(tmp_path):
    model = tiny_bert()
    factorize_model(model, modules=["value"], linear_rule=RankRule(rank=4))
    model.save_pretrained(tmp_path / "f", safe_serialization=True)
    with pytest.raises(RuntimeError, match="size mismatch|ignore_mismatched_sizes"):  # 4.57's words | 5.x's
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "f")


def test_pruned_then_factorized_model_reloads_exactly(tmp_path):
    from distill.pruning import prune_ffn, prune_heads

    inputs = padded_inputs()
    model = prune_ffn(prune_heads(tiny_bert(), {0: [1], 1: [0, 1, 2, 3]}), [list(range(20)), list(range(30))])
    factorize_model(model, modules=["query", "ffn_in", "ffn_out"], linear_rule=RankRule(rank=4))
    expected = logits(model, inputs)
    model.save_pretrained(tmp_path / "pf", safe_serialization=True)
    assert_close(logits(load_factorized(tmp_path / "pf"), inputs), expected, atol=1e-6)


def test_factorized_model_exports_to_onnx_and_runs_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = tiny_bert()
    factorize_model(model, modules=["query", "value", "ffn_in", "ffn_out"], linear_rule=RankRule(rank=6), embedding_rule=RankRule(rank=8))
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (), str(tmp_path / "m.onnx"), kwargs=padded_inputs(), input_names=list(axes),
                          output_names=["logits"], dynamic_axes=axes, dynamo=False)
    other = {k: v[:2, :5] for k, v in padded_inputs(seed=5).items()}  # another batch size and length
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    onnx_logits = session.run(None, {k: v.numpy() for k, v in other.items()})[0]
    assert_close(torch.from_numpy(onnx_logits), logits(model, other), atol=1e-5)


def test_distilbert_layers_are_found_by_their_own_names():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    model = DistilBertForSequenceClassification(DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=37, vocab_size=99))
    names = sorted(target_linears(model, ["attention_output", "ffn_out"]))
    assert names == [f"distilbert.transformer.layer.{i}.{m}" for i in range(2) for m in ("attention.out_lin", "ffn.lin2")]


# ---------------------------------------------------------------- vocabulary trimming


@pytest.fixture()
def tiny_tokenizer() -> BertTokenizerFast:
    return wordpiece_tokenizer(TINY_VOCAB)


TASK_TEXTS = ["the movie was good !", "The film was bad", "nice"]  # "nice" is spelled out: n ##i ##c ##e


def _trimmed(tokenizer, model, **options):
    counts = token_counts(tokenizer(TASK_TEXTS)["input_ids"], len(tokenizer))
    keep = tokens_to_keep(tokenizer, counts, **options)
    return trim_vocabulary(model, tokenizer, keep)


def test_trimmed_vocabulary_keeps_used_special_and_character_tokens(tiny_tokenizer):
    model, trimmed = _trimmed(tiny_tokenizer, tiny_bert(vocab_size=len(TINY_VOCAB)))
    words = {"the", "movie", "was", "good", "!", "film", "bad", "n", "##i", "##c", "##e"}
    specials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    alphabet = set("themoviswagdflbnc!")
    expected = words | specials | alphabet | {"##" + c for c in alphabet}
    assert set(trimmed.get_vocab()) == expected & set(TINY_VOCAB)
    assert model.config.vocab_size == len(trimmed) == model.get_input_embeddings().num_embeddings


def test_trimmed_model_gives_the_same_outputs_on_in_vocabulary_text(tiny_tokenizer):
    original = tiny_bert(vocab_size=len(TINY_VOCAB))
    text = ["the film was good", "bad movie !"]
    before = logits(original, tiny_tokenizer(text, padding=True, return_tensors="pt"))
    model, trimmed = _trimmed(tiny_tokenizer, original)
    encoded = trimmed(text, padding=True, return_tensors="pt")
    assert trimmed.convert_ids_to_tokens(encoded["input_ids"][0]) == tiny_tokenizer.convert_ids_to_tokens(tiny_tokenizer(text[0])["input_ids"])
    assert_close(logits(model, encoded), before, atol=1e-6)


def test_words_outside_the_trimmed_vocabulary_split_into_kept_pieces_or_unk(tiny_tokenizer):
    _, trimmed = _trimmed(tiny_tokenizer, tiny_bert(vocab_size=len(TINY_VOCAB)))
    assert tiny_tokenizer.tokenize("acted") == ["act", "##ed"]
    assert trimmed.tokenize("acted") == ["a", "##c", "##t", "##e", "##d"]  # "act", "##ed" are gone; letters stay
    assert trimmed.tokenize("the zoo") == ["the", "[UNK]"]  # z never occurs in the task's data


def test_max_tokens_keeps_only_the_most_frequent(tiny_tokenizer):
    _, trimmed = _trimmed(tiny_tokenizer, tiny_bert(vocab_size=len(TINY_VOCAB)), max_tokens=2, characters=False)
    assert set(trimmed.get_vocab()) == {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "was"}


def test_trimmed_folder_loads_with_from_pretrained_and_pipeline(tiny_tokenizer, tmp_path):
    from transformers import pipeline

    original = tiny_bert(vocab_size=len(TINY_VOCAB))
    expected = logits(original, tiny_tokenizer(["the movie was bad"], return_tensors="pt"))
    model, trimmed = _trimmed(tiny_tokenizer, original)
    model.save_pretrained(tmp_path / "t", safe_serialization=True)
    trimmed.save_pretrained(tmp_path / "t")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "t")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "t").eval()
    assert_close(logits(reloaded, tokenizer(["the movie was bad"], return_tensors="pt")), expected, atol=1e-6)
    scores = pipeline("text-classification", model=str(tmp_path / "t"), device="cpu")("the movie was bad", top_k=None)
    assert {d["label"]: d["score"] for d in scores} == pytest.approx({"LABEL_0": expected.softmax(-1)[0, 0].item(),
                                                                     "LABEL_1": expected.softmax(-1)[0, 1].item()}, abs=1e-6)


def test_factorized_embeddings_can_be_trimmed_and_still_reload(tiny_tokenizer, tmp_path):
    model = tiny_bert(vocab_size=len(TINY_VOCAB))
    factorize_model(model, embedding_rule=RankRule(rank=8))
    text = ["the film was good"]
    before = logits(model, tiny_tokenizer(text, return_tensors="pt"))
    model, trimmed = _trimmed(tiny_tokenizer, model)
    model.save_pretrained(tmp_path / "ft", safe_serialization=True)
    assert_close(logits(load_factorized(tmp_path / "ft"), trimmed(text, return_tensors="pt")), before, atol=1e-6)


def test_input_id_map_feeds_a_trimmed_model_the_original_ids(tiny_tokenizer):
    original = tiny_bert(vocab_size=len(TINY_VOCAB))
    encoded = tiny_tokenizer(["the movie was good !"], return_tensors="pt")
    before = logits(original, encoded)
    model, trimmed = _trimmed(tiny_tokenizer, original)
    assert_close(logits(InputIdMap(model, token_id_map(tiny_tokenizer, trimmed)), encoded), before, atol=1e-6)


# ---------------------------------------------------------------- bad specs


def _recipe_with(stage: dict) -> dict:
    return {"name": "t", "task": "sst2", "stages": [{"kind": "teacher", "skip_training": True}, stage]}


@pytest.mark.parametrize(
    "stage, message",
    [
        ({"kind": "factorize", "linear": {"rank": 0}}, "stages[1].linear.rank: Input should be greater than 0"),
        ({"kind": "factorize", "linear": {"energy": 0}}, "stages[1].linear.energy: must be in (0, 1]"),
        ({"kind": "factorize", "linear": {"energy": 1.2}}, "stages[1].linear.energy: must be in (0, 1]"),
        ({"kind": "factorize", "embeddings": {"ratio": 1.5}}, "stages[1].embeddings.ratio: must be in (0, 1]"),
        ({"kind": "factorize", "linear": {"energy": 0.9, "modules": ["ffn"]}}, "stages[1].linear.modules[0]: Input should be 'query'"),
        ({"kind": "factorize", "linear": {"energy": 0.9, "rank": 4}}, "stages[1].linear: give exactly one of energy, rank or ratio"),
        ({"kind": "factorize", "linear": {}}, "stages[1].linear: give exactly one of energy, rank or ratio"),
        ({"kind": "factorize"}, "stages[1]: give linear and/or embeddings"),
        ({"kind": "trim_vocab", "max_tokens": 0}, "stages[1].max_tokens: Input should be greater than 0"),
        ({"kind": "distill", "lora": {"rank": 0}}, "stages[1].lora.rank: Input should be greater than 0"),
        ({"kind": "distill", "lora": {"target_modules": []}}, "stages[1].lora.target_modules: must be a non-empty list"),
        ({"kind": "teacher", "name": "t2", "skip_training": True, "lora": {}}, "stages[1].lora: needs training"),
    ],
)
def test_bad_lowrank_specs_name_the_field(stage, message):
    with pytest.raises(DistillError) as err:
        validate_recipe(_recipe_with(stage))
    assert message in str(err.value)


def test_factorize_functions_reject_bad_ranks_and_module_names():
    with pytest.raises(DistillError, match=r"rank: must be in 1\.\.32"):
        factorize_linear(nn.Linear(32, 37), rank=0)
    with pytest.raises(DistillError, match=r"energy: must be in \(0, 1\]"):
        choose_rank(torch.tensor([2.0, 1.0]), energy=0.0)
    with pytest.raises(DistillError, match=r"modules: unknown module\(s\) \['ffn'\]"):
        target_linears(tiny_bert(), ["ffn"])


# ---------------------------------------------------------------- the stages in a real recipe


@pytest.mark.integration
def test_lora_trim_vocab_and_factorize_run_in_a_recipe_on_minilm_and_sst2(tmp_path, glue_data_dir, minilm_dir):
    import yaml
    from transformers import pipeline

    from distill.cli import main

    train = {"max_steps": 2, "batch_size": 4, "eval_batch_size": 16, "learning_rate": 1e-3}
    recipe = {
        "name": "lowrank",
        "task": "sst2",
        "mixed_precision": "no",
        "data": {"dir": str(glue_data_dir), "max_length": 32, "train_limit": 32, "eval_limit": 16},
        "model": {"model": minilm_dir},
        "stages": [
            {"kind": "teacher", "train": train, "lora": {"rank": 4, "keep_adapter": True}},
            {"kind": "trim_vocab"},
            {
                "kind": "factorize",
                "linear": {"modules": ["ffn_in", "ffn_out"], "energy": 0.5},
                "embeddings": {"rank": 64},
                "recovery": {"train": {**train, "max_steps": 1}, "distill": True},
            },
            {"kind": "onnx", "name": "int8"},
        ],
    }
    path = tmp_path / "lowrank.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["run", str(path), "--output-dir", str(tmp_path / "runs")]) == 0

    run = tmp_path / "runs" / "lowrank"
    teacher, trimmed, factorized, int8 = json.loads((run / "report.json").read_text())["stages"]
    assert teacher["lora"]["target_modules"] == ["query", "value"] and (run / "teacher" / "adapter" / "adapter_config.json").is_file()
    assert teacher["lora"]["trainable_params"] < teacher["params"] / 50
    assert trimmed["vocab_before"] == 30522 and 100 < trimmed["vocab_after"] < 5000
    # Text made of kept words scores as before trimming (dev text may not: its vocabulary is not kept).
    kept = sorted(t for t in AutoTokenizer.from_pretrained(run / "trimmed").get_vocab() if t.isalpha() and len(t) > 3)[:12]
    in_vocabulary = [" ".join(kept[:6]), " ".join(kept[6:])]
    before = pipeline("text-classification", model=str(run / "teacher"), device="cpu")(in_vocabulary)
    after = pipeline("text-classification", model=str(run / "trimmed"), device="cpu")(in_vocabulary)
    assert [d["label"] for d in after] == [d["label"] for d in before]
    assert [d["score"] for d in after] == pytest.approx([d["score"] for d in before], abs=1e-5)
    assert trimmed["params_after"] == trimmed["params_before"] - 384 * (30522 - trimmed["vocab_after"])
    assert factorized["teacher"] == "teacher" and factorized["train_steps"] == 1
    assert len(factorized["ranks"]) == 13 and factorized["ranks"]["bert.embeddings.word_embeddings"] == 64
    assert factorized["params_after"] < factorized["params_before"] and 0 < factorized["flops_reduction"] < 1

    sentences = ["a gripping, beautifully acted film", "dull and far too long"]
    native = pipeline("text-classification", model=str(run / "trimmed"), device="cpu")(sentences)
    assert [d["label"] for d in native] and len(AutoTokenizer.from_pretrained(run / "trimmed")) == trimmed["vocab_after"]
    ours = pipeline("text-classification", model=load_factorized(run / "factorized"), tokenizer=str(run / "factorized"), device="cpu")
    assert len(ours(sentences)) == 2

    # The int8 export carries the trimmed tokenizer, and is scored on text tokenized that way.
    assert AutoTokenizer.from_pretrained(run / "int8").get_vocab() == AutoTokenizer.from_pretrained(run / "trimmed").get_vocab()
    assert abs(int8["metric_value"] - factorized["metric_value"]) <= 2 / 16
    from distill.quantize.ort_session import load_onnx_classifier

    int8_model = load_onnx_classifier(run / "int8")
    int8_logits = int8_model(**AutoTokenizer.from_pretrained(run / "int8")(sentences, padding=True, return_tensors="np")).logits
    assert [int8_model.config.id2label[i] for i in int8_logits.argmax(-1).tolist()] == [d["label"] for d in ours(sentences)]
    if importlib.util.find_spec("optimum") is not None:  # optimum-onnx: the legacy stack only
        from optimum.onnxruntime import ORTModelForSequenceClassification

        ort = pipeline("text-classification", model=ORTModelForSequenceClassification.from_pretrained(run / "int8"),
                       tokenizer=str(run / "int8"), device="cpu")
        assert [d["label"] for d in ort(sentences)] == [d["label"] for d in ours(sentences)]


@pytest.mark.integration
def test_pruning_after_trim_vocab_is_refused_naming_the_stage(tmp_path, glue_data_dir, minilm_dir, capsys):
    import yaml

    from distill.cli import main

    recipe = {
        "name": "order", "task": "sst2", "mixed_precision": "no",
        "data": {"dir": str(glue_data_dir), "max_length": 32, "train_limit": 32, "eval_limit": 16},
        "model": {"model": minilm_dir},
        "stages": [{"kind": "teacher", "skip_training": True}, {"kind": "trim_vocab"},
                   {"kind": "prune", "heads": {"share": 0.25}}],
    }
    path = tmp_path / "order.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["run", str(path), "--output-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "stages[2].input" in err and "trimmed vocabulary" in err


@pytest.mark.integration
def test_factorization_curve_script_writes_one_timed_record_per_point(tmp_path, glue_data_dir, minilm_classifier_dir):
    out = tmp_path / "curve.json"
    args = ["--model", str(minilm_classifier_dir), "--task", "sst2", "--out", str(out), "--data-dir", str(glue_data_dir),
            "--work-dir", str(tmp_path / "work"), "--energies", "1.0", "0.5", "--embedding-ranks", "64", "--no-recovery",
            "--train-limit", "64", "--eval-limit", "32", "--max-length", "32",
            "--latency-batch-sizes", "1", "4", "--warmup", "1", "--repeats", "2", "--threads", "1"]
    assert load_script("bench_lowrank").main(args) == 0
    records = json.loads(out.read_text())
    assert [(r["curve"], r["energy"], r["rank"]) for r in records] == [("linear", 1.0, None), ("linear", 0.5, None), ("embeddings", None, 64)]
    assert records[1]["params"] < records[0]["params"] and records[2]["params"] < records[0]["params"]
    assert all(r["latency_ms_bs1"] > 0 and r["latency_ms_bs4"] > 0 and r["recovery"] is False for r in records)


def test_trimmed_vocabulary_is_counted_on_training_text_only():
    # The reported split must be scored as unseen text is: a token only dev uses is not kept for it.
    from types import SimpleNamespace

    from datasets import Dataset

    from distill.stages.lowrank import _task_token_ids

    train, holdout, dev = (Dataset.from_dict({"input_ids": ids}) for ids in ([[101, 7, 102]], [[101, 8, 102]], [[101, 9, 102]]))
    ctx = SimpleNamespace(data=SimpleNamespace(train=train, selection=holdout, validation=dev))
    assert sorted({i for ids in _task_token_ids(ctx) for i in ids}) == [7, 8, 101, 102]

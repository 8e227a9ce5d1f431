"""General (task-agnostic) distillation: corpus blocks, dynamic masking, the vocabulary KL, the
student built from an MLM teacher, fixed-mask perplexity, and one tiny end-to-end run."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import wordpiece_tokenizer
from transformers import AutoModelForMaskedLM, BertConfig, BertForMaskedLM, BertModel

from distill import DistillError
from distill.data.corpus import HEADING, load_corpus, pack_blocks
from distill.data.masking import fixed_mask_batches, mlm_collator
from distill.models.mlm import load_mlm_model
from distill.models.student import copy_layers_student
from distill.recipe import validate_recipe
from distill.recipe.general import CorpusConfig, GeneralLossConfig
from distill.training.losses import hidden_cosine
from distill.training.mlm import (
    general_distillation_step,
    kl_positions,
    masked_perplexity,
    mlm_loss,
    representation_loss,
    vocab_kl,
)

# A few KB of each real corpus: WikiText-2 (CRLF line ends, ` = Heading = ` lines) and Shakespeare.
SNIPPETS = {"wiki.test.raw": ("wikitext2/wiki.test.raw", 12_000), "shakespeare.txt": ("tinyshakespeare/input.txt", 6_000)}


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory, glue_data_dir):
    folder = tmp_path_factory.mktemp("corpus")
    for name, (source, size) in SNIPPETS.items():
        data = (glue_data_dir / source).read_bytes()[:size]
        (folder / name).write_bytes(data[: data.rfind(b"\n") + 1])  # whole lines only
    return folder


@pytest.fixture(scope="module")
def tokenizer(corpus_dir):
    """A small uncased WordPiece vocabulary trained offline on the snippets."""
    from tokenizers import BertWordPieceTokenizer

    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train([str(p) for p in sorted(corpus_dir.iterdir())], vocab_size=400, min_frequency=1, show_progress=False)
    vocab = wordpiece.get_vocab()  # rebuilt from its vocabulary: training adds no [CLS] ... [SEP] template
    return wordpiece_tokenizer(sorted(vocab, key=vocab.get))


def tiny_config(tokenizer, layers=4, **overrides) -> BertConfig:
    return BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                      intermediate_size=37, max_position_embeddings=64, **overrides)


@pytest.fixture
def mlm_teacher(tokenizer):
    torch.manual_seed(0)
    # Wider than BERT's 0.02 init: peaked logits, so teacher and student distributions differ by more
    # than float rounding and the KL terms compared below are far from zero.
    return BertForMaskedLM(tiny_config(tokenizer, initializer_range=0.2)).eval()


def corpus_config(corpus_dir, **overrides) -> CorpusConfig:
    files = [str(corpus_dir / name) for name in SNIPPETS]
    return CorpusConfig(**{"files": files, "block_size": 32, "holdout_blocks": 8, **overrides})


def random_blocks(tokenizer, n_blocks: int, block_size: int, seed: int = 0) -> list[list[int]]:
    special = set(tokenizer.all_special_ids)
    ordinary = torch.tensor([i for i in range(len(tokenizer)) if i not in special])
    generator = torch.Generator().manual_seed(seed)
    picks = ordinary[torch.randint(len(ordinary), (n_blocks, block_size - 2), generator=generator)]
    return [[tokenizer.cls_token_id, *row.tolist(), tokenizer.sep_token_id] for row in picks]


# ---------------------------------------------------------------- corpus blocks


def test_blocks_have_the_block_size_and_start_and_end_with_special_tokens(corpus_dir, tokenizer):
    corpus = load_corpus(corpus_config(corpus_dir), tokenizer, seed=0, field="stages[0].corpus", search_dirs=[])
    for block in list(corpus.train["input_ids"]) + list(corpus.holdout["input_ids"]):
        assert len(block) == 32
        assert block[0] == tokenizer.cls_token_id and block[-1] == tokenizer.sep_token_id
        assert tokenizer.cls_token_id not in block[1:-1] and tokenizer.sep_token_id not in block[1:-1]


def test_blocks_are_the_token_stream_cut_in_order_with_the_tail_dropped(tokenizer):
    token_lists = [[5, 6, 7], [8], [9, 10, 11, 12, 13], [14, 15]]
    blocks = pack_blocks(token_lists, block_size=6, tokenizer=tokenizer)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    # 11 tokens make two blocks of 4 (+ [CLS], [SEP]); the last 3 tokens are dropped.
    assert blocks == [[cls, 5, 6, 7, 8, sep], [cls, 9, 10, 11, 12, sep]]


def test_blocks_take_the_special_tokens_of_the_tokenizers_template():
    """Not only BERT's [CLS] ... [SEP]: what the tokenizer itself adds around one sequence."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3, "a": 4, "b": 5, "c": 6}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="<s> <s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    assert pack_blocks([[4, 5], [6, 4, 5]], block_size=5, tokenizer=tokenizer) == [[1, 1, 4, 5, 2], [1, 1, 6, 4, 2]]


def test_holdout_has_the_asked_size_and_no_block_of_train(corpus_dir, tokenizer):
    corpus = load_corpus(corpus_config(corpus_dir), tokenizer, seed=0, field="c", search_dirs=[])
    assert len(corpus.holdout) == 8
    assert corpus.stats["train_blocks"] == len(corpus.train) > 8
    train = {tuple(b) for b in corpus.train["input_ids"]}
    assert not any(tuple(b) in train for b in corpus.holdout["input_ids"])


def test_crlf_lines_and_wikitext_headings_do_not_reach_the_blocks(corpus_dir, tokenizer):
    raw = (corpus_dir / "wiki.test.raw").read_bytes()
    assert b"\r\n" in raw and HEADING.match(" = Robert Boulter = ") and HEADING.match(" = = Career = = ")
    assert not HEADING.match(" In 2000 Boulter had a guest role . ")
    cfg = corpus_config(corpus_dir, files=[str(corpus_dir / "wiki.test.raw")])
    blocks = load_corpus(cfg, tokenizer, seed=0, field="c", search_dirs=[]).train["input_ids"]
    text = " ".join(tokenizer.decode(b) for b in blocks)
    assert "boulter" in text and "\r" not in text
    assert "= = career = =" not in text
    kept = load_corpus(cfg.model_copy(update={"drop_headings": False}), tokenizer, seed=0, field="c", search_dirs=[])
    assert "= = career = =" in " ".join(tokenizer.decode(b) for b in kept.train["input_ids"])


def test_relative_corpus_files_are_found_in_the_search_folders(corpus_dir, tokenizer, tmp_path):
    cfg = corpus_config(corpus_dir, files=["wiki.test.raw"])
    assert len(load_corpus(cfg, tokenizer, seed=0, field="c", search_dirs=[tmp_path, corpus_dir]).holdout) == 8
    with pytest.raises(DistillError, match=r"stages\[0\]\.corpus\.files\[0\]: text file 'wiki.test.raw' not found"):
        load_corpus(cfg, tokenizer, seed=0, field="stages[0].corpus", search_dirs=[tmp_path])


def test_a_corpus_too_small_for_its_holdout_is_an_error(corpus_dir, tokenizer):
    with pytest.raises(DistillError, match=r"c\.holdout_blocks: 100000 leaves no training blocks"):
        load_corpus(corpus_config(corpus_dir, holdout_blocks=100_000), tokenizer, seed=0, field="c", search_dirs=[])


def test_an_unreachable_hub_corpus_is_one_error_naming_the_field(tokenizer, monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    # Offline as on this machine, without waiting for network timeouts (both read the env at import).
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cfg = CorpusConfig(hub="Salesforce/wikitext", hub_config="wikitext-2-raw-v1")
    with pytest.raises(DistillError, match=r"stages\[1\]\.corpus\.hub: cannot load dataset 'Salesforce/wikitext'"):
        load_corpus(cfg, tokenizer, seed=0, field="stages[1].corpus", search_dirs=[])


# ---------------------------------------------------------------- masking


def test_masking_selects_15_percent_and_splits_them_80_10_10(tokenizer):
    blocks = random_blocks(tokenizer, n_blocks=500, block_size=64)
    batch = mlm_collator(tokenizer, 0.15, seed=7)([{"input_ids": b} for b in blocks])
    original = torch.tensor(blocks)
    selected = batch["labels"] != -100
    ordinary = original.clone().apply_(lambda i: i not in tokenizer.all_special_ids).bool()
    n = int(selected.sum())
    assert not selected[~ordinary].any()  # [CLS] and [SEP] are never selected
    assert abs(n / int(ordinary.sum()) - 0.15) < 0.01  # ~31,000 tokens: 0.01 is ~5 standard deviations
    assert torch.equal(batch["labels"][selected], original[selected])
    new = batch["input_ids"][selected]
    as_mask = (new == tokenizer.mask_token_id).sum().item() / n
    kept = (new == original[selected]).sum().item() / n
    assert abs(as_mask - 0.8) < 0.03
    assert abs(kept - 0.1) < 0.025  # kept, or replaced by chance with itself (1/400)
    assert abs(1 - as_mask - kept - 0.1) < 0.025  # a random other token
    assert torch.equal(batch["input_ids"][~selected], original[~selected])


def test_training_masks_change_from_one_batch_to_the_next(tokenizer):
    collate = mlm_collator(tokenizer)
    blocks = [{"input_ids": b} for b in random_blocks(tokenizer, 8, 32)]
    assert not torch.equal(collate(blocks)["labels"], collate(blocks)["labels"])


# ---------------------------------------------------------------- loss


def hand_kl(student, teacher, positions, temperature) -> float:
    """KL(softmax(t/T) || softmax(s/T)) * T^2 averaged over the selected positions, by loops."""
    values = []
    for b in range(len(student)):
        for i in range(len(student[b])):
            if positions[b][i]:
                p_t = [math.exp(x / temperature) for x in teacher[b][i]]
                p_s = [math.exp(x / temperature) for x in student[b][i]]
                p_t = [x / sum(p_t) for x in p_t]
                p_s = [x / sum(p_s) for x in p_s]
                values.append(sum(t * math.log(t / s) for t, s in zip(p_t, p_s)) * temperature**2)
    return sum(values) / len(values)


@pytest.fixture
def logits_and_labels():
    torch.manual_seed(3)
    student, teacher = torch.randn(2, 4, 6) * 2, torch.randn(2, 4, 6) * 2
    labels = torch.tensor([[-100, 3, -100, -100], [1, -100, -100, 5]])
    attention_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    return student, teacher, labels, attention_mask


def test_vocabulary_kl_over_masked_positions_matches_a_hand_computation(logits_and_labels):
    student, teacher, labels, attention_mask = logits_and_labels
    positions = kl_positions(labels, attention_mask, "masked")
    assert positions.tolist() == (labels != -100).tolist()
    expected = hand_kl(student.tolist(), teacher.tolist(), positions.tolist(), 2.0)
    assert vocab_kl(student[positions], teacher[positions], 2.0).item() == pytest.approx(expected, rel=1e-5)


def test_vocabulary_kl_over_all_real_tokens_matches_a_hand_computation(logits_and_labels):
    student, teacher, labels, attention_mask = logits_and_labels
    positions = kl_positions(labels, attention_mask, "all")
    assert positions.tolist() == (attention_mask > 0).tolist()  # every real token, padding excluded
    expected = hand_kl(student.tolist(), teacher.tolist(), positions.tolist(), 3.0)
    assert vocab_kl(student[positions], teacher[positions], 3.0).item() == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(hand_kl(student.tolist(), teacher.tolist(), (labels != -100).tolist(), 3.0))


def test_mlm_term_is_cross_entropy_over_masked_tokens_only(logits_and_labels):
    student, _, labels, _ = logits_and_labels
    log_probs = F.log_softmax(student, dim=-1)
    expected = -(log_probs[0, 1, 3] + log_probs[1, 0, 1] + log_probs[1, 3, 5]) / 3
    assert mlm_loss(student, labels).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("which", ["all", "masked"])
def test_step_is_the_weighted_sum_of_vocabulary_kl_mlm_and_hidden_cosine(mlm_teacher, tokenizer, which):
    """The step computes logits only where its terms read them; it must equal the same terms on
    the models' full outputs."""
    student = copy_layers_student(mlm_teacher, [0, 2]).eval()  # eval: no dropout, so both passes agree
    batch = mlm_collator(tokenizer, seed=1)([{"input_ids": b} for b in random_blocks(tokenizer, 4, 16)])
    inputs, labels = {k: v for k, v in batch.items() if k != "labels"}, batch["labels"]
    cfg = GeneralLossConfig(kl_positions=which)  # DistilBERT: 5 ce + 2 mlm + 1 cos, T = 2
    total, values = general_distillation_step(mlm_teacher, cfg, representation_loss(cfg, student, mlm_teacher))(student, batch)
    s = student(**inputs, output_hidden_states=True)
    t = mlm_teacher(**inputs, output_hidden_states=True)
    positions = kl_positions(labels, inputs["attention_mask"], which)
    ce = vocab_kl(s.logits[positions], t.logits[positions], 2.0).item()
    mlm = mlm_loss(s.logits, labels).item()
    cos = hidden_cosine(s.hidden_states[-1], t.hidden_states[-1], inputs["attention_mask"]).item()
    assert ce > 1e-3  # a real divergence, not rounding noise
    assert (values["ce"], values["mlm"], values["cos"]) == pytest.approx((ce, mlm, cos), rel=1e-4)
    assert total.item() == pytest.approx(5 * ce + 2 * mlm + cos, rel=1e-4)
    total.backward()
    assert student.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in mlm_teacher.parameters())


# ---------------------------------------------------------------- student and teacher


def test_general_student_copies_the_teacher_layers_embeddings_and_mlm_head(mlm_teacher):
    student = copy_layers_student(mlm_teacher, [1, 3])
    assert type(student) is BertForMaskedLM and student.config.num_hidden_layers == 2
    for student_index, teacher_index in enumerate([1, 3]):
        s_state = student.bert.encoder.layer[student_index].state_dict()
        t_state = mlm_teacher.bert.encoder.layer[teacher_index].state_dict()
        assert all(torch.equal(s_state[k], t_state[k]) for k in t_state)
    for name in ("bert.embeddings", "cls.predictions"):
        s_state, t_state = student.get_submodule(name).state_dict(), mlm_teacher.get_submodule(name).state_dict()
        assert s_state.keys() == t_state.keys() and all(torch.equal(s_state[k], t_state[k]) for k in t_state), name
    # The decoder stays tied to the student's own word embeddings.
    assert student.cls.predictions.decoder.weight is student.bert.embeddings.word_embeddings.weight


def test_a_checkpoint_without_mlm_head_is_refused_as_teacher_and_gets_a_tied_head_otherwise(tokenizer, tmp_path):
    BertModel(tiny_config(tokenizer)).save_pretrained(tmp_path / "encoder")
    with pytest.raises(DistillError, match=r"stages\[1\]\.teacher: .* has no trained MLM head \(cls\.predictions"):
        load_mlm_model(str(tmp_path / "encoder"), require_head=True, field="stages[1].teacher")
    model, has_head = load_mlm_model(str(tmp_path / "encoder"), require_head=False)
    assert not has_head and model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    BertForMaskedLM(tiny_config(tokenizer)).save_pretrained(tmp_path / "masked_lm")
    assert load_mlm_model(str(tmp_path / "masked_lm"), require_head=True)[1]


# ---------------------------------------------------------------- perplexity


def test_fixed_mask_perplexity_is_deterministic_and_independent_of_batch_size(mlm_teacher, tokenizer):
    blocks = {"input_ids": random_blocks(tokenizer, 12, 24)}
    first = fixed_mask_batches(blocks, tokenizer, mlm_probability=0.15, seed=5, batch_size=4)
    again = fixed_mask_batches(blocks, tokenizer, mlm_probability=0.15, seed=5, batch_size=5)
    assert torch.equal(torch.cat([b["labels"] for b in first]), torch.cat([b["labels"] for b in again]))
    assert masked_perplexity(mlm_teacher, first) == masked_perplexity(mlm_teacher, first)
    assert masked_perplexity(mlm_teacher, first)["perplexity"] == pytest.approx(
        masked_perplexity(mlm_teacher, again)["perplexity"], rel=1e-5)
    other = fixed_mask_batches(blocks, tokenizer, mlm_probability=0.15, seed=6, batch_size=4)
    assert not torch.equal(torch.cat([b["labels"] for b in first]), torch.cat([b["labels"] for b in other]))


def test_perplexity_is_exp_of_mean_masked_cross_entropy(mlm_teacher, tokenizer):
    batches = fixed_mask_batches({"input_ids": random_blocks(tokenizer, 6, 16)}, tokenizer,
                                 mlm_probability=0.15, seed=2, batch_size=6)
    with torch.no_grad():
        logits = mlm_teacher(**{k: v for k, v in batches[0].items() if k != "labels"}).logits
    measured = masked_perplexity(mlm_teacher, batches)
    assert measured["perplexity"] == pytest.approx(math.exp(mlm_loss(logits, batches[0]["labels"]).item()), rel=1e-5)


# ---------------------------------------------------------------- recipe


def test_corpus_needs_files_or_a_hub_dataset():
    recipe = {"name": "t", "task": "sst2", "stages": [{"kind": "mlm_head", "corpus": {"block_size": 64}}]}
    with pytest.raises(DistillError, match=r"stages\[0\]\.corpus: give files and/or hub"):
        validate_recipe(recipe)


def test_general_student_cannot_come_from_another_checkpoint():
    stage = {"kind": "general_distill", "corpus": {"files": ["a.txt"]}, "student": {"from_pretrained": "x"}}
    with pytest.raises(DistillError, match=r"stages\[0\]\.student\.from_pretrained"):
        validate_recipe({"name": "t", "task": "sst2", "stages": [stage]})


def test_a_train_block_keeps_the_corpus_defaults_it_does_not_set():
    stage = {"kind": "general_distill", "corpus": {"files": ["a.txt"]}, "train": {"max_steps": 10}}
    train = validate_recipe({"name": "t", "task": "sst2", "stages": [stage]}).stages[0].train
    # The held-out blocks report the perplexity: they do not also pick the checkpoint by default.
    assert (train.max_steps, train.keep_best, train.group_by_length, train.learning_rate) == (10, False, False, 1e-4)


def test_teacher_stage_input_must_name_an_earlier_stage():
    stages = [{"kind": "teacher", "input": "general_student"}, {"kind": "general_distill", "corpus": {"files": ["a"]}}]
    with pytest.raises(DistillError, match=r"stages\[0\]\.input: no earlier stage named 'general_student'"):
        validate_recipe({"name": "t", "task": "sst2", "stages": stages})


# ---------------------------------------------------------------- end to end


def test_cli_runs_mlm_head_general_distillation_and_task_fine_tuning(tmp_path, corpus_dir, tokenizer, glue_data_dir):
    """A headless tiny BERT: its MLM head is trained (body frozen), a 2-layer general student is
    distilled from it, and the student is fine-tuned on a slice of SST-2."""
    from transformers import pipeline

    from distill.cli import main

    torch.manual_seed(0)
    source = tmp_path / "tiny_bert"
    BertModel(tiny_config(tokenizer)).save_pretrained(source)
    tokenizer.save_pretrained(source)
    corpus = {"files": [str(corpus_dir / name) for name in SNIPPETS], "block_size": 32, "holdout_blocks": 24}
    small = {"max_steps": 3, "batch_size": 8, "checkpoint_every": 2}
    recipe = {
        "name": "tiny_general", "task": "sst2", "seed": 0, "mixed_precision": "no",
        "data": {"max_length": 32, "train_limit": 48, "eval_limit": 32},
        "model": {"model": str(source)},
        "stages": [
            # Frozen random body, tied frozen decoder: only the head's transform and bias learn, so they
            # need a large rate and 20 steps to lower perplexity clearly (3 steps moved it ±0.5 %).
            {"kind": "mlm_head", "corpus": corpus, "train": {**small, "max_steps": 20, "learning_rate": 0.1, "warmup_ratio": 0.0}},
            {"kind": "general_distill", "corpus": corpus, "student": {"layers": [0, 2]}, "train": small,
             "loss": {"alpha_hidden": 1.0, "alpha_attention": 1.0}},
            {"kind": "teacher", "name": "general_sst2", "input": "general_student", "train": {**small, "max_steps": 20, "learning_rate": 0.1, "warmup_ratio": 0.0}},
        ],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["run", str(path), f"output_dir={tmp_path / 'runs'}", "--data-dir", str(glue_data_dir)]) == 0

    run = tmp_path / "runs" / "tiny_general"
    records = {r["stage"]: r for r in json.loads((run / "report.json").read_text())["stages"]}
    assert [r["kind"] for r in records.values()] == ["mlm_head", "general_distill", "teacher"]
    head, general = records["mlm_teacher"], records["general_student"]
    assert head["perplexity"] < head["metrics"]["perplexity_before"] and not head["head_from_checkpoint"]
    # Same held-out blocks, same fixed masks, same model: the teacher's perplexity is reproduced.
    assert general["teacher_perplexity"] == pytest.approx(head["perplexity"], rel=1e-4)
    assert general["metric"] == "perplexity" and math.isfinite(general["perplexity"]) and general["perplexity"] > 1
    assert general["params"] < general["teacher_params"] and general["samples_per_second"] > 0
    assert general["train_steps"] == 3 and set(general["metrics"]) >= {"perplexity", "teacher_perplexity", "mlm_loss"}

    # Head-only training: the encoder is the source's, the head is trained and tied.
    original = BertModel.from_pretrained(source)
    teacher = AutoModelForMaskedLM.from_pretrained(run / "mlm_teacher")
    assert torch.equal(teacher.bert.encoder.layer[3].output.dense.weight, original.encoder.layer[3].output.dense.weight)
    assert teacher.cls.predictions.decoder.weight is teacher.bert.embeddings.word_embeddings.weight

    student = AutoModelForMaskedLM.from_pretrained(run / "general_student")
    assert type(student) is BertForMaskedLM and student.config.num_hidden_layers == 2
    assert pipeline("fill-mask", model=str(run / "general_student"))("the king [MASK] here .")
    # The classifier fine-tuned from the general student started from the source's pooler.
    from transformers import BertForSequenceClassification

    fresh = BertForSequenceClassification.from_pretrained(run / "general_student", num_labels=2)
    assert torch.equal(fresh.bert.pooler.dense.weight, original.pooler.dense.weight)
    classify = pipeline("text-classification", model=str(run / "general_sst2"))
    assert {o["label"] for o in classify(["a gorgeous movie .", "a dull mess ."])} <= {"negative", "positive"}
    assert records["general_sst2"]["metric"] == "accuracy"

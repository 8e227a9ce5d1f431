"""The transfer set of distill stages: MLM token-replacement augmentation, unlabelled text files,
the hard-label term skipping unlabelled rows, the recipe checks, and one tiny end-to-end run."""

import json

import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import wordpiece_tokenizer
from transformers import BertConfig, BertForMaskedLM, BertModel

from distill import DistillError
from distill.data.tasks import IGNORE_INDEX, get_task
from distill.recipe import validate_recipe
from distill.stages.preflight import check_transfer
from distill.training.losses import hard_label_loss
from distill.training.mlm import mlm_forward
from distill.training.transfer import augment_rows, continuation_pieces, file_texts

WORDS = ["the", "a", "movie", "film", "is", "was", "good", "bad", "great", "dull", "plot", "cast", "very", "not", "and",
         "un", "##ed", "##ly", "##s", "##ing", "fun", "slow", "."]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]


@pytest.fixture(scope="module")
def tokenizer():
    return wordpiece_tokenizer(VOCAB)


@pytest.fixture(scope="module")
def mlm(tokenizer):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=64, initializer_range=0.2)
    return BertForMaskedLM(config).eval()


def rows_of(tokenizer, texts, pairs=None):
    encoded = tokenizer(texts, pairs) if pairs else tokenizer(texts)
    return [{k: encoded[k][i] for k in ("input_ids", "token_type_ids", "attention_mask")} for i in range(len(texts))]


def augment(mlm, tokenizer, rows, **overrides):
    settings = {"copies": 3, "replace_share": 0.3, "top_k": 4, "seed": 0, "batch_size": 5, **overrides}
    return augment_rows(mlm, rows, special_ids=set(tokenizer.all_special_ids), continuation=continuation_pieces(tokenizer),
                        mask_id=tokenizer.mask_token_id, pad_id=tokenizer.pad_token_id, **settings)


TEXTS = ["the movie is good .", "a very dull plot and a slow cast .", "the film was great fun .", "unfunnyly bad ."]


def test_each_copy_keeps_length_segments_and_special_tokens_and_changes_at_least_one_piece(mlm, tokenizer):
    rows = rows_of(tokenizer, TEXTS[:2], ["the cast is fun .", "not good ."])
    copies = augment(mlm, tokenizer, rows)
    assert len(copies) == 3 * len(rows)
    special = set(tokenizer.all_special_ids)
    for i, copy in enumerate(copies):
        original = rows[i // 3]
        assert copy["token_type_ids"] == original["token_type_ids"] and copy["attention_mask"] == original["attention_mask"]
        assert len(copy["input_ids"]) == len(original["input_ids"])
        changed = [(a, b) for a, b in zip(original["input_ids"], copy["input_ids"]) if a != b]
        assert changed, "a copy equal to its original teaches nothing new"
        assert all(a not in special and b not in special for a, b in changed)
        assert [t for t in copy["input_ids"] if t in special] == [t for t in original["input_ids"] if t in special]


def test_a_replacement_is_a_piece_of_the_same_kind_word_start_or_continuation(mlm, tokenizer):
    continuation = continuation_pieces(tokenizer)
    assert continuation[tokenizer.convert_tokens_to_ids("##ly")] and not continuation[tokenizer.convert_tokens_to_ids("fun")]
    rows = rows_of(tokenizer, TEXTS)
    for i, copy in enumerate(augment(mlm, tokenizer, rows, copies=5, replace_share=0.6)):
        for a, b in zip(rows[i // 5]["input_ids"], copy["input_ids"]):
            assert continuation[a] == continuation[b]


def test_with_top_1_every_replaced_piece_is_the_mlms_best_allowed_guess_with_all_chosen_pieces_masked(mlm, tokenizer):
    rows = rows_of(tokenizer, TEXTS)
    copies = augment(mlm, tokenizer, rows, copies=1, top_k=1, replace_share=0.4)
    continuation = continuation_pieces(tokenizer)
    banned = torch.tensor([i in set(tokenizer.all_special_ids) for i in range(len(tokenizer))])
    for row, copy in zip(rows, copies):
        ids = torch.tensor([row["input_ids"]])
        chosen = ids != torch.tensor([copy["input_ids"]])
        masked = ids.masked_fill(chosen, tokenizer.mask_token_id)
        logits, _ = mlm_forward(mlm, {"input_ids": masked, "attention_mask": torch.ones_like(ids)}, chosen)
        original = ids[chosen]
        allowed = (continuation[None] == continuation[original][:, None]) & ~banned[None]
        allowed[torch.arange(len(original)), original] = False
        expected = logits.masked_fill(~allowed, float("-inf")).argmax(-1)
        assert torch.equal(torch.tensor(copy["input_ids"])[chosen[0]], expected)


def test_augmentation_is_reproducible_from_its_seed_and_changes_with_it(mlm, tokenizer):
    rows = rows_of(tokenizer, TEXTS)
    assert augment(mlm, tokenizer, rows, seed=3) == augment(mlm, tokenizer, rows, seed=3)
    assert augment(mlm, tokenizer, rows, seed=3) != augment(mlm, tokenizer, rows, seed=4)


def test_about_replace_share_of_the_pieces_are_replaced(mlm, tokenizer):
    rows = rows_of(tokenizer, TEXTS * 10)
    copies = augment(mlm, tokenizer, rows, copies=4, replace_share=0.3)
    pieces = changed = 0
    for i, copy in enumerate(copies):
        original = rows[i // 4]["input_ids"][1:-1]
        pieces += len(original)
        changed += sum(a != b for a, b in zip(original, copy["input_ids"][1:-1]))
    assert 0.25 < changed / pieces < 0.4  # 0.3, plus the one piece forced into rows that drew none


# ---------------------------------------------------------------- unlabelled rows in the hard-label term


def test_hard_labels_skip_rows_without_a_label():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.0]])
    labels = torch.tensor([1, IGNORE_INDEX, 0])
    assert hard_label_loss(logits, labels, is_regression=False) == pytest.approx(
        F.cross_entropy(logits[[0, 2]], labels[[0, 2]]).item())


def test_a_batch_without_labels_has_zero_hard_loss_that_still_backpropagates():
    logits = torch.randn(3, 2, requires_grad=True)
    loss = hard_label_loss(logits, torch.full((3,), IGNORE_INDEX), is_regression=False)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_regression_hard_loss_skips_nan_targets():
    predictions = torch.tensor([[1.0], [2.0], [4.0]])
    targets = torch.tensor([1.5, float("nan"), 3.0])
    assert hard_label_loss(predictions, targets, is_regression=True) == pytest.approx((0.25 + 1.0) / 2)
    assert hard_label_loss(predictions, torch.full((3,), float("nan")), is_regression=True).item() == 0.0


# ---------------------------------------------------------------- files and recipe checks


def test_pair_task_lines_are_two_tab_separated_texts(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("a cat sat .\tthe cat is sitting .\n\nit rains .\tit is dry .\n")
    assert file_texts([path], 2) == [("a cat sat .", "the cat is sitting ."), ("it rains .", "it is dry .")]


def test_a_pair_line_without_a_tab_names_file_and_line(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("a cat sat .\tthe cat is sitting .\nonly one text\n")
    with pytest.raises(DistillError, match=r"pairs\.txt:2: expected 2 non-empty tab-separated texts, found 1"):
        file_texts([path], 2)


def distill_stage(**transfer):
    return {"kind": "distill", "student": {"layers": [0]}, "transfer": transfer}


@pytest.mark.parametrize("transfer, message", [
    ({}, "give augment and/or files"),
    ({"augment": {"copies": 2}}, "exactly one of mlm_stage"),
    ({"augment": {"mlm_stage": "mlm_teacher", "mlm_model": "x"}}, "exactly one of mlm_stage"),
    ({"augment": {"mlm_stage": "later"}}, "transfer.augment.mlm_stage: no earlier stage named 'later'"),
])
def test_bad_transfer_settings_are_refused_with_the_field(transfer, message):
    with pytest.raises(DistillError, match=message):
        validate_recipe({"name": "r", "task": "sst2", "stages": [{"kind": "teacher"}, distill_stage(**transfer)]})


def test_a_missing_transfer_file_is_found_before_any_stage(tmp_path):
    recipe = validate_recipe({"name": "r", "task": "sst2", "stages": [{"kind": "teacher"}, distill_stage(files=["nowhere.txt"])]})
    with pytest.raises(DistillError, match=r"stages\[1\]\.transfer\.files\[0\]: text file 'nowhere.txt' not found"):
        check_transfer(recipe, get_task("sst2"), str(tmp_path))


def test_an_augmenting_mlm_stage_that_is_no_masked_lm_is_refused_before_any_stage():
    recipe = validate_recipe({"name": "r", "task": "sst2",
                              "stages": [{"kind": "teacher"}, distill_stage(augment={"mlm_stage": "teacher"})]})
    with pytest.raises(DistillError, match=r"stages\[1\]\.transfer\.augment\.mlm_stage: 'teacher' is a teacher stage, not a masked LM"):
        check_transfer(recipe, get_task("sst2"), None)


def test_taggers_refuse_a_transfer_set(tmp_path):
    (tmp_path / "extra.txt").write_text("new words here\n")
    recipe = validate_recipe({"name": "r", "task": "wnut17",
                              "stages": [{"kind": "teacher"}, distill_stage(files=[str(tmp_path / "extra.txt")])]})
    with pytest.raises(DistillError, match="applies to sentence and pair tasks; task wnut17 is token classification"):
        check_transfer(recipe, get_task("wnut17"), None)


# ---------------------------------------------------------------- end to end


def test_cli_distils_on_augmented_copies_and_file_text_with_cached_teacher_logits(tmp_path, tokenizer, glue_data_dir):
    from distill.cli import main

    torch.manual_seed(0)
    source = tmp_path / "tiny_bert"
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=37, max_position_embeddings=64)).save_pretrained(source)
    tokenizer.save_pretrained(source)
    (tmp_path / "corpus.txt").write_text("the movie is good .\na dull plot .\n" * 40)
    (tmp_path / "reviews.txt").write_text("a great film .\nthe cast was slow .\nnot fun .\n")
    small = {"max_steps": 3, "batch_size": 8}
    transfer = {"augment": {"mlm_stage": "mlm_teacher", "copies": 2, "top_k": 3}, "files": [str(tmp_path / "reviews.txt")]}
    recipe = {
        "name": "tiny_transfer", "task": "sst2", "seed": 0, "mixed_precision": "no",
        "data": {"max_length": 32, "train_limit": 24, "eval_limit": 16},
        "model": {"model": str(source)},
        "stages": [
            {"kind": "mlm_head", "corpus": {"files": [str(tmp_path / "corpus.txt")], "block_size": 16, "holdout_blocks": 4},
             "train": small},
            {"kind": "teacher", "train": small},
            {"kind": "distill", "student": {"layers": [0]}, "loss": {"alpha_cos": 0.0}, "transfer": transfer,
             "train": small},
        ],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["run", str(path), f"output_dir={tmp_path / 'runs'}", "--data-dir", str(glue_data_dir)]) == 0

    record = json.loads((tmp_path / "runs" / "tiny_transfer" / "report.json").read_text())["stages"][-1]
    assert record["transfer"]["labelled_examples"] == 24
    assert record["transfer"]["augmented_examples"] == 48 and record["transfer"]["file_examples"] == 3
    assert record["transfer"]["transfer_examples"] == 51
    assert record["teacher_cache_hit"] is False  # logits-only objective: the teacher ran once, before training

"""Token classification (NER): tag files, word-piece alignment, seqeval metrics and the per-token
distillation terms, on hand-made examples and tiny random models."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import wordpiece_tokenizer

from distill import DistillError
from distill.data.metrics import token_metrics
from distill.data.tasks import IGNORE_INDEX, custom_token_task, get_task
from distill.data.token_data import align_labels, load_token_file, tokenize_words
from distill.training.losses import DistillationLoss, LossWeights, hard_label_loss

TAGS = ("O", "B-person", "I-person", "B-location", "I-location")


@pytest.fixture
def task():
    return custom_token_task("people", TAGS, tokens_field="tokens", tags_field="tags")


@pytest.fixture
def tokenizer():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "ann", "lives", "in", "new", "york", "##shire", "york", "bob", "##by"]
    return wordpiece_tokenizer(vocab)


# --- alignment -----------------------------------------------------------------------------


def test_first_sub_token_carries_the_word_tag_and_the_rest_are_ignored():
    # [CLS] bob ##by lives [SEP]: words 0, 0, 1
    assert align_labels([None, 0, 0, 1, None], [1, 0]) == [IGNORE_INDEX, 1, IGNORE_INDEX, 0, IGNORE_INDEX]


def test_label_all_subtokens_continues_a_beginning_as_inside():
    continuation = [0, 2, 2, 4, 4]  # B-person -> I-person, B-location -> I-location
    assert align_labels([None, 0, 0, 1, None], [1, 0], continuation) == [IGNORE_INDEX, 1, 2, 0, IGNORE_INDEX]


def test_tokenized_sentence_aligns_tags_to_word_pieces(task, tokenizer):
    import datasets

    rows = datasets.Dataset.from_dict({"tokens": [["bobby", "lives", "in", "yorkshire"]], "label": [[1, 0, 0, 3]]})
    encoded, cut = tokenize_words(rows, tokenizer, task, max_length=32)
    pieces = tokenizer.convert_ids_to_tokens(encoded[0]["input_ids"])
    assert pieces == ["[CLS]", "bob", "##by", "lives", "in", "york", "##shire", "[SEP]"]
    assert encoded[0]["labels"] == [IGNORE_INDEX, 1, IGNORE_INDEX, 0, 0, 3, IGNORE_INDEX, IGNORE_INDEX]
    assert cut == 0


def test_label_all_subtokens_labels_every_piece_of_a_word(task, tokenizer):
    import datasets

    rows = datasets.Dataset.from_dict({"tokens": [["bobby", "lives", "in", "yorkshire"]], "label": [[1, 0, 0, 3]]})
    encoded, _ = tokenize_words(rows, tokenizer, task, max_length=32, label_all_subtokens=True)
    assert encoded[0]["labels"] == [IGNORE_INDEX, 1, 2, 0, 0, 3, 4, IGNORE_INDEX]


def test_truncation_counts_the_words_it_cuts_off(task, tokenizer):
    import datasets

    rows = datasets.Dataset.from_dict({"tokens": [["bobby", "lives", "in", "yorkshire"]], "label": [[1, 0, 0, 3]]})
    encoded, cut = tokenize_words(rows, tokenizer, task, max_length=5)  # [CLS] bob ##by lives [SEP]
    assert encoded[0]["labels"] == [IGNORE_INDEX, 1, IGNORE_INDEX, 0, IGNORE_INDEX]
    assert cut == 2


# --- files -----------------------------------------------------------------------------------


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_conll_sentences_split_on_empty_or_tab_only_lines(task, tmp_path):
    path = write(tmp_path / "train.conll", "ann\tB-person\nlives\tO\n\t\nnew\tB-location\nyork\tI-location\n\n")
    data = load_token_file(task, path)
    assert data["tokens"] == [["ann", "lives"], ["new", "york"]]
    assert data["label"] == [[1, 0], [3, 4]]


def test_conll_line_without_a_tag_names_file_and_line(task, tmp_path):
    path = write(tmp_path / "train.conll", "ann\tB-person\nlives\n")
    with pytest.raises(DistillError, match=r"train\.conll:2: no tag on this line"):
        load_token_file(task, path)


def test_conll_unknown_tag_names_file_and_line(task, tmp_path):
    path = write(tmp_path / "train.conll", "ann\tB-person\n\nyork\tB-city\n")
    with pytest.raises(DistillError, match=r"train\.conll:3: unknown tag 'B-city'"):
        load_token_file(task, path)


def test_inside_tag_without_its_beginning_is_not_bio(task, tmp_path):
    path = write(tmp_path / "dev.conll", "ann\tB-person\nlives\tO\nyork\tI-location\n")
    with pytest.raises(DistillError, match=r"dev\.conll:3: tag I-location follows O, which is not BIO"):
        load_token_file(task, path)


def test_plain_tag_scheme_accepts_any_order(tmp_path):
    plain = custom_token_task("plain", ("O", "PER"), scheme="none")
    data = load_token_file(plain, write(tmp_path / "t.conll", "ann\tPER\nlives\tO\n"))
    assert data["label"] == [[1, 0]]


def test_jsonl_records_hold_tokens_and_tags(task, tmp_path):
    path = write(tmp_path / "t.jsonl", '{"tokens": ["ann", "lives"], "tags": ["B-person", "O"]}\n')
    assert load_token_file(task, path)["label"] == [[1, 0]]


def test_jsonl_record_with_fewer_tags_than_tokens_names_its_line(task, tmp_path):
    path = write(tmp_path / "t.jsonl", '{"tokens": ["ann"], "tags": ["B-person"]}\n{"tokens": ["ann", "x"], "tags": ["O"]}\n')
    with pytest.raises(DistillError, match=r"t\.jsonl:2: 2 tokens but 1 tags"):
        load_token_file(task, path)


def test_bio_label_list_needs_an_outside_tag():
    with pytest.raises(DistillError, match="needs an 'O' tag"):
        custom_token_task("t", ("B-person", "I-person"))


def test_bio_label_list_needs_the_beginning_of_each_inside_tag():
    with pytest.raises(DistillError, match="has I-location but no B-location"):
        custom_token_task("t", ("O", "B-person", "I-person", "I-location"))


def test_wnut17_local_files_give_the_published_sentence_counts(glue_data_dir):
    from distill.data.splits import load_task_splits

    splits = load_task_splits(get_task("wnut17"), glue_data_dir, splits=("train", "validation", "test"))
    assert {name: len(split) for name, split in splits.items()} == {"train": 3394, "validation": 1009, "test": 1287}
    assert sum(map(len, splits["validation"]["tokens"])) == 15733
    assert splits["train"].features["label"].feature.names[:3] == ["O", "B-corporation", "I-corporation"]


def hub_wnut(names):
    import datasets

    features = datasets.Features({"id": datasets.Value("string"), "tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=list(names)))})
    split = datasets.Dataset.from_dict({"id": ["0"], "tokens": [["Ann", "lives"]], "ner_tags": [[9, 0]]}, features=features)
    return datasets.DatasetDict({"train": split, "validation": split, "test": split})


def test_hub_wnut17_comes_out_in_the_local_schema(monkeypatch):
    from distill.data import splits as data
    from distill.data.tasks import WNUT17_TAGS

    asked = {}

    def fake_load_dataset(path, name=None, revision=None):
        asked.update(path=path, revision=revision)
        return hub_wnut(WNUT17_TAGS)

    monkeypatch.setattr(data.datasets, "load_dataset", fake_load_dataset)
    task = get_task("wnut17")
    splits = data.load_task_splits(task, None, splits=("train", "test"))
    assert asked == {"path": "leondz/wnut_17", "revision": "refs/convert/parquet"}
    assert splits["test"].features == data.task_features(task)
    assert splits["test"][0] == {"tokens": ["Ann", "lives"], "label": [9, 0]}  # B-person, O: the local ids


def test_hub_tags_in_another_order_are_refused(monkeypatch):
    from distill.data import splits as data
    from distill.data.tasks import WNUT17_TAGS

    monkeypatch.setattr(data.datasets, "load_dataset", lambda *a, **k: hub_wnut(sorted(WNUT17_TAGS)))
    with pytest.raises(DistillError, match="leondz/wnut_17: its tags .* are not the task's"):
        data.load_task_splits(get_task("wnut17"), None, splits=("validation",))


def test_glue_tasks_have_no_labelled_test_split(glue_data_dir):
    from distill.data.splits import load_task_splits

    with pytest.raises(DistillError, match="task rte has no labelled test split"):
        load_task_splits(get_task("rte"), glue_data_dir, splits=("test",))


# --- metrics ---------------------------------------------------------------------------------


def test_seqeval_counts_whole_entities():
    gold = [["B-person", "I-person", "O", "B-location"], ["O", "B-location", "I-location"]]
    # person found; the first location missed; the second found with the wrong span (one word): wrong
    pred = [["B-person", "I-person", "O", "O"], ["O", "B-location", "O"]]
    metrics = token_metrics(pred, gold)
    # 3 gold entities, 2 predicted, 1 correct
    assert metrics["precision"] == pytest.approx(1 / 2)
    assert metrics["recall"] == pytest.approx(1 / 3)
    assert metrics["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert metrics["f1_person"] == pytest.approx(1.0)
    assert metrics["f1_location"] == pytest.approx(0.0)
    assert metrics["accuracy"] == pytest.approx(5 / 7)  # per token, beside the task metric


def test_an_all_outside_tagger_scores_zero_f1():
    gold = [["B-person", "O"], ["O", "B-location"]]
    assert token_metrics([["O", "O"], ["O", "O"]], gold)["f1"] == 0.0


def test_plain_tags_read_each_run_of_one_tag_as_one_entity():
    metrics = token_metrics([["PER", "PER", "O"]], [["PER", "PER", "O"]], scheme="none")
    assert metrics["f1"] == 1.0 and metrics["f1_PER"] == 1.0


# --- losses ----------------------------------------------------------------------------------


def test_token_hard_loss_is_the_mean_cross_entropy_over_labelled_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3)
    labels = torch.tensor([[IGNORE_INDEX, 1, 2, IGNORE_INDEX], [IGNORE_INDEX, 0, IGNORE_INDEX, IGNORE_INDEX]])
    by_hand = sum(-F.log_softmax(logits[b, t], -1)[labels[b, t]] for b, t in [(0, 1), (0, 2), (1, 1)]) / 3
    assert hard_label_loss(logits, labels, is_regression=False).item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_token_soft_targets_are_the_kl_at_labelled_tokens_times_t_squared():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    labels = torch.tensor([[IGNORE_INDEX, 1, 2, IGNORE_INDEX], [IGNORE_INDEX, 0, IGNORE_INDEX, IGNORE_INDEX]])
    temperature = 2.0
    by_hand = 0.0
    for b, t in [(0, 1), (0, 2), (1, 1)]:
        p = F.softmax(teacher[b, t] / temperature, -1)
        q = F.softmax(student[b, t] / temperature, -1)
        by_hand += float((p * (p / q).log()).sum())
    by_hand = by_hand / 3 * temperature**2
    loss = DistillationLoss(LossWeights(alpha_kd=1.0, alpha_hard=0.0, alpha_cos=0.0), is_regression=False, layer_map=None,
                            student_hidden_size=8, teacher_hidden_size=8)
    _, values = loss({"logits": student}, {"logits": teacher}, labels, torch.ones(2, 4))
    assert values["kd"] == pytest.approx(by_hand, rel=1e-5)
    assert math.isfinite(values["loss"])


def test_token_soft_targets_without_a_labelled_token_are_zero():
    loss = DistillationLoss(LossWeights(alpha_kd=1.0, alpha_hard=0.0, alpha_cos=0.0), is_regression=False, layer_map=None,
                            student_hidden_size=8, teacher_hidden_size=8)
    labels = torch.full((1, 3), IGNORE_INDEX)
    _, values = loss({"logits": torch.randn(1, 3, 2)}, {"logits": torch.randn(1, 3, 2)}, labels, torch.ones(1, 3))
    assert values["kd"] == 0.0

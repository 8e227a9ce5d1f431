"""Building students from a teacher, and loading weights safely."""

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from distill import DistillError
from distill.data.tasks import get_task
from distill.models.loading import load_classifier
from distill.models.student import build_student, copy_layers_student
from distill.recipe import StudentConfig
from distill.recipe.training import default_student_layers


@pytest.fixture
def teacher():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=6, num_attention_heads=4,
                        intermediate_size=37, num_labels=2)
    return BertForSequenceClassification(config).eval()


def test_default_layers_are_every_other_from_the_first():
    assert default_student_layers(6) == [0, 2, 4]
    assert default_student_layers(12) == [0, 2, 4, 6, 8, 10]


def test_copied_layers_equal_the_teacher_layers(teacher):
    student = copy_layers_student(teacher, [1, 3, 5])
    assert student.config.num_hidden_layers == 3
    for student_index, teacher_index in enumerate([1, 3, 5]):
        s_layer = student.bert.encoder.layer[student_index].state_dict()
        t_layer = teacher.bert.encoder.layer[teacher_index].state_dict()
        assert s_layer.keys() == t_layer.keys()
        assert all(torch.equal(s_layer[k], t_layer[k]) for k in s_layer)


def test_embeddings_pooler_and_head_are_copied(teacher):
    student = copy_layers_student(teacher, [0, 2, 4])
    for name in ("bert.embeddings", "bert.pooler", "classifier"):
        s_state = student.get_submodule(name).state_dict()
        t_state = teacher.get_submodule(name).state_dict()
        assert all(torch.equal(s_state[k], t_state[k]) for k in s_state), name


def test_student_with_all_layers_computes_the_teacher_function(teacher):
    student = copy_layers_student(teacher, list(range(6))).eval()
    ids = torch.randint(0, 99, (2, 7))
    assert torch.allclose(student(input_ids=ids).logits, teacher(input_ids=ids).logits, atol=1e-6)


def test_copied_student_does_not_share_storage_with_teacher(teacher):
    student = copy_layers_student(teacher, [0])
    with torch.no_grad():
        student.bert.embeddings.word_embeddings.weight.zero_()
    assert teacher.bert.embeddings.word_embeddings.weight.abs().sum() > 0


def test_out_of_range_layer_is_an_error(teacher):
    with pytest.raises(DistillError, match=r"student.layers: \[6\] out of range; the teacher has layers 0..5"):
        copy_layers_student(teacher, [0, 6])


def test_config_overrides_build_a_fresh_smaller_student(teacher):
    student = build_student(StudentConfig(config_overrides={"num_hidden_layers": 2, "hidden_size": 16,
                                                            "num_attention_heads": 2}), teacher, get_task("sst2"))
    assert (student.config.num_hidden_layers, student.config.hidden_size) == (2, 16)


def test_layers_from_another_checkpoint_are_copied_out_of_it(tmp_path, teacher):
    torch.manual_seed(1)
    other = BertForSequenceClassification(teacher.config)
    other.save_pretrained(tmp_path)
    student = build_student(StudentConfig(from_pretrained=str(tmp_path), layers=[1, 4]), teacher, get_task("sst2"))
    assert student.config.num_hidden_layers == 2
    copied = student.bert.encoder.layer[1].attention.self.query.weight
    assert torch.equal(copied, other.bert.encoder.layer[4].attention.self.query.weight)
    assert not torch.equal(copied, teacher.bert.encoder.layer[4].attention.self.query.weight)


def test_unloadable_student_checkpoint_names_the_field(tmp_path, teacher):
    with pytest.raises(DistillError, match=r"^student\.from_pretrained: model .*missing"):
        build_student(StudentConfig(from_pretrained=str(tmp_path / "missing"), layers=[0]), teacher, get_task("sst2"))


def save_with_pickle_weights(model, folder) -> None:
    """A folder with pytorch_model.bin: transformers 5 ignores `safe_serialization=False`."""
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")


def test_pickle_weights_are_refused_without_opt_in(tmp_path, teacher):
    save_with_pickle_weights(teacher, tmp_path)
    with pytest.raises(DistillError, match="no safetensors weights.*allow_pickle"):
        load_classifier(str(tmp_path), get_task("sst2"))


def test_artifacts_with_pickle_weights_are_refused(tmp_path, teacher):
    from distill.quantize.artifacts import load_artifact

    save_with_pickle_weights(teacher, tmp_path)
    with pytest.raises(DistillError, match="no safetensors weights"):
        load_artifact(tmp_path)


def test_pickle_weights_load_with_opt_in(tmp_path, teacher):
    save_with_pickle_weights(teacher, tmp_path)
    model = load_classifier(str(tmp_path), get_task("sst2"), allow_pickle=True)
    assert torch.equal(model.classifier.weight, teacher.classifier.weight)


def test_classifier_config_carries_label_names(tmp_path, teacher):
    teacher.save_pretrained(tmp_path)
    model = load_classifier(str(tmp_path), get_task("sst2"))
    assert model.config.id2label == {0: "negative", 1: "positive"}


def test_a_model_folder_without_tokenizer_files_is_refused_by_eval_in_one_line(tmp_path, teacher, glue_data_dir, capsys):
    # transformers 5 would build a special-tokens-only tokenizer from config.json and score noise.
    from distill.cli import main

    teacher.save_pretrained(tmp_path / "model")
    capsys.readouterr()  # save_pretrained's progress bar
    assert main(["eval", str(tmp_path / "model"), "--task", "sst2", "--data-dir", str(glue_data_dir), "--limit", "8"]) == 2
    err = capsys.readouterr().err
    assert "no vocabulary" in err and str(tmp_path / "model") in err and len(err.strip().splitlines()) == 1

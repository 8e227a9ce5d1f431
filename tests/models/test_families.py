"""The architecture layer (distill.models.families): every family's blocks and roles are found,
and what it does not know is refused by name."""

import json

import pytest
from families import TOKENIZER_KINDS, tiny_classifier

from distill import DistillError
from distill.models.families import family_of, submodule, tokenizer_kind, transformer_blocks

FAMILIES = list(TOKENIZER_KINDS)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_every_family_names_its_blocks_and_the_linear_layer_of_every_role(model_type):
    model = tiny_classifier(model_type)
    family = family_of(model)
    prefix, blocks = transformer_blocks(model)
    assert len(blocks) == model.config.num_hidden_layers
    assert model.get_submodule(prefix) is blocks
    for role, path in family.projection_roles().items():
        assert submodule(blocks[0], path).__class__.__name__ == "Linear", role
    heads_module = submodule(blocks[0], family.heads_module)
    assert any(hasattr(heads_module, name) for name in family.head_count_attributes + family.head_width_attributes) \
        or model_type == "modernbert"  # 5.x ModernBERT infers its heads from the shapes


@pytest.mark.parametrize("model_type", FAMILIES)
def test_every_familys_task_head_and_lora_targets_exist_in_its_classifier(model_type):
    model = tiny_classifier(model_type)
    family = family_of(model)
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()} | {name for name, _ in model.named_modules()}
    assert set(family.lora_targets) <= names
    assert any(head in names for head in family.head_modules)


def test_a_model_type_without_an_entry_is_refused_naming_the_known_ones():
    with pytest.raises(DistillError, match=r"prune: model type 'gpt2' is not supported: .*knows bert, .*modernbert"):
        family_of({"model_type": "gpt2"}, "prune")


def test_albert_is_refused_with_its_reason():
    with pytest.raises(DistillError, match="shares one set of layer weights"):
        family_of({"model_type": "albert"})


@pytest.mark.parametrize(("model", "kind"), [("WordPiece", "wordpiece"), ("BPE", "bpe"), ("Unigram", "unigram"), ("WordLevel", "WordLevel")])
def test_tokenizer_kind_is_read_from_tokenizer_json(tmp_path, model, kind):
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": model}}))
    assert tokenizer_kind(tmp_path) == kind


def test_a_folder_without_tokenizer_json_has_no_known_kind(tmp_path):
    assert tokenizer_kind(tmp_path) is None


def test_a_modernbert_student_keeps_each_copied_layers_attention_kind():
    from distill.models.compat import TRANSFORMERS_5
    from distill.models.student import copy_layers_student

    teacher = tiny_classifier("modernbert")  # global every 2nd layer: full, sliding, full, sliding
    student = copy_layers_student(teacher, [1, 2, 3])
    if not TRANSFORMERS_5:  # 4.x: no per-layer list; the kinds follow global_attn_every_n_layers by new index
        assert student.config.global_attn_every_n_layers == teacher.config.global_attn_every_n_layers
        return
    assert student.config.layer_types == ["sliding_attention", "full_attention", "sliding_attention"]
    assert [layer.attn.sliding_window is not None for layer in student.model.layers] == [True, False, True]


@pytest.mark.parametrize("model_type", FAMILIES)
def test_a_copied_student_of_every_family_runs_the_teachers_chosen_layers(model_type):
    import torch
    from families import sample_batch

    from distill.models.student import copy_layers_student

    teacher = tiny_classifier(model_type)
    student = copy_layers_student(teacher, [0, 3])
    _, teacher_blocks = transformer_blocks(teacher)
    _, student_blocks = transformer_blocks(student)
    for s, t in zip(student_blocks, [teacher_blocks[0], teacher_blocks[3]]):
        assert all(torch.equal(a, b) for a, b in zip(s.state_dict().values(), t.state_dict().values()))
    batch = sample_batch()
    with torch.no_grad():
        assert torch.isfinite(student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits).all()


@pytest.mark.parametrize(("model_type", "makes_token_types"), [("distilbert", False), ("bert", True)])
def test_a_checkpoints_tokenizer_makes_only_the_inputs_its_family_takes(tmp_path, model_type, makes_token_types):
    from families import family_config
    from helpers import wordpiece_tokenizer
    from transformers import AutoTokenizer

    from distill.models.loading import load_tokenizer

    tokenizer = wordpiece_tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "film"])  # a BERT tokenizer
    tokenizer.save_pretrained(tmp_path)
    family_config(model_type, tokenizer).save_pretrained(tmp_path)
    tokenizer = load_tokenizer(str(tmp_path))
    assert ("token_type_ids" in tokenizer("a film", "film")) is makes_token_types
    tokenizer.save_pretrained(tmp_path / "artifact")  # as a stage saves it: plain transformers then agrees
    assert ("token_type_ids" in AutoTokenizer.from_pretrained(tmp_path / "artifact")("a film", "film")) is makes_token_types

"""DistilBERT-style students: a teacher's embeddings, head and chosen layers copied into a
shallower model of the same class, or a fresh model of another shape."""

from __future__ import annotations

import re

from transformers import PreTrainedModel

from distill import DistillError
from distill.data.tasks import TaskSpec
from distill.models.families import family_of, keep_layers_in_config, transformer_blocks
from distill.models.loading import load_classifier
from distill.recipe import StudentConfig
from distill.recipe.training import default_student_layers


def copy_layers_student(teacher: PreTrainedModel, layers: list[int]) -> PreTrainedModel:
    """A student with the teacher's embeddings, head and the listed layers (in that order)."""
    n_teacher = teacher.config.num_hidden_layers
    bad = [i for i in layers if not 0 <= i < n_teacher]
    if bad:
        raise DistillError(f"student.layers: {bad} out of range; the teacher has layers 0..{n_teacher - 1}")
    prefix, _ = transformer_blocks(teacher, "student.layers")
    config = teacher.config.__class__.from_dict(teacher.config.to_dict())
    # Each copied layer keeps its attention kind (ModernBERT: global or sliding window). transformers
    # 4.x has no per-layer list: there the kinds follow global_attn_every_n_layers by new index.
    keep_layers_in_config(config, layers)
    family = family_of(teacher)
    student = type(teacher)(config)
    layer_key = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(.*)$")
    new_index = {teacher_i: student_i for student_i, teacher_i in enumerate(layers)}
    state = {}
    for key, tensor in teacher.state_dict().items():
        match = layer_key.match(key)
        if match is None:
            state[key] = tensor.clone()
        elif int(match.group(1)) in new_index:
            state[f"{prefix}.{new_index[int(match.group(1))]}.{match.group(2)}"] = tensor.clone()
    # Modules only some block positions have (ModernBERT's first block lacks attn_norm): the student's own.
    def position_dependent(key: str) -> bool:
        match = layer_key.match(key)
        return match is not None and match.group(2).split(".")[0] in family.absent_in_first_block

    student_keys = set(student.state_dict())
    state = {k: v for k, v in state.items() if k in student_keys or not position_dependent(k)}
    missing, unexpected = student.load_state_dict(state, strict=False)
    missing = [k for k in missing if "position_ids" not in k and not position_dependent(k)]
    if unexpected or missing:
        raise DistillError(f"student copy mismatch: missing {missing}, unexpected {unexpected}")
    return student


def build_student(spec: StudentConfig, init_model: PreTrainedModel, task: TaskSpec, *, load=load_classifier) -> PreTrainedModel:
    """The student a distill/baseline stage trains, from the stage's student spec. `load` reads
    `spec.from_pretrained` (stages pass one that also reads our pruned and factorized artifacts)."""
    if spec.from_pretrained:
        try:
            source = load(spec.from_pretrained, task, new_head_ok=spec.layers is not None)
        except DistillError as err:  # found only now: a Hub id cannot be checked when the recipe loads
            raise DistillError(f"student.from_pretrained: {err}") from None
        return source if spec.layers is None else copy_layers_student(source, spec.layers)
    if spec.config_overrides:  # a fresh, randomly initialised student of another shape
        config = init_model.config.__class__.from_dict({**init_model.config.to_dict(), **spec.config_overrides})
        return type(init_model)(config)
    layers = spec.layers if spec.layers is not None else default_student_layers(init_model.config.num_hidden_layers)
    return copy_layers_student(init_model, layers)

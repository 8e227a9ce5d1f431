"""Every family's distillation and QAT steps run under bf16 autocast (what mixed_precision picks on
CPUs with native bf16), with every loss term on."""

import pytest
import torch
from families import TOKENIZER_KINDS, sample_batch, tiny_classifier

from distill.models.student import copy_layers_student
from distill.quantize.qat import calibrate, insert_fake_quant, set_mode
from distill.recipe import LossConfig
from distill.training.steps import distillation_loss, distillation_step

FAMILIES = list(TOKENIZER_KINDS)
ALL_TERMS = LossConfig(alpha_kd=1.0, alpha_hard=1.0, alpha_cos=1.0, alpha_hidden=1.0, alpha_attention=1.0)


class _Task:
    is_regression = False


def _eager(model):
    model.set_attn_implementation("eager")  # attention maps, for the attention term
    return model


@pytest.mark.parametrize("model_type", FAMILIES)
def test_a_students_distillation_step_runs_under_bf16_autocast(model_type):
    teacher = _eager(tiny_classifier(model_type))
    student = _eager(copy_layers_student(teacher, [0, 2])).train()
    step = distillation_step(teacher, distillation_loss(ALL_TERMS, _Task(), student, teacher))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, terms = step(student, sample_batch())
    loss.backward()
    assert torch.isfinite(loss) and set(terms) >= {"kd", "hard", "cos", "hidden", "attention"}
    assert all(p.grad is not None for p in student.classifier.parameters())


@pytest.mark.parametrize("model_type", FAMILIES)
def test_a_fake_quantized_models_training_step_runs_under_bf16_autocast(model_type):
    model, batch = tiny_classifier(model_type), sample_batch()
    insert_fake_quant(model, ["classifier"], momentum=0.01)
    calibrate(model, [{k: v for k, v in batch.items() if k != "labels"}])
    set_mode(model, "train")
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss)

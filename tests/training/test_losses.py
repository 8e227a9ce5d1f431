"""Distillation loss terms against hand computations on tiny tensors, and the combiner."""

import math

import pytest
import torch
import torch.nn as nn
from transformers.modeling_outputs import SequenceClassifierOutput

from distill import DistillError
from distill.training.losses import (
    DistillationLoss,
    LossWeights,
    attention_kl,
    default_layer_map,
    hard_label_loss,
    hidden_cosine,
    hidden_mse,
    soft_target_kl,
    soft_target_mse,
)

LN3 = math.log(3.0)
# KL([3/4, 1/4] || [1/2, 1/2]) written out: sum p * log(p / q)
KL_34_VS_HALF = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)


def t(values, **kw):
    return torch.tensor(values, dtype=torch.float32, **kw)


# ----------------------------------------------------------------------------- soft targets
def test_soft_target_kl_matches_hand_value_with_t_squared_factor():
    # Row 0: teacher logits / T = [ln 3, 0] -> probs [3/4, 1/4]; student uniform [1/2, 1/2].
    # Row 1: identical logits -> KL 0. batchmean over 2 rows, times T**2 = 4.
    student = t([[0.0, 0.0], [1.0, -1.0]])
    teacher = t([[2 * LN3, 0.0], [1.0, -1.0]])
    expected = 4.0 * (KL_34_VS_HALF + 0.0) / 2
    assert soft_target_kl(student, teacher, temperature=2.0).item() == pytest.approx(expected, rel=1e-6)


def test_soft_target_kl_same_distributions_scale_by_temperature_squared():
    # The softened distributions are equal at (T=1, logits x) and (T=3, logits 3x): the loss
    # differs exactly by the T**2 factor.
    at_t1 = soft_target_kl(t([[0.0, 0.0]]), t([[LN3, 0.0]]), temperature=1.0).item()
    at_t3 = soft_target_kl(t([[0.0, 0.0]]), t([[3 * LN3, 0.0]]), temperature=3.0).item()
    assert at_t1 == pytest.approx(KL_34_VS_HALF, rel=1e-6)
    assert at_t3 == pytest.approx(9.0 * KL_34_VS_HALF, rel=1e-6)


def test_soft_target_kl_is_zero_for_identical_logits():
    logits = t([[0.3, -1.2, 2.0], [5.0, 0.0, 0.0]])
    assert soft_target_kl(logits, logits.clone(), temperature=2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_soft_target_kl_rejects_non_positive_temperature():
    with pytest.raises(DistillError, match="distill.loss.temperature: must be > 0"):
        soft_target_kl(t([[0.0, 0.0]]), t([[0.0, 0.0]]), temperature=0.0)


def test_soft_target_mse_regression_hand_value():
    # ((1 - 0)^2 + (2 - 4)^2) / 2 = 2.5; no softmax for regression.
    assert soft_target_mse(t([[1.0], [2.0]]), t([[0.0], [4.0]])).item() == pytest.approx(2.5)


# ----------------------------------------------------------------------------- hard labels
def test_hard_label_cross_entropy_hand_value():
    # Row 0: softmax([ln 3, 0]) = [3/4, 1/4], label 0 -> -ln(3/4). Row 1: uniform, label 1 -> ln 2.
    loss = hard_label_loss(t([[LN3, 0.0], [0.0, 0.0]]), torch.tensor([0, 1]), is_regression=False)
    assert loss.item() == pytest.approx((-math.log(0.75) + math.log(2.0)) / 2, rel=1e-6)


def test_hard_label_regression_mse_squeezes_last_dim():
    # logits [2, 1] vs labels [2]: ((1 - 2)^2 + (3 - 2.5)^2) / 2 = 0.625
    loss = hard_label_loss(t([[1.0], [3.0]]), t([2.0, 2.5]), is_regression=True)
    assert loss.item() == pytest.approx(0.625)


# ----------------------------------------------------------------------------- hidden cosine
def _cosine_inputs():
    # Token 0: parallel (cos 1 -> 0). Token 1: orthogonal (cos 0 -> 1). Token 2: padding.
    student = t([[[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    teacher = t([[[1.0, 0.0], [1.0, 0.0], [-3.0, 7.0]]])
    mask = torch.tensor([[1, 1, 0]])
    return student, teacher, mask


def test_hidden_cosine_hand_value_over_real_tokens():
    student, teacher, mask = _cosine_inputs()
    assert hidden_cosine(student, teacher, mask).item() == pytest.approx((0.0 + 1.0) / 2, abs=1e-6)


def test_hidden_cosine_ignores_padded_positions():
    student, teacher, mask = _cosine_inputs()
    before = hidden_cosine(student, teacher, mask).item()
    student[0, 2] = t([-100.0, 3.0])
    teacher[0, 2] = t([0.5, -9.0])
    assert hidden_cosine(student, teacher, mask).item() == pytest.approx(before, abs=1e-7)


# ----------------------------------------------------------------------------- hidden MSE
def test_hidden_mse_hand_value_masks_padding_and_averages_pairs():
    mask = torch.tensor([[1, 0]])
    # Pair A: real token diff (1, -2) -> (1 + 4) / (1 token * 2 dims) = 2.5; padded token ignored.
    s_a, t_a = t([[[1.0, 1.0], [9.0, 9.0]]]), t([[[0.0, 3.0], [0.0, 0.0]]])
    # Pair B: real token diff (3, 1) -> (9 + 1) / 2 = 5.0
    s_b, t_b = t([[[3.0, 0.0], [1.0, 1.0]]]), t([[[0.0, -1.0], [7.0, 7.0]]])
    loss = hidden_mse([s_a, s_b], [t_a, t_b], mask)
    assert loss.item() == pytest.approx((2.5 + 5.0) / 2)


def test_hidden_mse_ignores_padded_positions():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    gen = torch.Generator().manual_seed(0)
    s, tt = torch.randn(2, 3, 4, generator=gen), torch.randn(2, 3, 4, generator=gen)
    before = hidden_mse([s], [tt], mask).item()
    s2 = s.clone()
    s2[0, 2] += 50.0
    s2[1, 1:] -= 7.0
    assert hidden_mse([s2], [tt], mask).item() == pytest.approx(before, rel=1e-6)


def test_hidden_mse_applies_per_pair_projection():
    # Projection 1 -> 2 dims with weight [[1], [2]], no bias: student [3] -> [3, 6]; teacher [3, 4]
    # -> ((3-3)^2 + (6-4)^2) / 2 = 2.0
    proj = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        proj.weight.copy_(t([[1.0], [2.0]]))
    loss = hidden_mse([t([[[3.0]]])], [t([[[3.0, 4.0]]])], None, projections=[proj])
    assert loss.item() == pytest.approx(2.0)


# ----------------------------------------------------------------------------- attention KL
def test_attention_kl_is_zero_for_identical_attentions():
    att = torch.softmax(torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1)), dim=-1)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    assert attention_kl([att], [att.clone()], mask).item() == pytest.approx(0.0, abs=1e-7)


def test_attention_kl_is_positive_for_different_attentions():
    gen = torch.Generator().manual_seed(2)
    s = torch.softmax(torch.randn(1, 2, 3, 3, generator=gen), dim=-1)
    tt = torch.softmax(torch.randn(1, 2, 3, 3, generator=gen), dim=-1)
    assert attention_kl([s], [tt], None).item() > 0


def test_attention_kl_hand_value_excludes_padded_query_rows():
    # B=1, H=2, L=2, query 1 is padding. Head 0, query 0: teacher [3/4, 1/4] vs student [1/2, 1/2].
    # Head 1, query 0: identical (KL 0); its padded key has probability 0 in both (no nan).
    # Padded query rows differ wildly but are excluded. Mean over (2 heads x 1 valid row).
    teacher = t([[[[0.75, 0.25], [0.0, 1.0]], [[1.0, 0.0], [0.5, 0.5]]]])
    student = t([[[[0.5, 0.5], [1.0, 0.0]], [[1.0, 0.0], [0.9, 0.1]]]])
    loss = attention_kl([student], [teacher], torch.tensor([[1, 0]]))
    assert loss.item() == pytest.approx((KL_34_VS_HALF + 0.0) / 2, rel=1e-5)


def test_attention_kl_rejects_different_head_counts():
    s = torch.full((1, 2, 3, 3), 1 / 3)
    tt = torch.full((1, 4, 3, 3), 1 / 3)
    with pytest.raises(DistillError, match="alpha_attention=0 or"):
        attention_kl([s], [tt], None)


# ----------------------------------------------------------------------------- layer map
def test_default_layer_map_is_uniform_last_to_last():
    assert default_layer_map(3, 6) == [2, 4, 6]
    assert default_layer_map(6, 12) == [2, 4, 6, 8, 10, 12]
    assert default_layer_map(2, 6) == [3, 6]
    assert default_layer_map(6, 6) == [1, 2, 3, 4, 5, 6]


# ----------------------------------------------------------------------------- combiner
N_STUDENT, N_TEACHER, B, L, HEADS, LABELS = 2, 4, 2, 3, 2, 3
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


def _outputs(n_layers, hidden, seed, requires_grad=False, heads=HEADS):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, LABELS, generator=gen).requires_grad_(requires_grad)
    hiddens = tuple(torch.randn(B, L, hidden, generator=gen).requires_grad_(requires_grad) for _ in range(n_layers + 1))
    atts = tuple(
        torch.softmax(torch.randn(B, heads, L, L, generator=gen), dim=-1).requires_grad_(requires_grad)
        for _ in range(n_layers)
    )
    return SequenceClassifierOutput(logits=logits, hidden_states=hiddens, attentions=atts)


def _all_terms_weights():
    return LossWeights(temperature=2.0, alpha_kd=5.0, alpha_hard=2.0, alpha_cos=1.0, alpha_hidden=3.0, alpha_attention=0.5)


def _loss(weights, *, is_regression=False, layer_map=(2, 4), s_dim=4, t_dim=4):
    return DistillationLoss(
        weights,
        is_regression=is_regression,
        layer_map=list(layer_map) if layer_map is not None else None,
        student_hidden_size=s_dim,
        teacher_hidden_size=t_dim,
    )


LABELS_T = torch.tensor([0, 2])


def test_total_is_weighted_sum_of_reported_terms():
    weights = _all_terms_weights()
    total, values = _loss(weights)(_outputs(N_STUDENT, 4, 0), _outputs(N_TEACHER, 4, 1), LABELS_T, MASK)
    assert set(values) == {"kd", "hard", "cos", "hidden", "attention", "loss"}
    expected = (
        5.0 * values["kd"] + 2.0 * values["hard"] + 1.0 * values["cos"] + 3.0 * values["hidden"]
        + 0.5 * values["attention"]
    )
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert values["loss"] == pytest.approx(expected, rel=1e-6)
    assert all(isinstance(v, float) for v in values.values())


def test_combiner_pairs_layers_through_layer_map():
    s, te = _outputs(N_STUDENT, 4, 0), _outputs(N_TEACHER, 4, 1)
    _, values = _loss(_all_terms_weights(), layer_map=(2, 4))(s, te, LABELS_T, MASK)
    # Embeddings with embeddings; student layer i (hidden_states[i+1]) with teacher hidden_states[map[i]].
    hs_pairs = [(0, 0), (1, 2), (2, 4)]
    expected_hidden = hidden_mse([s.hidden_states[i] for i, _ in hs_pairs], [te.hidden_states[j] for _, j in hs_pairs], MASK)
    # Student attention layer i with teacher attention layer map[i] - 1.
    expected_att = attention_kl([s.attentions[0], s.attentions[1]], [te.attentions[1], te.attentions[3]], MASK)
    expected_cos = hidden_cosine(s.hidden_states[-1], te.hidden_states[-1], MASK)
    assert values["hidden"] == pytest.approx(expected_hidden.item(), rel=1e-6)
    assert values["attention"] == pytest.approx(expected_att.item(), rel=1e-6)
    assert values["cos"] == pytest.approx(expected_cos.item(), rel=1e-6)
    assert values["kd"] == pytest.approx(soft_target_kl(s.logits, te.logits, 2.0).item(), rel=1e-6)


def test_default_layer_map_resolved_from_hidden_state_counts():
    loss = _loss(_all_terms_weights(), layer_map=None)
    loss(_outputs(N_STUDENT, 4, 0), _outputs(N_TEACHER, 4, 1), LABELS_T, MASK)
    assert loss.layer_map == [2, 4]


def test_zero_weight_terms_are_skipped():
    weights = LossWeights(alpha_kd=1.0, alpha_hard=1.0, alpha_cos=0.0, alpha_hidden=0.0, alpha_attention=0.0)
    loss = _loss(weights)
    assert not loss.needs_hidden_states and not loss.needs_attentions
    # No hidden states / attentions at all: must not be touched.
    s = SequenceClassifierOutput(logits=t([[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]]))
    te = SequenceClassifierOutput(logits=t([[1.0, 1.0, 0.0], [0.0, 0.0, 3.0]]))
    total, values = loss(s, te, LABELS_T, MASK)
    assert set(values) == {"kd", "hard", "loss"}
    assert total.item() == pytest.approx(values["kd"] + values["hard"], rel=1e-6)


def test_needs_flags_follow_weights():
    loss = _loss(_all_terms_weights())
    assert loss.needs_hidden_states and loss.needs_attentions


def test_regression_combiner_uses_mse_for_kd_and_hard():
    weights = LossWeights(alpha_kd=1.0, alpha_hard=1.0, alpha_cos=0.0)
    s = SequenceClassifierOutput(logits=t([[1.0], [2.0]]))
    te = SequenceClassifierOutput(logits=t([[0.0], [4.0]]))
    total, values = _loss(weights, is_regression=True)(s, te, t([2.0, 2.0]), None)
    assert values["kd"] == pytest.approx(2.5)  # ((1-0)^2 + (2-4)^2) / 2
    assert values["hard"] == pytest.approx(0.5)  # ((1-2)^2 + (2-2)^2) / 2
    assert total.item() == pytest.approx(3.0)


def test_bad_temperature_error_names_the_field():
    with pytest.raises(DistillError, match=r"^distill\.loss\.temperature: must be > 0"):
        _loss(LossWeights(temperature=0.0))


@pytest.mark.parametrize("field", ["alpha_kd", "alpha_cos", "alpha_attention"])
def test_negative_weight_error_names_the_field(field):
    with pytest.raises(DistillError, match=rf"distill\.loss\.{field}: must be >= 0"):
        _loss(LossWeights(**{field: -1.0}))


def test_all_zero_weights_rejected():
    zero = LossWeights(alpha_kd=0.0, alpha_hard=0.0, alpha_cos=0.0, alpha_hidden=0.0, alpha_attention=0.0)
    with pytest.raises(DistillError, match="at least one must be > 0"):
        _loss(zero)


def test_attention_head_mismatch_in_combiner_raises():
    weights = LossWeights(alpha_kd=0.0, alpha_hard=0.0, alpha_cos=0.0, alpha_attention=1.0)
    with pytest.raises(DistillError, match="use alpha_attention=0 or a student with the same head count"):
        _loss(weights)(_outputs(N_STUDENT, 4, 0, heads=2), _outputs(N_TEACHER, 4, 1, heads=4), None, MASK)


def test_layer_map_longer_than_student_raises():
    with pytest.raises(DistillError, match=r"distill\.loss\.layer_map"):
        _loss(_all_terms_weights(), layer_map=(1, 2, 3))(_outputs(N_STUDENT, 4, 0), _outputs(N_TEACHER, 4, 1), LABELS_T, MASK)


def test_projections_only_when_hidden_sizes_differ():
    same = _loss(_all_terms_weights(), s_dim=4, t_dim=4)
    assert same.cos_projection is None and same.hidden_projections is None
    assert list(same.parameters()) == []
    differ = _loss(_all_terms_weights(), s_dim=4, t_dim=6)
    assert isinstance(differ.cos_projection, nn.Linear)
    assert len(differ.hidden_projections) == N_STUDENT + 1  # embeddings + each student layer
    assert differ.hidden_projections[0].weight.shape == (6, 4)
    assert all(p.requires_grad for p in differ.parameters())


def test_total_backprops_into_student_and_projections_not_teacher():
    loss = _loss(_all_terms_weights(), s_dim=4, t_dim=6)
    s = _outputs(N_STUDENT, 4, 0, requires_grad=True)
    te = _outputs(N_TEACHER, 6, 1, requires_grad=True)
    total, _ = loss(s, te, LABELS_T, MASK)
    total.backward()
    assert s.logits.grad is not None and s.logits.grad.abs().sum() > 0
    assert all(h.grad is not None and h.grad.abs().sum() > 0 for h in s.hidden_states)
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in s.attentions)
    assert loss.cos_projection.weight.grad is not None
    assert all(p.weight.grad is not None for p in loss.hidden_projections)
    assert te.logits.grad is None and all(h.grad is None for h in te.hidden_states)


def test_losses_are_float32_under_bf16_autocast():
    loss = _loss(_all_terms_weights(), s_dim=4, t_dim=6)
    s, te = _outputs(N_STUDENT, 4, 0), _outputs(N_TEACHER, 6, 1)
    s_bf16 = SequenceClassifierOutput(
        logits=s.logits.bfloat16(),
        hidden_states=tuple(h.bfloat16() for h in s.hidden_states),
        attentions=tuple(a.bfloat16() for a in s.attentions),
    )
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        total, values = loss(s_bf16, te, LABELS_T, MASK)
    assert total.dtype == torch.float32
    assert math.isfinite(values["loss"])


def test_combiner_runs_on_real_bert_outputs_with_default_map_and_projections():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    common = dict(vocab_size=50, num_attention_heads=2, num_labels=2, attn_implementation="eager")
    teacher = BertForSequenceClassification(BertConfig(hidden_size=16, num_hidden_layers=4, intermediate_size=32, **common)).eval()
    student = BertForSequenceClassification(BertConfig(hidden_size=8, num_hidden_layers=2, intermediate_size=16, **common))
    loss = DistillationLoss(
        _all_terms_weights(), is_regression=False, layer_map=None, student_hidden_size=8, teacher_hidden_size=16,
        n_student_layers=2, n_teacher_layers=4,
    )
    ids = torch.randint(0, 50, (2, 5))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    flags = dict(output_hidden_states=loss.needs_hidden_states, output_attentions=loss.needs_attentions)
    with torch.no_grad():
        t_out = teacher(input_ids=ids, attention_mask=mask, **flags)
    s_out = student(input_ids=ids, attention_mask=mask, **flags)
    total, values = loss(s_out, t_out, torch.tensor([0, 1]), mask)
    total.backward()
    assert loss.layer_map == [2, 4]
    assert all(math.isfinite(v) for v in values.values())
    assert student.classifier.weight.grad is not None
    assert student.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("missing", [(None, None), ()], ids=["none-per-layer (4.x)", "empty (5.x sdpa)"])
def test_attention_term_refuses_outputs_without_attention_maps(missing):
    s = _outputs(N_STUDENT, 4, 0)
    s = SequenceClassifierOutput(logits=s.logits, hidden_states=s.hidden_states, attentions=missing)
    with pytest.raises(DistillError, match='attentions missing: .*attn_implementation="eager"'):
        _loss(_all_terms_weights())(s, _outputs(N_TEACHER, 4, 1), LABELS_T, MASK)


def test_a_classifier_loaded_for_the_attention_term_returns_attention_probabilities(tmp_path):
    """As the distill stage loads its models when alpha_attention > 0 (eager, on 4.57 and 5.x)."""
    from transformers import BertConfig, BertForSequenceClassification

    from distill.data.tasks import get_task
    from distill.models.loading import load_classifier

    BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                             intermediate_size=32)).save_pretrained(tmp_path)
    model = load_classifier(str(tmp_path), get_task("sst2"), attn_implementation="eager").eval()
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        maps = model(input_ids=torch.randint(1, 50, (2, 5)), attention_mask=mask, output_attentions=True).attentions
    assert len(maps) == 3 and all(a.shape == (2, 2, 5, 5) for a in maps)
    torch.testing.assert_close(torch.stack(maps).sum(-1), torch.ones(3, 2, 2, 5))
    assert all(a[1, :, :, 3:].abs().max() == 0 for a in maps)  # padded keys get no attention

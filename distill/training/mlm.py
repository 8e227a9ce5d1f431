"""The general-distillation objective on masked blocks (DistilBERT, Sanh et al. 2019):
alpha_ce * KL over the vocabulary at temperature T + alpha_mlm * masked-LM cross-entropy
+ alpha_cos * hidden cosine (+ hidden MSE, attention KL), built from distill.training.losses' terms; and
perplexity on held-out blocks masked once (distill.data.masking.fixed_mask_batches).

Vocabulary logits are computed only at the positions a term reads (the masked tokens, or every
real token for the KL with kl_positions "all"): with a 30k vocabulary the output layer costs as
much as a 6-layer encoder, so this matters on CPUs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill import DistillError
from distill.training.losses import DistillationLoss, LossWeights, hard_label_loss, soft_target_kl


def split_labels(batch: dict) -> tuple[dict, Tensor]:
    return {k: v for k, v in batch.items() if k != "labels"}, batch["labels"]


def kl_positions(labels: Tensor, attention_mask: Tensor | None, which: str) -> Tensor:
    """[B, L] bool: the tokens the vocabulary KL is taken over (masked ones, or every real one)."""
    if which == "masked":
        return labels != -100
    if attention_mask is None:
        return torch.ones_like(labels, dtype=torch.bool)
    return attention_mask > 0


def vocab_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """soft_target_kl over the vocabulary, averaged over positions ([N, V] rows, one per position)."""
    if student_logits.shape[0] == 0:  # e.g. no token of a small batch drew a mask
        return student_logits.float().sum() * 0.0
    return soft_target_kl(student_logits, teacher_logits, temperature)


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy over the masked tokens (label -100 elsewhere, ignored by cross_entropy)."""
    if labels.numel() == 0 or bool((labels == -100).all()):
        return logits.float().sum() * 0.0
    return hard_label_loss(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), is_regression=False)


def single_mlm_head(model) -> nn.Module | None:
    """The module that maps hidden states to vocabulary logits, when the masked LM is its base
    model plus one head module (BERT's `cls`, RoBERTa's `lm_head`); None otherwise."""
    heads = [module for name, module in model.named_children() if name != model.base_model_prefix]
    return heads[0] if len(heads) == 1 else None


def mlm_forward(model, inputs: dict, positions: Tensor | None, *, hidden: bool = False, attentions: bool = False):
    """(vocabulary logits at `positions` as [N, V] rows, or None; the encoder's outputs)."""
    head = single_mlm_head(model)
    if head is None:  # a head of several modules: compute every logit, keep the rows asked for
        out = model(**inputs, output_hidden_states=hidden, output_attentions=attentions)
        return (out.logits[positions] if positions is not None else None), out
    out = model.base_model(**inputs, output_hidden_states=hidden, output_attentions=attentions)
    return (head(out.last_hidden_state[positions]) if positions is not None else None), out


def representation_loss(cfg, student, teacher) -> DistillationLoss | None:
    """distill.training.losses' hidden cosine / hidden MSE / attention KL terms (with projections when the
    hidden sizes differ); None when their weights are all 0."""
    if not (cfg.alpha_cos or cfg.alpha_hidden or cfg.alpha_attention):
        return None
    weights = LossWeights(temperature=cfg.temperature, alpha_kd=0.0, alpha_hard=0.0, alpha_cos=cfg.alpha_cos,
                          alpha_hidden=cfg.alpha_hidden, alpha_attention=cfg.alpha_attention)
    return DistillationLoss(weights, is_regression=False, layer_map=cfg.layer_map,
                            student_hidden_size=student.config.hidden_size, teacher_hidden_size=teacher.config.hidden_size,
                            n_student_layers=student.config.num_hidden_layers, n_teacher_layers=teacher.config.num_hidden_layers)


def vocabulary_terms(student_rows: Tensor, teacher_rows: Tensor | None, row_labels: Tensor, kl_rows: Tensor,
                     cfg) -> dict[str, Tensor]:
    """The KL ("ce") and MLM ("mlm") terms from logits at the selected positions: `row_labels` are
    their MLM labels (-100: not masked), `kl_rows` marks the rows the KL is taken over."""
    terms: dict[str, Tensor] = {}
    with torch.autocast(device_type=student_rows.device.type, enabled=False):
        if cfg.alpha_ce > 0:
            terms["ce"] = vocab_kl(student_rows[kl_rows], teacher_rows[kl_rows].detach(), cfg.temperature)
        if cfg.alpha_mlm > 0:
            terms["mlm"] = mlm_loss(student_rows, row_labels)
    return terms


def general_distillation_step(teacher, cfg, representation: DistillationLoss | None):
    """step_loss for train_model: teacher forward without gradients, student forward, the
    weighted sum alpha_ce * ce + alpha_mlm * mlm + the representation terms."""
    hidden = representation is not None and representation.needs_hidden_states
    attentions = representation is not None and representation.needs_attentions

    def step(student, batch):
        inputs, labels = split_labels(batch)
        attention_mask = inputs.get("attention_mask")
        kl_at = kl_positions(labels, attention_mask, cfg.kl_positions) if cfg.alpha_ce > 0 else torch.zeros_like(labels, dtype=torch.bool)
        needed = kl_at | (labels != -100) if cfg.alpha_mlm > 0 else kl_at
        with torch.no_grad():
            teacher_rows, teacher_out = mlm_forward(teacher, inputs, needed if cfg.alpha_ce > 0 else None,
                                                    hidden=hidden, attentions=attentions)
        student_rows, student_out = mlm_forward(student, inputs, needed, hidden=hidden, attentions=attentions)
        terms = vocabulary_terms(student_rows, teacher_rows, labels[needed], kl_at[needed], cfg)
        alpha = {"ce": cfg.alpha_ce, "mlm": cfg.alpha_mlm}
        total = sum((alpha[name] * value for name, value in terms.items()), student_rows.new_zeros((), dtype=torch.float32))
        values = {name: float(value.detach()) for name, value in terms.items()}
        if representation is not None:
            rep_total, rep_values = representation(student_out, teacher_out, None, attention_mask)
            total = total + rep_total
            values.update({k: v for k, v in rep_values.items() if k != "loss"})
        return total, values

    return step


def mlm_step(model, batch):
    """step_loss for train_model: the masked-LM objective alone (training an MLM head)."""
    inputs, labels = split_labels(batch)
    masked = labels != -100
    logits, _ = mlm_forward(model, inputs, masked)
    return mlm_loss(logits, labels[masked]), {}


@torch.no_grad()
def masked_perplexity(model, batches: list[dict]) -> dict[str, float]:
    """exp(mean cross-entropy over the masked tokens of all batches)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in batches:
        labels = batch["labels"].to(device)
        inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        masked = labels != -100
        logits, _ = mlm_forward(model, inputs, masked)
        total += F.cross_entropy(logits.float(), labels[masked], reduction="sum").item()
        count += int(masked.sum())
    model.train(was_training)
    if count == 0:
        raise DistillError("corpus.holdout_blocks: no token of the held-out blocks was masked")
    mean = total / count
    return {"perplexity": math.exp(min(mean, 700.0)), "mlm_loss": mean, "masked_tokens": count}

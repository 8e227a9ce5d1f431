"""Architecture facts: which transformers class a model is built or reloaded with (one answer for
every loader) and where its transformer blocks are. Below every loader and technique."""

from __future__ import annotations

import transformers
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, PreTrainedModel

from distill import DistillError


def task_model_class(task) -> type:
    """The Auto class for a task: one tag per token, or one label (or score) per input."""
    return AutoModelForTokenClassification if task.is_token_classification else AutoModelForSequenceClassification


def saved_model_class(config) -> type:
    """The class a saved folder was written from (config.architectures, e.g. BertForTokenClassification);
    a sequence classifier when the config names none."""
    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if isinstance(cls, type) and issubclass(cls, PreTrainedModel):
            return cls
    return AutoModelForSequenceClassification


def encoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The transformer block list (BERT `bert.encoder.layer`, DistilBERT `distilbert.transformer.layer`,
    RoBERTa ...): the ModuleList whose length is the config's layer count."""
    count = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == count and name.endswith("layer"):
            return name, module
    raise DistillError(f"{type(model).__name__}: cannot find its list of {count} transformer layers")

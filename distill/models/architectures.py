"""Which transformers class a model is built or reloaded with: one answer for every loader. Where
a family keeps its blocks and layers is the architecture layer's (distill.models.families)."""

from __future__ import annotations

import transformers
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, PreTrainedModel


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

"""Evaluate any classifier the same way: batched prediction gathered across processes, then the
task's metrics from the offline `evaluate` module."""

from __future__ import annotations

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from distill.metrics import compute_metrics, predictions_from_logits
from distill.tasks import TaskSpec


@torch.no_grad()
def predict_logits(model, dataset, collator, batch_size: int, accelerator: Accelerator) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels for every example exactly once (gather_for_metrics drops the padding
    that makes the last batch even across processes)."""
    loader = accelerator.prepare_data_loader(DataLoader(dataset, batch_size=batch_size, collate_fn=collator))
    # Any callable returning `.logits` works (an ONNX Runtime model is not an nn.Module).
    is_module = isinstance(model, torch.nn.Module)
    was_training = is_module and model.training
    if is_module:
        model.eval()
    all_logits, all_labels = [], []
    for batch in loader:
        labels = batch.pop("labels")
        # No autocast: a model is scored in its own dtype, as its saved weights run for a user
        # (and as `distill eval` scores them).
        logits = torch.as_tensor(model(**batch).logits)
        logits, labels = accelerator.gather_for_metrics((logits.float(), labels))
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
    if is_module:
        model.train(was_training)
    return torch.cat(all_logits).numpy(), torch.cat(all_labels).numpy()


def evaluate_model(model, dataset, task: TaskSpec, collator, batch_size: int, accelerator: Accelerator) -> dict[str, float]:
    logits, labels = predict_logits(model, dataset, collator, batch_size, accelerator)
    predictions = predictions_from_logits(logits, task.is_regression)
    return compute_metrics(task.name, predictions, labels, task.is_regression)

"""Evaluate any classifier the same way: batched prediction gathered across processes, then the
task's metrics (the offline `evaluate` GLUE module, or seqeval for token classification)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from distill.data.metrics import compute_metrics, predictions_from_logits, token_metrics
from distill.data.tasks import IGNORE_INDEX, TaskSpec


def scoring_order(dataset, model) -> np.ndarray | None:
    """Example indices from the shortest to the longest (stable), so that each batch pads to about
    its own length: row order pads most GLUE dev batches to their longest sentence and costs about
    twice the forwards. Across processes too: the gathered batches come back in this order.
    None (row order) for quantized models: ONNX Runtime's dynamic int8 quantizes each batch's
    activations with that batch's range, and bitsandbytes' int8 picks outlier columns per batch,
    so other batches would change their scores."""
    quantized = getattr(getattr(model, "config", None), "quantization_config", None) is not None  # bitsandbytes
    if not isinstance(model, torch.nn.Module) or quantized or "input_ids" not in dataset.column_names:
        return None
    return np.argsort([len(ids) for ids in dataset["input_ids"]], kind="stable")


def _gathered_batches(model, dataset, collator, batch_size: int, accelerator: Accelerator,
                      order: np.ndarray | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(logits, labels) of every example exactly once, in `order` (gather_for_metrics drops the
    padding that makes the last batch even across processes)."""
    source = dataset if order is None else dataset.select(order, keep_in_memory=True)
    loader = accelerator.prepare_data_loader(DataLoader(source, batch_size=batch_size, collate_fn=collator))
    # Any callable returning `.logits` works (an ONNX Runtime model is not an nn.Module).
    is_module = isinstance(model, torch.nn.Module)
    was_training = is_module and model.training
    if is_module:
        model.eval()
    try:
        for batch in loader:
            # no_grad, not inference_mode: a buffer written during a periodic evaluation (QAT's
            # activation ranges, a lazily built cache) must stay usable when training resumes.
            with torch.no_grad():
                labels = batch.pop("labels")
                # No autocast: a model is scored in its own dtype, as its saved weights run for a user
                # (and as `distill eval` scores them).
                logits = torch.as_tensor(model(**batch).logits).float()
            if logits.dim() == 3:  # one row per token: processes' batches may differ in length
                logits = accelerator.pad_across_processes(logits, dim=1)
                labels = accelerator.pad_across_processes(labels, dim=1, pad_index=IGNORE_INDEX)
            logits, labels = accelerator.gather_for_metrics((logits, labels))
            yield logits.cpu(), labels.cpu()
    finally:
        if is_module:
            model.train(was_training)


def predict_logits(model, dataset, collator, batch_size: int, accelerator: Accelerator) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels for every example, in dataset order (one label per input)."""
    order = scoring_order(dataset, model)
    logits, labels = zip(*_gathered_batches(model, dataset, collator, batch_size, accelerator, order))
    logits, labels = torch.cat(logits).numpy(), torch.cat(labels).numpy()
    if order is not None:  # back to dataset order: metrics and cached teacher logits read it so
        position = np.argsort(order)
        logits, labels = logits[position], labels[position]
    return logits, labels


def predict_tags(model, dataset, collator, batch_size: int, accelerator: Accelerator) -> tuple[list[list[int]], list[list[int]]]:
    """Predicted and gold tag ids of every scored word (its first sub-token), sentence by sentence."""
    predicted, gold = [], []
    order = scoring_order(dataset, model)
    for logits, labels in _gathered_batches(model, dataset, collator, batch_size, accelerator, order):
        choices = logits.argmax(dim=-1)
        for row_choices, row_labels in zip(choices, labels):
            scored = row_labels != IGNORE_INDEX
            predicted.append(row_choices[scored].tolist())
            gold.append(row_labels[scored].tolist())
    if order is not None:  # back to dataset order (seqeval's scores do not depend on it, but callers may)
        position = np.argsort(order)
        predicted, gold = [predicted[i] for i in position], [gold[i] for i in position]
    return predicted, gold


def evaluate_model(model, dataset, task: TaskSpec, collator, batch_size: int, accelerator: Accelerator) -> dict[str, float]:
    if task.is_token_classification:
        predicted, gold = predict_tags(model, dataset, collator, batch_size, accelerator)
        names = task.label_names
        return token_metrics([[names[i] for i in row] for row in predicted], [[names[i] for i in row] for row in gold],
                             scheme=task.token_format.scheme)
    logits, labels = predict_logits(model, dataset, collator, batch_size, accelerator)
    predictions = predictions_from_logits(logits, task.is_regression)
    return compute_metrics(task.name, predictions, labels, task.is_regression)

"""Answer text from a question-answering model's start and end logits, on plain numpy arrays, so that
torch models and ONNX Runtime sessions share it.

Per window: the `n_best` highest start and end logits among the context's tokens, every pair with the
end at or after the start and at most `max_answer_length` tokens long, scored start + end logit (as
BERT's run_squad.py and the transformers example scripts do). Per example: the best span over all of
its windows, sliced out of the context by the window's offsets. Written here because transformers 5
dropped the question-answering pipeline, the only library home of this step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from distill import DistillError


def extract_answers(
    start_logits,
    end_logits,
    features: Mapping[str, Sequence],
    examples: Mapping[str, Sequence],
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[str, str]:
    """{example id: answer text} for the windows of distill.data.qa.qa_features(..., for_eval=True).

    start_logits, end_logits: [windows, length] arrays (rows padded past a window's end are ignored);
    features: the windows' "example_id" and "offset_mapping" (a dict of lists or a datasets.Dataset);
    examples: their "id" and "context". An example whose windows hold no valid span gets "".
    """
    if n_best < 1 or max_answer_length < 1:
        raise DistillError(f"n_best and max_answer_length must be at least 1, got {n_best} and {max_answer_length}")
    starts, ends = np.asarray(start_logits), np.asarray(end_logits)
    example_ids, offset_mappings = features["example_id"], features["offset_mapping"]
    if starts.ndim != 2 or starts.shape != ends.shape or len(starts) != len(example_ids):
        raise DistillError(
            f"start and end logits must be [windows, length] arrays for the {len(example_ids)} windows, "
            f"got shapes {starts.shape} and {ends.shape}"
        )
    contexts = dict(zip(examples["id"], examples["context"]))
    best: dict[str, tuple[float, int, int] | None] = {}
    for row, (example_id, offsets) in enumerate(zip(example_ids, offset_mappings)):
        if example_id not in contexts:
            raise DistillError(f"window {row} belongs to example {example_id!r}, which is not among the examples")
        span = best_span(starts[row], ends[row], offsets, n_best=n_best, max_answer_length=max_answer_length)
        kept = best.get(example_id)
        if span is not None and (kept is None or span[0] > kept[0]):
            best[example_id] = span
        else:
            best.setdefault(example_id, None)
    # .strip(): a byte-level BPE token's offsets may include the space before it.
    return {
        example_id: "" if span is None else contexts[example_id][span[1] : span[2]].strip() for example_id, span in best.items()
    }


def best_span(
    start_logits: np.ndarray, end_logits: np.ndarray, offsets: Sequence, *, n_best: int = 20, max_answer_length: int = 30
) -> tuple[float, int, int] | None:
    """(score, first character, end character) of one window's best context span, or None if it has none.
    `offsets`: per token (start, end) characters, with (-1, -1) or None off the context."""
    spans = np.array([(-1, -1) if span is None else span for span in offsets], dtype=np.int64).reshape(-1, 2)
    length = min(len(spans), len(start_logits))
    context = np.flatnonzero(spans[:length, 0] >= 0)
    if context.size == 0:
        return None
    start_scores = np.asarray(start_logits, dtype=np.float64)[context]
    end_scores = np.asarray(end_logits, dtype=np.float64)[context]
    top_starts = np.argsort(-start_scores, kind="stable")[:n_best]
    top_ends = np.argsort(-end_scores, kind="stable")[:n_best]
    first_tokens, last_tokens = context[top_starts], context[top_ends]
    widths = last_tokens[None, :] - first_tokens[:, None] + 1
    scores = np.where(
        (widths >= 1) & (widths <= max_answer_length), start_scores[top_starts][:, None] + end_scores[top_ends][None, :], -np.inf
    )
    i, j = np.unravel_index(np.argmax(scores), scores.shape)
    if not np.isfinite(scores[i, j]):
        return None
    return float(scores[i, j]), int(spans[first_tokens[i], 0]), int(spans[last_tokens[j], 1])

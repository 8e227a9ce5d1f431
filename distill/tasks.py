"""The GLUE tasks distill knows, and custom tasks built from user files.

One registry, so that data loading, model heads (num_labels) and metrics all read the
same facts about a task instead of each keeping its own copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from distill.errors import DistillError

CLASSIFICATION_METRICS = ("accuracy",)
REGRESSION_METRICS = ("pearson", "spearmanr")
CUSTOM_CLASSIFICATION_METRICS = ("accuracy", "f1_macro")  # what metrics' custom_classification reports


@dataclass(frozen=True)
class TableColumns:
    """Which columns of a local table file hold a task's text fields and its label.

    GLUE TSVs name their columns differently from the Hub (MRPC: "#1 String", STS-B: "score"),
    and CoLA has no header row at all, so each task says where its data lives.
    """

    text_columns: tuple[str, ...]  # same order as TaskSpec.text_fields
    label_column: str
    headerless_columns: tuple[str, ...] | None = None  # column names when the file has no header row


@dataclass(frozen=True)
class TaskSpec:
    """Everything distill needs to know about one sequence-classification task."""

    name: str
    text_fields: tuple[str, ...]  # column names as in the Hub's nyu-mll/glue
    label_names: tuple[str, ...] | None  # None: regression; order = Hub ClassLabel order
    metric_names: tuple[str, ...]
    primary_metric: str
    hub_dataset: tuple[str, str] | None  # None: custom task, files only
    local_format: TableColumns | None  # layout of the task's local files (GLUE TSV or custom file)
    label_range: tuple[float, float] | None = None  # allowed regression targets, inclusive

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)


def _glue(name, text_fields, label_names, metrics, primary, local_format, label_range=None) -> TaskSpec:
    return TaskSpec(name, text_fields, label_names, metrics, primary, ("nyu-mll/glue", name), local_format,
                    label_range)


_PAIR = ("sentence1", "sentence2")
_NLI_LABELS = ("entailment", "not_entailment")

TASKS: dict[str, TaskSpec] = {
    task.name: task
    for task in (
        _glue("cola", ("sentence",), ("unacceptable", "acceptable"), ("matthews_correlation",),
              "matthews_correlation",
              TableColumns(("sentence",), "label", headerless_columns=("source", "label", "mark", "sentence"))),
        _glue("mrpc", _PAIR, ("not_equivalent", "equivalent"), ("f1", "accuracy"), "f1",
              TableColumns(("#1 String", "#2 String"), "Quality")),
        _glue("qnli", ("question", "sentence"), _NLI_LABELS, CLASSIFICATION_METRICS, "accuracy",
              TableColumns(("question", "sentence"), "label")),
        _glue("rte", _PAIR, _NLI_LABELS, CLASSIFICATION_METRICS, "accuracy", TableColumns(_PAIR, "label")),
        _glue("sst2", ("sentence",), ("negative", "positive"), CLASSIFICATION_METRICS, "accuracy",
              TableColumns(("sentence",), "label")),
        _glue("stsb", _PAIR, None, REGRESSION_METRICS, "pearson", TableColumns(_PAIR, "score"),
              label_range=(0.0, 5.0)),
        _glue("wnli", _PAIR, ("not_entailment", "entailment"), CLASSIFICATION_METRICS, "accuracy",
              TableColumns(_PAIR, "label")),
    )
}


def get_task(name: str) -> TaskSpec:
    """Look up a GLUE task by its lowercase Hub config name."""
    try:
        return TASKS[name]
    except KeyError:
        raise DistillError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}") from None


def custom_task(
    name: str,
    text_fields: tuple[str, ...] | list[str],
    label_names: tuple[str, ...] | list[str] | None,
    *,
    label_column: str = "label",
    metric_names: tuple[str, ...] | list[str] | None = None,
    primary_metric: str | None = None,
    label_range: tuple[float, float] | None = None,
) -> TaskSpec:
    """A task read from user CSV/TSV/JSON files whose columns are text_fields and label_column.

    label_names None means regression. Checks everything here so that a bad recipe fails
    before any data is read.
    """
    if not isinstance(name, str) or not name.strip():
        raise DistillError("task name must be a non-empty string")
    if name.lower().replace("-", "") in TASKS:  # "SST-2" would pick up sst2's metric config
        raise DistillError(f"custom task name {name!r} clashes with the GLUE task of that name")
    text_fields = tuple(text_fields)
    if not 1 <= len(text_fields) <= 2 or not all(isinstance(f, str) and f for f in text_fields):
        raise DistillError(f"task {name!r}: text_fields must be one or two column names, got {list(text_fields)}")
    if len(set(text_fields)) != len(text_fields):
        raise DistillError(f"task {name!r}: text_fields repeat a column: {list(text_fields)}")
    if not isinstance(label_column, str) or not label_column or label_column in text_fields:
        raise DistillError(f"task {name!r}: label_column must be a column name not among text_fields")
    if label_names is not None:
        label_names = tuple(label_names)
        if len(label_names) < 2 or not all(isinstance(n, str) and n for n in label_names):
            raise DistillError(f"task {name!r}: label_names must be two or more non-empty strings")
        if len(set(label_names)) != len(label_names):
            raise DistillError(f"task {name!r}: label_names repeat a name: {list(label_names)}")
        if label_range is not None:
            raise DistillError(f"task {name!r}: label_range applies only to regression (label_names: null)")
    if label_range is not None:
        low, high = label_range
        if not low < high:
            raise DistillError(f"task {name!r}: label_range must be [low, high] with low < high")
        label_range = (float(low), float(high))
    default_metrics = CUSTOM_CLASSIFICATION_METRICS if label_names is not None else REGRESSION_METRICS
    metric_names = tuple(metric_names) if metric_names else default_metrics
    primary_metric = primary_metric or metric_names[0]
    if primary_metric not in metric_names:
        raise DistillError(f"task {name!r}: primary_metric {primary_metric!r} is not in metric_names {list(metric_names)}")
    return TaskSpec(name, text_fields, label_names, metric_names, primary_metric, None,
                    TableColumns(text_fields, label_column), label_range)

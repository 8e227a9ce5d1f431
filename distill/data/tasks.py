"""The tasks distill knows (GLUE, WNUT-17, SQuAD), and custom tasks built from user files.

One registry, so that data loading, model heads (num_labels) and metrics all read the
same facts about a task instead of each keeping its own copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from distill import DistillError

CLASSIFICATION_METRICS = ("accuracy",)
REGRESSION_METRICS = ("pearson", "spearmanr")
CUSTOM_CLASSIFICATION_METRICS = ("accuracy", "f1_macro")  # what metrics' custom_classification reports
# seqeval's entity-level micro scores (the task metric), plus per-token accuracy beside them;
# per-type F1 ("f1_<type>") is reported too but not listed: the types depend on the labels.
TOKEN_METRICS = ("f1", "precision", "recall", "accuracy")
TAG_SCHEMES = ("BIO", "none")
QA_METRICS = ("exact_match", "f1")  # the official SQuAD v1.1 scores, x100
IGNORE_INDEX = -100  # the label of a token without one (later sub-tokens, special tokens, padding): PyTorch's convention


@dataclass(frozen=True)
class TableColumns:
    """Which columns of a local table file hold a task's text fields and its label.

    GLUE TSVs name their columns differently from the Hub (MRPC: "#1 String", STS-B: "score"),
    and CoLA has no header row at all, so each task says where its data lives.
    """

    text_columns: tuple[str, ...]  # same order as TaskSpec.text_fields
    label_column: str
    headerless_columns: tuple[str, ...] | None = None  # column names when the file has no header row


GLUE_FILES = (("train", "train.tsv"), ("validation", "dev.tsv"))  # GLUE's test.tsv is unlabelled


@dataclass(frozen=True)
class TokenColumns:
    """Where a token-classification task's words and tags live: CoNLL files (one `word<TAB>tag` line
    per word, a blank line between sentences) hold them in columns; JSON records name two list fields."""

    tokens_field: str = "tokens"
    tags_field: str = "tags"
    scheme: str = "BIO"  # "BIO": an I- tag must continue an entity of its type; "none": tags are plain classes


@dataclass(frozen=True)
class AnswerSpans:
    """Extractive question answering: each example is a question and a context, its answers are
    character spans of the context (SQuAD v1.1: every question has at least one). Rows have the Hub's
    flat schema: id, title, context, question, answers {text: [...], answer_start: [...]}."""

    # Offline, a built-in task may split ONE local file by article: (split, first, stop) article ranges.
    local_articles: tuple[tuple[str, int, int], ...] = ()
    # Said by reports and cards when the local files are read: what the local splits are, and are not.
    local_split_note: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    """Everything distill needs to know about one task: one label (or score) per input, one tag per word,
    or an answer span per question."""

    name: str
    text_fields: tuple[str, ...]  # column names as in the Hub's nyu-mll/glue
    label_names: tuple[str, ...] | None  # None: regression; order = Hub ClassLabel order
    metric_names: tuple[str, ...]
    primary_metric: str
    hub_dataset: tuple[str, str] | None  # None: custom task, files only
    local_format: TableColumns | None  # layout of the task's local files (GLUE TSV or custom file)
    label_range: tuple[float, float] | None = None  # allowed regression targets, inclusive
    token_format: TokenColumns | None = None  # set: token classification (one tag per word)
    # The Hub revision to read: leondz/wnut_17's main branch holds only a loading script, which
    # datasets >= 4 no longer runs; the Hub's own parquet conversion lives on this branch.
    hub_revision: str | None = None
    local_files: tuple[tuple[str, str], ...] = GLUE_FILES  # (split, file in <data_dir>/<task>/); a tuple keeps the spec hashable
    answer_spans: AnswerSpans | None = None  # set: extractive question answering

    @property
    def is_regression(self) -> bool:
        return self.label_names is None and self.answer_spans is None

    @property
    def is_token_classification(self) -> bool:
        return self.token_format is not None

    @property
    def is_question_answering(self) -> bool:
        return self.answer_spans is not None

    @property
    def kind(self) -> str:
        """As `data.task_type` names it."""
        if self.is_question_answering:
            return "question_answering"
        return "token_classification" if self.is_token_classification else "sequence_classification"

    @property
    def splits(self) -> tuple[str, ...]:
        """The labelled splits the task's local files hold (GLUE: train and validation)."""
        return tuple(split for split, _ in self.local_files)

    @property
    def entity_types(self) -> tuple[str, ...]:
        """The entity types of a BIO tag set (B-person -> person), in label order."""
        types = [name[2:] for name in self.label_names or () if name[:2] in ("B-", "I-")]
        return tuple(dict.fromkeys(types))

    @property
    def num_labels(self) -> int:
        if self.is_question_answering:
            return 2  # a start and an end logit per token, as AutoModelForQuestionAnswering's qa_outputs
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


# WNUT-17 emerging entities: the Hub's `wnut_17` ClassLabel order, so local and Hub data get the same ids.
WNUT17_TAGS = ("O", "B-corporation", "I-corporation", "B-creative-work", "I-creative-work", "B-group", "I-group",
               "B-location", "I-location", "B-person", "I-person", "B-product", "I-product")
TASKS["wnut17"] = TaskSpec(
    "wnut17", ("tokens",), WNUT17_TAGS, TOKEN_METRICS, "f1", ("leondz/wnut_17", None), None,
    token_format=TokenColumns("tokens", "ner_tags"),  # the Hub's field names
    hub_revision="refs/convert/parquet",
    local_files=(("train", "train.conll"), ("validation", "dev.conll"), ("test", "test.conll")),
)


# SQuAD v1.1. Offline only the dev file exists (see shared/data/README.md): it is split by article,
# so that no passage is both trained on and scored.
SQUAD_LOCAL_ARTICLES = (("train", 0, 38), ("validation", 38, 48))
SQUAD_LOCAL_NOTE = ("offline split of the SQuAD v1.1 dev set by article: trained on articles 0-37 (8,582 questions), "
                    "scored on articles 38-47 (1,988 questions); this is not the published dev set, so the scores "
                    "are not comparable with published SQuAD results")
TASKS["squad"] = TaskSpec(
    "squad", ("question", "context"), None, QA_METRICS, "f1", ("rajpurkar/squad", None), None,
    local_files=(("train", "dev-v1.1.json"), ("validation", "dev-v1.1.json")),
    answer_spans=AnswerSpans(SQUAD_LOCAL_ARTICLES, SQUAD_LOCAL_NOTE),
)


def get_task(name: str) -> TaskSpec:
    """Look up a built-in task by its lowercase name (GLUE's Hub config names, wnut17, squad)."""
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


def custom_token_task(
    name: str,
    label_names: tuple[str, ...] | list[str],
    *,
    tokens_field: str = "tokens",
    tags_field: str = "tags",
    scheme: str = "BIO",
) -> TaskSpec:
    """A token-classification task read from user CoNLL (.conll/.txt) or JSON Lines files.

    Checked here, so that a bad recipe fails before any data is read: named labels, and under the
    BIO scheme an `O` tag and only `B-`/`I-` tags beside it.
    """
    if not isinstance(name, str) or not name.strip():
        raise DistillError("task name must be a non-empty string")
    if name.lower().replace("-", "") in TASKS:
        raise DistillError(f"custom task name {name!r} clashes with the built-in task of that name")
    if not label_names or len(label_names) < 2 or not all(isinstance(n, str) and n for n in label_names):
        raise DistillError(f"task {name!r}: data.label_names must list two or more tags")
    label_names = tuple(label_names)
    if len(set(label_names)) != len(label_names):
        raise DistillError(f"task {name!r}: data.label_names repeat a tag: {list(label_names)}")
    if scheme not in TAG_SCHEMES:
        raise DistillError(f"task {name!r}: data.tag_scheme must be one of {', '.join(TAG_SCHEMES)}, got {scheme!r}")
    if scheme == "BIO":
        odd = [n for n in label_names if n != "O" and n[:2] not in ("B-", "I-")]
        if "O" not in label_names or odd:
            raise DistillError(f"task {name!r}: data.tag_scheme BIO needs an 'O' tag and B-/I- tags only"
                               + (f" (found {odd[0]!r})" if odd else "") + "; use tag_scheme: none for plain tags")
        missing_b = sorted({n[2:] for n in label_names if n.startswith("I-")} - {n[2:] for n in label_names if n.startswith("B-")})
        if missing_b:
            raise DistillError(f"task {name!r}: data.label_names has I-{missing_b[0]} but no B-{missing_b[0]}")
    if tokens_field == tags_field:
        raise DistillError(f"task {name!r}: data.tokens_field and data.label_field must differ")
    return TaskSpec(name, (tokens_field,), label_names, TOKEN_METRICS, "f1", None, None,
                    token_format=TokenColumns(tokens_field, tags_field, scheme))


def custom_qa_task(name: str) -> TaskSpec:
    """An extractive question-answering task read from user SQuAD JSON or JSON Lines files
    (distill/data/qa_files.py): its fields are SQuAD's, so only the name is the user's."""
    if not isinstance(name, str) or not name.strip():
        raise DistillError("task name must be a non-empty string")
    if name.lower().replace("-", "") in TASKS:
        raise DistillError(f"custom task name {name!r} clashes with the built-in task of that name")
    return TaskSpec(name, ("question", "context"), None, QA_METRICS, "f1", None, None, answer_spans=AnswerSpans())


_TOKEN_FIELDS = ("tokens_field", "tags_field", "tag_scheme", "label_all_subtokens")


def task_of(recipe) -> TaskSpec:
    """The task a recipe (distill.recipe.Recipe) names: built in, or custom from its data section.
    Here rather than in distill/stages/pipeline.py so that early checks can resolve it without heavy imports."""
    data = recipe.data
    if recipe.task in TASKS:
        task = get_task(recipe.task)
    elif data.task_type == "token_classification":
        if not (data.train_file and data.validation_file and data.label_names):
            raise DistillError(f"task: '{recipe.task}' is a custom token-classification task: it needs data.train_file, "
                               "data.validation_file (.conll or .jsonl) and data.label_names (its tags)")
        task = custom_token_task(recipe.task, data.label_names, tokens_field=data.tokens_field or "tokens",
                                 tags_field=data.tags_field or "tags", scheme=data.tag_scheme or "BIO")
    elif data.task_type == "question_answering":
        if not (data.train_file and data.validation_file):
            raise DistillError(f"task: '{recipe.task}' is a custom question-answering task: it needs data.train_file and "
                               "data.validation_file (SQuAD JSON, or JSON Lines rows with id, question, context, answers)")
        task = custom_qa_task(recipe.task)
    elif not (data.train_file and data.validation_file and data.text_fields):
        raise DistillError(
            f"task: '{recipe.task}' is not a built-in task ({', '.join(sorted(TASKS))}); a custom task needs "
            "data.train_file, data.validation_file and data.text_fields (or data.task_type: token_classification "
            "or question_answering)"
        )
    else:
        task = custom_task(recipe.task, data.text_fields, data.label_names, label_column=data.label_field)
    if data.task_type is not None and data.task_type != task.kind:
        raise DistillError(f"data.task_type: {data.task_type}, but task {task.name} is {task.kind.replace('_', ' ')}")
    if task.is_question_answering and (data.text_fields or data.label_names):
        field = "text_fields" if data.text_fields else "label_names"
        raise DistillError(f"data.{field}: question-answering files have SQuAD's fields (id, title, context, question, "
                           f"answers); task {task.name} takes no {field}")
    if not task.is_token_classification and (stray := [f for f in _TOKEN_FIELDS if getattr(data, f) is not None]):
        raise DistillError(f"data.{stray[0]}: applies to token classification only; task {task.name} is not one")
    if recipe.task in TASKS and task.is_token_classification and (data.tokens_field or data.tags_field or data.tag_scheme):
        raise DistillError(f"data.tokens_field/tags_field/tag_scheme: task {task.name} is built in and has its own")
    return task

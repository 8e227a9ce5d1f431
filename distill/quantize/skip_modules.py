"""Which Linear layers stay unquantized (bitsandbytes, QAT): every Linear at or under a named module."""

from __future__ import annotations

from collections.abc import Sequence

from distill import DistillError

# Module names: every Linear at or under a module of that name (a whole run of path components:
# "pooler" and "bert.pooler" both cover bert.pooler.dense) stays unquantized (bnb, QAT). By default
# the task head, as the architecture layer names it per family; these for a family it lacks.
DEFAULT_SKIP_MODULES = ("classifier", "pooler")


def default_skip_modules(model) -> tuple[str, ...]:
    from distill.models.families import BY_MODEL_TYPE, model_type_of

    family = BY_MODEL_TYPE.get(model_type_of(model))
    return family.head_modules if family else DEFAULT_SKIP_MODULES


def skipped_linear_paths(model, names: Sequence[str] | None, field: str = "skip_modules") -> list[str]:
    """The full dotted paths of the model's Linear layers that `names` cover; None: those of
    the family's task head (default_skip_modules) the model has. A name given that covers no layer is an error."""
    from torch import nn

    linears = [path for path, module in model.named_modules() if isinstance(module, nn.Linear)]
    if names is None:
        names = [name for name in default_skip_modules(model) if any(f".{name}." in f".{path}." for path in linears)]
    for name in names:
        if not any(f".{name}." in f".{path}." for path in linears):
            raise DistillError(f"{field}: '{name}' names no Linear layer of {type(model).__name__}")
    return [path for path in linears if any(f".{name}." in f".{path}." for name in names)]

"""Reading a recipe: YAML, dotted overrides, validation; every problem becomes one DistillError
line that names the file and the field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from distill import DistillError
from distill.data.textfiles import read_text
from distill.recipe.schema import DEFAULT_STAGE_NAMES, Recipe


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override and validate a recipe; every problem becomes one DistillError line."""
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"{path}: recipe file not found")
    try:
        raw = yaml.safe_load(read_text(path))  # not UTF-8: one line with the byte offset
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise DistillError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise DistillError(f"{path}: a recipe is a YAML mapping (name, task, stages, ...)")
    for override in overrides:
        apply_override(raw, override, source=path)
    return validate_recipe(raw, source=path)


def validate_recipe(raw: dict[str, Any], source: str | Path = "<recipe>") -> Recipe:
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        problems = [_describe(e) for e in err.errors()]
        raise DistillError(f"{source}: " + "; ".join(problems)) from None


def _describe(error: dict[str, Any]) -> str:
    loc = _field_path(error["loc"])
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
        # Model-level validators already name their field inside the message.
        if loc and message.split(":")[0].startswith(("stages[",)):
            loc = ""
    if error["type"] == "extra_forbidden":
        message = "unknown key (check the spelling; every field is listed in docs/recipes.md)"
    elif error["type"] == "missing":
        message = "required field is missing"
    elif "input" in error and not isinstance(error["input"], (dict, list)):
        message = f"{message} (got {error['input']!r})"
    return f"{loc}: {message}" if loc else message


def _field_path(loc: tuple[Any, ...]) -> str:
    """('stages', 1, 'distill', 'loss', 'temperature') -> 'stages[1].loss.temperature'."""
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
        elif i >= 2 and loc[i - 2] == "stages" and isinstance(loc[i - 1], int):
            continue  # the stage-kind tag pydantic inserts for the discriminated union
        else:
            parts.append(str(item))
    return ".".join(parts)


def apply_override(raw: dict[str, Any], override: str, source: str | Path = "<recipe>") -> None:
    """Apply `a.b.c=value` to the raw recipe dict. Stages may be named by index or by name:
    `stages.student.train.epochs=2` and `stages.1.train.epochs=2` are the same."""
    if "=" not in override:
        raise DistillError(f"override '{override}': expected key.path=value")
    key, _, text = override.partition("=")
    try:
        value = yaml.safe_load(text) if text != "" else None
    except yaml.YAMLError:
        value = text
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise DistillError(f"override '{override}': empty key")
    node: Any = raw
    for depth, part in enumerate(keys[:-1]):
        node = _child(node, part, keys[: depth + 1], override, create=True)
    last = keys[-1]
    if isinstance(node, list):
        index = _list_index(node, last, override)
        node[index] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise DistillError(f"override '{override}': '{'.'.join(keys[:-1])}' is not a mapping")


def _child(node: Any, part: str, path: list[str], override: str, create: bool) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, part, override)]
    if not isinstance(node, dict):
        raise DistillError(f"override '{override}': '{'.'.join(path[:-1])}' is not a mapping")
    if part not in node or node[part] is None:
        if not create:
            raise DistillError(f"override '{override}': no field '{'.'.join(path)}'")
        node[part] = {}
    return node[part]


def _list_index(items: list[Any], part: str, override: str) -> int:
    if part.lstrip("-").isdigit():
        index = int(part)
        if not -len(items) <= index < len(items):
            raise DistillError(f"override '{override}': index {index} out of range (0..{len(items) - 1})")
        return index
    for i, item in enumerate(items):  # stages by name
        if isinstance(item, dict) and item.get("name", DEFAULT_STAGE_NAMES.get(item.get("kind"))) == part:
            return i
    raise DistillError(f"override '{override}': no list item named '{part}'")


def dump_recipe(recipe: Recipe, path: Path) -> None:
    path.write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False), encoding="utf-8")

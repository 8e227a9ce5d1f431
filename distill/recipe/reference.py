"""The recipe reference: a Markdown page of every recipe key, generated from the pydantic schema in
this package so that it cannot drift from it (tests/recipe/test_reference.py checks docs/recipes.md).
Types, defaults and constraints come from the models; a field's meaning from its `Field(description=...)`,
else from the source comments on and directly above its line; a section's text from the class docstring.

    python -m distill.recipe.reference docs/recipes.md   # rewrite the page (no argument: print it)
"""

import argparse
import ast
import inspect
import io
import json
import re
import sys
import textwrap
import tokenize
import typing
from functools import cache
from pathlib import Path
from types import NoneType, UnionType

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from distill.recipe.schema import Recipe, Stage

COMMAND = "python -m distill.recipe.reference docs/recipes.md"
# Stage model -> its kind, in the order of the Stage union.
KINDS = {m: typing.get_args(m.model_fields["kind"].annotation)[0] for m in typing.get_args(typing.get_args(Stage)[0])}
LIMITS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "min_length": "min length", "max_length": "max length"}


def link(model: type[BaseModel]) -> str:
    title = KINDS.get(model, model.__name__)
    return f"[{title}](#{title.lower()})"


@cache
def source_comments(cls: type) -> dict[str, str]:
    """Field name -> the comment lines directly above its definition in `cls`'s body, then the one trailing it."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    own_line = {n for n in comments if lines[n - 1].lstrip().startswith("#")}
    found = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above, n = [], node.lineno - 1
            while n in own_line:
                above.insert(0, comments[n])
                n -= 1
            trailing = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments and n not in own_line]
            found[node.target.id] = " ".join(above + trailing)
    return found


def limits(metadata) -> str:
    found = [f"{word} {getattr(m, key)}" for m in metadata for key, word in LIMITS.items() if getattr(m, key, None) is not None]
    return ", ".join(found + [f"matches `{m.pattern}`" for m in metadata if getattr(m, "pattern", None)])


def type_name(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is None or tp is NoneType:
        return "None"
    if origin is typing.Annotated:
        inner = [m for a in args[1:] for m in (a.metadata if isinstance(a, FieldInfo) else [a])]
        return " ".join(filter(None, [type_name(args[0]), limits(inner)]))
    if origin in (typing.Union, UnionType):
        return "[Stage](#stages)" if all(a in KINDS for a in args) else " | ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return link(tp)
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]"
    return getattr(tp, "__name__", str(tp).removeprefix("typing."))


def cells(model: type[BaseModel], name: str, field: FieldInfo) -> list[str]:
    """field | type (constraints) | default | meaning (the description, else the comment where the field is defined)."""
    typ = type_name(field.annotation)
    typ = (typ if "](#" in typ else f"`{typ}`") + (f" ({extra})" if (extra := limits(field.metadata)) else "")
    if field.is_required():
        default = "required"
    elif isinstance(value := field.get_default(call_default_factory=True), BaseModel):
        changed = ", ".join(f"`{k}={v!r}`" for k, v in value.model_dump(exclude_defaults=True).items())
        default = "its defaults" + (f" but {changed}" if changed else "")
    else:
        default = f"`{value!r}`"
    owners = [c for c in model.__mro__ if issubclass(c, BaseModel) and c is not BaseModel and name in source_comments(c)]
    meaning = field.description or (source_comments(owners[0])[name] if owners else "")
    return [f"`{name}`", typ, default, prose(meaning)]


def prose(text: str) -> str:
    """`<` escaped outside code spans (`<run>/<name>` is no HTML tag); paragraphs kept, their lines joined."""
    text = "".join(p if p.startswith("`") else p.replace("<", "&lt;") for p in re.split(r"(`[^`]*`)", text))
    return "\n\n".join(" ".join(para.split()) for para in text.split("\n\n"))


def section(model: type[BaseModel], heading: str, extra: str = "") -> list[str]:
    """The heading, the class's own docstring (not an inherited one) and `extra`, then a row per field."""
    intro = "\n\n".join(filter(None, [prose(inspect.cleandoc(model.__dict__.get("__doc__") or "")), extra]))
    rows = [heading, "", intro, "", "| field | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        rows.append("| " + " | ".join(c.replace("|", r"\|") for c in cells(model, name, field)) + " |")
    return rows + [""]


def blocks() -> dict[type[BaseModel], dict[str, list[str]]]:
    """The nested models reachable from the recipe and its stages, each once: field name -> links to its users."""
    uses: dict[type[BaseModel], dict[str, list[str]]] = {}

    def models_in(tp) -> list[type[BaseModel]]:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return [] if tp in KINDS else [tp]
        return [m for arg in typing.get_args(tp) for m in models_in(arg)]

    def walk(owner: type[BaseModel]) -> None:
        for name, field in owner.model_fields.items():
            for model in models_in(field.annotation):
                seen = model in uses
                uses.setdefault(model, {}).setdefault(name, []).append(link(owner))
                if not seen:
                    walk(model)

    for owner in (Recipe, *KINDS):
        walk(owner)
    return uses


def recipe_reference() -> str:
    """The reference page, in Markdown: the recipe's top level, then each stage kind, then the nested blocks."""
    lines = ["# Recipe reference", "",
             f"> Generated from the pydantic schema in `distill/recipe/` by `{COMMAND}`: do not edit by hand.",
             "> Change the schema (or the comment on a field) and rerun the command.", "",
             ("A recipe is a YAML file: the keys of [Recipe](#recipe), with `stages:` a list of [stages](#stages) "
              "picked by their `kind`, and nested [blocks](#blocks). Unknown keys are errors."), ""]
    lines += section(Recipe, "## Recipe", "The top level of a recipe file.")
    lines += ["## Stages", "", "Run in the order listed; `kind` picks one of: " + ", ".join(map(link, KINDS)) + ".", ""]
    for stage, kind in KINDS.items():
        lines += section(stage, f"### {kind}")
    lines += ["## Blocks", "", "The nested settings of the recipe and its stages.", ""]
    for model, uses in blocks().items():
        used = "; ".join(f"`{name}` in " + ", ".join(owners) for name, owners in uses.items())
        lines += section(model, f"### {model.__name__}", f"Used as {used}.")
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the recipe reference (Markdown), generated from the schema.")
    parser.add_argument("output", nargs="?", type=Path, help="file to write; default: print to stdout")
    args = parser.parse_args(argv)
    if args.output is None:
        sys.stdout.write(recipe_reference())
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(recipe_reference(), encoding="utf-8")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

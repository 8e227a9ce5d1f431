"""Reading user data files with errors that cite `path:LINE`: UTF-8 text, JSON Lines and JSON arrays.

Shared by the table loaders (distill/data/splits.py) and the token-classification loaders
(distill/data/token_data.py), below both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from distill import DistillError


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # -sig: MRPC and Excel exports start with a BOM
    except UnicodeDecodeError as error:
        raise DistillError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason})") from None
    except OSError as error:
        raise DistillError(f"{path}: cannot read: {error.strerror or error}") from None


def json_lines(path: Path, text: str) -> Iterator[tuple[int, object]]:
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                raise DistillError(f"{path}:{number}: invalid JSON: {error.msg}") from None


def json_array(path: Path, text: str) -> Iterator[tuple[int, object]]:
    decoder = json.JSONDecoder()
    position, line, counted_to = text.index("[") + 1, 1, 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        line += text.count("\n", counted_to, position)
        counted_to = position
        if position < len(text) and text[position] == "]":
            return
        try:
            record, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise DistillError(f"{path}:{error.lineno}: invalid JSON: {error.msg}") from None
        yield line, record
        while position < len(text) and text[position].isspace():
            position += 1
        if position < len(text) and text[position] == ",":
            position += 1
        elif position >= len(text) or text[position] != "]":
            raise DistillError(f"{path}:{text.count(chr(10), 0, position) + 1}: invalid JSON: expected ',' or ']'")

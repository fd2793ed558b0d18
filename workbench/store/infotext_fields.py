"""The pieces an infotext's last line is made of: `key: value` pairs, JSON-quoted values, numbers. No torch here.

A1111 writes `Steps: 20, Sampler: DDIM, ControlNet 0: "Module: canny, Weight: 1.0"`: a value holding a comma,
colon or quote is JSON-quoted, so the line splits at the commas between pairs. Every function here runs in one
pass over its text, whatever the text holds (a PNG may come from anyone).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..spec.shorten import short

KEY = re.compile(r"\w[\w \-/+]*")


def quote(value) -> str:
    """JSON-quote a value that holds a comma, colon or quote, so the line still splits cleanly."""
    text = str(value)
    return json.dumps(text) if any(c in text for c in ',:"\n') else text


def unquote(text: str) -> str:
    text = text.strip()
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        try:
            return json.loads(text)
        except ValueError:  # A1111 keeps a broken quote as text; so does this
            return text
    return text


def model_label(model: str) -> str:
    """The checkpoint name A1111 writes in "Model": a file's name without its suffix, else the name as given."""
    path = Path(str(model))
    return path.stem if path.suffix.lower() in (".safetensors", ".ckpt") else str(model)


def closing_quote(line: str, start: int) -> int:
    """The index of the quote that closes the JSON string opened at `start`, or -1 (one pass, escapes skipped)."""
    i = start + 1
    while i < len(line):
        if line[i] == "\\":
            i += 2
        elif line[i] == '"':
            return i
        else:
            i += 1
    return -1


def parse_pairs(line: str) -> dict:
    """`key: value, key: "quoted, value"` into a dict of strings, in one pass over the line.

    A key runs to its colon; a value is a JSON-quoted string, or runs to the next comma.
    Pieces without a colon, or whose key is not a name, are skipped.
    """
    pairs, i = {}, 0
    while i < len(line):
        colon, comma = line.find(":", i), line.find(",", i)
        if colon == -1:
            break
        if comma != -1 and comma < colon:  # a piece with no key
            i = comma + 1
            continue
        key = line[i:colon].strip()
        start = colon + 1
        while start < len(line) and line[start] == " ":
            start += 1
        end = closing_quote(line, start) if line.startswith('"', start) else -1
        if end != -1 and line[end + 1:end + 2] in ("", ","):
            value, i = line[start:end + 1], end + 2
        else:
            comma = line.find(",", start)
            value, i = line[start:] if comma == -1 else line[start:comma], len(line) if comma == -1 else comma + 1
        if KEY.fullmatch(key):
            pairs[key] = unquote(value)
    return pairs


def read_number(pairs: dict, key: str, cast):
    """pairs[key] as an int or a float; a value that is not one is refused, quoted shortly."""
    try:
        return cast(pairs[key])
    except ValueError:
        raise ValueError(f"infotext `{key}` must be {'an integer' if cast is int else 'a number'}, "
                         f"got {short(pairs[key])}") from None

"""Text from a run folder or a spec, made safe for where it goes: a spreadsheet, a terminal. No torch here.

A run folder from someone else, or a shared spec's prompt, is untrusted text.
  - A CSV cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to a
    spreadsheet (`=HYPERLINK(...)`): such text cells get a leading `'`, as OWASP's CSV-injection
    guidance advises. Numbers stay numbers.
  - Control characters (C0, DEL, C1, ESC) printed to a terminal can rewrite the screen, set its title or
    write the clipboard (OSC 52): they are printed as visible escapes (`\\x1b`).
"""

from __future__ import annotations

import re

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # every C0 and C1 character but the newline, and DEL


def csv_cell(value):
    """A cell as a spreadsheet should read it: text that would start a formula gets a leading `'`."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def csv_safe(table: pd.DataFrame) -> pd.DataFrame:
    """The table with every text cell passed through `csv_cell` (numeric columns untouched)."""
    table = table.copy()
    for column in table.columns:
        if table[column].dtype == object or pd.api.types.is_string_dtype(table[column]):
            table[column] = table[column].map(csv_cell)
    return table


def printable(text) -> str:
    """`text` with each control character (but the newline) written as a visible escape: ESC is `\\x1b`."""
    return CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", str(text))

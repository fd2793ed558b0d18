"""Quote a value in an error message, shortly: a spec or a PNG from someone else may hold megabytes. No torch."""

from __future__ import annotations

import reprlib

_REPR = reprlib.Repr()
_REPR.maxstring = 120   # characters of a string, with "..." in the middle past that
_REPR.maxother = 120
_REPR.maxlevel = 3      # nesting shown
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8


def short(value) -> str:
    """`repr(value)`, cut to a few hundred characters at most, however large or deep the value."""
    try:
        return _REPR.repr(value)
    except RecursionError:
        return f"<a {type(value).__name__} nested too deeply to show>"

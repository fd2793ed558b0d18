"""Spec files: YAML or JSON read safely (no tags, aliases or deep nesting; bounded), then checked. No torch here."""

from __future__ import annotations

from pathlib import Path

import yaml

from .shorten import short
from .sweep_spec import MAX_SPEC_BYTES, SweepSpec, spec_from_dict


def load_spec(path: str | Path) -> SweepSpec:
    """Read a spec from a YAML or JSON file; the files it names are read relative to the file's folder."""
    spec = spec_from_dict(read_spec_file(path))
    spec.base_dir = str(Path(path).absolute().parent)
    return spec


def spec_from_text(text: str, where: str, base_dir: str | Path) -> SweepSpec:
    """A spec from YAML or JSON text already read (a run folder's, through its `RunStore`); its files are read
    relative to `base_dir`."""
    if len(text.encode()) > MAX_SPEC_BYTES:
        raise ValueError(f"{where} is more than the {MAX_SPEC_BYTES:,} bytes a sweep spec needs")
    spec = spec_from_dict(read_yaml(text, where) or {})
    spec.base_dir = str(Path(base_dir).absolute())
    return spec


def read_spec_file(path: str | Path) -> dict:
    """A spec file's mapping, read safely (`read_yaml`), before any check of its keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"spec file {short(str(path))} does not exist")
    if path.stat().st_size > MAX_SPEC_BYTES:
        raise ValueError(f"spec file {short(str(path))} is {path.stat().st_size:,} bytes, more than the "
                         f"{MAX_SPEC_BYTES:,} a sweep spec needs")
    return read_yaml(path.read_text(), f"spec file {short(str(path))}") or {}


def read_yaml(text: str, what: str):
    """Parse YAML (a superset of JSON) safely: no anchors and aliases, nothing nested hundreds deep.

    Aliases are refused before anything is built: a few hundred bytes of nested aliases (a
    "billion laughs") expand to gigabytes. Write repeated values out instead.
    """
    try:
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader)):
            raise ValueError(f"{what} uses YAML aliases (*name): they are refused, because a few nested ones "
                             "expand to gigabytes. Write the repeated values out.")
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{what} is not valid YAML/JSON: {yaml_problem(err)}") from None
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply to be a sweep spec") from None


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where ("expected ',' or ']' at line 3, column 5")."""
    mark = getattr(err, "problem_mark", None)
    problem = " ".join(str(getattr(err, "problem", None) or err).split())[:120]
    context = getattr(err, "context", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}" + (f" ({' '.join(str(context).split())[:80]})" if context else "")

"""The axis registry: one record per sweep parameter, the twin of the metric registry. No torch here.

A record says what a parameter is and how each layer treats it: the spec checks its values, the
sweep batches it or makes one pipeline call per value, infotext writes its label, search ranges
over it, and the panel offers it. The tables the rest of the package reads (`AXES`, `FLOAT_AXES`,
`UNIT_AXES`, ...) are derived from these records, in the order rows have always shown them,
so every existing spec gives the same trial ids.

A new axis is one record and, if the engine does not apply it itself, one function:

    def set_ip_adapter_scale(pipe, value):        # called before each pipeline call
        pipe.set_ip_adapter_scale(value)

    register_axis(Axis("ip_adapter_scale", "float", low=0.0, default=1.0, infotext="IP-Adapter scale",
                       apply="mypackage.axes:set_ip_adapter_scale", searchable=True))

A registered axis is a spec key like any other (`ip_adapter_scale: [0.0, 0.5, 1.0]`), and a trial
parameter only where a spec sets it, so older specs keep their ids.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any

PROFILE = "from the model's profile"  # a default that the model's profile gives (steps, guidance, scheduler)
KINDS = ("text", "float", "int", "name", "blocks", "schedule", "sampler")


@dataclass(frozen=True)
class Axis:
    """One sweep parameter."""
    name: str                       # the spec key and row column; a unit's parameter: "scale" (row: canny.scale)
    kind: str                       # one of KINDS: how values are checked and coerced
    low: float | None = None        # numbers: the lowest value allowed
    high: float | None = None       # numbers: the highest (inclusive); None = no bound
    default: Any = None             # its value where a spec leaves it out; PROFILE: the model's profile's
    unit: bool = False              # a ControlNet unit's parameter (`<unit>.<name>`)
    legacy_key: str | None = None   # a unit parameter's top-level key in a spec without `controls`
    optional: bool = False          # a trial parameter only where the spec sets it, so older ids stay
    batched: str = "never"          # "always": varies inside one pipeline call; "shared": with shared prefixes
    apply: str | None = None        # "module:function" called as f(pipe, value) before each call; None: the engine's
    infotext: str | None = None     # its A1111 label (a unit's: inside its "ControlNet <i>" entry)
    searchable: bool = False        # search may range over it
    panel: str | None = None        # the panel's control: "slider", "text", "choice" (None: none)
    switch: int | None = None       # a costly change between calls: groups are ordered by these, lowest first

    @property
    def key(self) -> str:
        """The top-level spec key and row column of a one-unit spec ("conditioning_scale" for "scale")."""
        return self.legacy_key or self.name

    def apply_to(self, pipe, value) -> None:
        """Call the record's apply function (`apply`), importing it on first use."""
        module, _, function = self.apply.partition(":")
        getattr(importlib.import_module(module), function)(pipe, value)


INF = math.inf
# In the order rows show them; a unit's parameters where its top-level keys always stood.
BUILTIN = (
    Axis("prompt", "text", default="a yellow star on a blue background", panel="text"),
    Axis("negative_prompt", "text", default="", infotext="Negative prompt", panel="text"),
    Axis("scale", "float", low=0, high=INF, default=1.0, unit=True, legacy_key="conditioning_scale", batched="always",
         infotext="Weight", searchable=True, panel="slider"),
    Axis("start", "float", low=0, high=1, default=0.0, unit=True, legacy_key="control_guidance_start",
         batched="shared", infotext="Guidance Start", searchable=True, panel="slider"),
    Axis("end", "float", low=0, high=1, default=1.0, unit=True, legacy_key="control_guidance_end", batched="shared",
         infotext="Guidance End", searchable=True, panel="slider"),
    # The switches, costliest first: loading another adapter, rescaling one, reweighting its blocks, another sampler
    Axis("adapter", "name", default=None, panel="choice", switch=0),
    Axis("lora_weight", "float", low=-INF, high=INF, default=0.0, searchable=True, panel="slider", switch=1),
    Axis("lora_blocks", "blocks", default=None, optional=True, panel="choice", switch=2),
    Axis("guidance", "float", low=0, high=INF, default=PROFILE, infotext="CFG scale", searchable=True, panel="slider"),
    Axis("steps", "int", low=1, default=PROFILE, infotext="Steps", searchable=True, panel="slider"),
    Axis("scheduler", "sampler", default=PROFILE, infotext="Sampler", panel="choice", switch=3),
    # A1111's numbering: 1 reads the text encoder's last layer (no skip), 2 the one before; diffusers counts one less
    Axis("clip_skip", "int", low=1, default=None, optional=True, infotext="Clip skip", panel="slider"),
    Axis("low", "int", low=0, default=100, unit=True, legacy_key="canny_low", infotext="Threshold A", searchable=True),
    Axis("high", "int", low=0, default=200, unit=True, legacy_key="canny_high", infotext="Threshold B",
         searchable=True),
    Axis("schedule", "schedule", default=None, unit=True, legacy_key="control_schedule", optional=True,
         batched="always", infotext="Schedule", panel="choice"),
    Axis("seed", "int", low=0, default=0, batched="always", infotext="Seed"),
)
REGISTERED: dict[str, Axis] = {}  # axes added by `register_axis`, by name


def register_axis(axis: Axis) -> Axis:
    """Add an axis: a spec key, a row column and (with `apply`) a pipeline setting, without touching another file."""
    if axis.name in all_names() or axis.unit or axis.legacy_key:
        raise ValueError(f"axis {axis.name!r} exists already, or is a unit parameter (those are built in)")
    if axis.kind not in ("float", "int", "text", "name"):
        raise ValueError(f"a registered axis is float, int, text or name, got {axis.kind!r}")
    if axis.batched != "never":  # the engine applies a registered axis once per pipeline call
        raise ValueError(f"a registered axis is applied once per pipeline call (batched='never'), got {axis.batched!r}")
    if axis.apply is None or ":" not in axis.apply:
        raise ValueError(f"axis {axis.name!r} needs apply='module:function', called as function(pipe, value)")
    REGISTERED[axis.name] = axis
    return axis


def unregister_axis(name: str) -> None:
    """Remove an axis `register_axis` added (a notebook's experiment, a test's stand-in)."""
    REGISTERED.pop(name, None)


def all_names() -> set[str]:
    """Every name a record answers to: built-in keys, unit parameters and registered axes."""
    return {a.key for a in BUILTIN} | {a.name for a in BUILTIN} | set(REGISTERED)


def axis_record(name: str) -> Axis | None:
    """The record of a spec key or row column: "guidance", "conditioning_scale", "canny.scale", a registered axis."""
    unit_param = name.partition(".")[2]
    for axis in (*BUILTIN, *REGISTERED.values()):
        if (axis.unit and unit_param == axis.name) or name == axis.key:
            return axis
    return None


# The tables the package has always read, derived from the records (tests/test_axis_registry.py holds them fixed).
AXES = tuple(axis.key for axis in BUILTIN)
OPTIONAL_AXES = tuple(axis.key for axis in BUILTIN if axis.optional)
UNIT_LEGACY_AXES = tuple(axis.key for axis in BUILTIN if axis.unit)
FLOAT_AXES = {axis.key: (axis.low, axis.high) for axis in BUILTIN if axis.kind == "float"}
INTEGER_AXES = {axis.key: axis.low for axis in BUILTIN if axis.kind == "int"}
UNIT_AXES = {axis.name: axis.default for axis in BUILTIN if axis.unit}
OPTIONAL_UNIT_AXES = tuple(axis.name for axis in BUILTIN if axis.unit and axis.optional)
UNIT_KEYS = {axis.name: axis.key for axis in BUILTIN if axis.unit}  # a unit parameter's top-level key
SWITCHES = tuple(axis.key for axis in sorted((a for a in BUILTIN if a.switch is not None), key=lambda a: a.switch))

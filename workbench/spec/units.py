"""Control units: the ControlNets of a spec, each with its own image, preprocessing and axes. No torch here.

    controls:
      canny: {controlnet: toy, image: "photos/star.png"}              # preprocess defaults to canny
      mask:  {controlnet: toy-mask, image: "masks/circle.png", preprocess: none}
    canny.scale: [0.0, 1.0]     # per-unit axes: <unit>.scale, .start, .end, .low, .high
    mask.scale: [0.0, 1.0]

A spec without `controls` has one unnamed unit whose parameters are the old top-level keys
(`control_image`, `conditioning_scale`, `control_guidance_start`/`end`, `canny_low`/`high`),
so its trials, rows and ids are exactly what they always were. `Unit.key` hides the
difference: the sweep asks a unit for the row column of its scale and gets
`conditioning_scale` or `canny.scale`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .conditions import PREPROCESSORS, Condition, condition  # noqa: F401 (PREPROCESSORS: read here by the spec)
from .axes import OPTIONAL_UNIT_AXES, UNIT_AXES, UNIT_KEYS  # noqa: F401 (UNIT_AXES, OPTIONAL_UNIT_AXES: read here)
from .shorten import short

# Per-unit axes and their defaults (the same as the top-level keys of a one-unit spec): the unit records of `axes.py`.
# OPTIONAL_UNIT_AXES are a unit's parameters only where the spec sets them, so older ids stay.
UNIT_FIELDS = ("controlnet", "image", "preprocess")
# The top-level key that holds each parameter of the unnamed unit of an old-style spec.
LEGACY_KEYS = {**UNIT_KEYS, "image": "control_image"}
UNIT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Unit:
    """One ControlNet of a sweep: which, reading what, prepared how; `name` is "" for an old-style spec."""
    name: str
    controlnet: str
    image: str
    preprocess: str = "canny"

    def key(self, param: str) -> str:
        """The row column (and trial parameter) of this unit's `param`: "scale" -> "canny.scale"."""
        return LEGACY_KEYS[param] if not self.name else f"{self.name}.{param}"

    @property
    def condition(self) -> Condition:
        """The record of what this unit draws (`conditions.py`): canny, depth, seg, openpose, ... or none (as given)."""
        return condition(self.preprocess)

    @property
    def metric(self) -> str:
        """The metric that scores its images: `edge` for Canny and given maps (edge F1, mask IoU), else its condition's."""
        return self.condition.metric

    def column(self, metric: str) -> str:
        """A metric's column for this unit: "edge_f1" alone, or "canny.edge_f1"."""
        return metric if not self.name else f"{self.name}.{metric}"


def is_unit_key(key: str) -> bool:
    """True for a dotted per-unit axis such as "canny.scale"."""
    name, _, param = str(key).partition(".")
    return bool(name) and param in UNIT_AXES


def is_unit_column(key: str) -> bool:
    """True for any per-unit trial parameter: an axis ("canny.scale") or a field ("canny.image")."""
    name, _, param = str(key).partition(".")
    return bool(name) and (param in UNIT_AXES or param in UNIT_FIELDS)


def split_unit_key(key: str) -> tuple[str, str]:
    name, _, param = key.partition(".")
    return name, param


def check_controls(controls: dict, reserved: set) -> None:
    """Raise ValueError naming the unit and field for anything a `controls` mapping cannot mean."""
    if not isinstance(controls, dict):
        raise ValueError(f"`controls` maps unit names to {{controlnet, image, preprocess}}, got {short(controls)}")
    for name, unit in controls.items():
        if not isinstance(name, str) or not UNIT_NAME.match(name) or name in reserved:
            raise ValueError(f"control unit name {short(name)} must be lower-case letters, digits and _, starting with a "
                             f"letter, and not a spec key")
        if not isinstance(unit, dict):
            raise ValueError(f"control unit {short(name)} must be a mapping with `image` (and `controlnet`, "
                             f"`preprocess`), got {short(unit)}")
        unknown = sorted(set(unit) - set(UNIT_FIELDS))
        if unknown:
            raise ValueError(f"control unit {short(name)} has unknown field {short(unknown[0])}; fields: {list(UNIT_FIELDS)} "
                             f"(axes go at the top level: {name}.scale, {name}.start, ...)")
        if not isinstance(unit.get("image"), str) or not unit["image"]:
            raise ValueError(f"control unit {short(name)} needs `image`: a file or 'toy:<caption>'")
        for field in ("controlnet", "preprocess"):
            if field in unit and not isinstance(unit[field], str):
                raise ValueError(f"control unit {short(name)}: `{field}` must be a string, got {short(unit[field])}")


def spec_units(controls: dict, model: str, control_image: str) -> list[Unit]:
    """The units of a spec: one per `controls` entry, or the unnamed unit of an old-style spec."""
    if not controls:
        return [Unit("", model, control_image, "canny")]
    return [Unit(name, unit.get("controlnet", model), unit["image"], unit.get("preprocess", "canny"))
            for name, unit in controls.items()]

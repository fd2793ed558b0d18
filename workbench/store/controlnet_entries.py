"""The ControlNet units of an infotext: `ControlNet <i>` entries as A1111's ControlNet extension reads them, and the
workbench's own `Workbench units` field for what the extension cannot say. No torch here.

The extension (sd-webui-controlnet) reads an entry by splitting it on every comma and each piece on ": ", with no
quoting, and validates what it reads: a piece that does not split in two drops the whole unit, a `Weight`
outside 0-2 drops it, and a threshold outside the module's slider (1-255 for Canny) is reset to its default.
So an entry holds only values it accepts:

    ControlNet 0: "Module: canny, Model: lllyasviel/sd-controlnet-canny, Weight: 2.0, Threshold A: 1,
                   Threshold B: 200, Guidance Start: 0.0, Guidance End: 1.0"

and `Workbench units` (JSON) holds each unit exactly: its name, image, scale (3.0 where the entry says 2.0),
thresholds, schedule. The workbench reads that field where it is, and the entries of A1111's own PNGs otherwise.
"""

from __future__ import annotations

import json
import re

from ..spec.units import LEGACY_KEYS
from .infotext_fields import model_label, parse_pairs, read_number

# The fields of an entry that are sweep parameters: (entry key, unit parameter, type).
UNIT_ENTRY = (("Weight", "scale", float), ("Guidance Start", "start", float), ("Guidance End", "end", float),
              ("Threshold A", "low", int), ("Threshold B", "high", int), ("Schedule", "schedule", str))
WEIGHT_RANGE = (0.0, 2.0)        # what the extension accepts as a unit's Weight
THRESHOLD_RANGE = (1, 255)       # its Canny sliders' range (it resets a value outside it)
THRESHOLD_MODULES = ("canny",)   # modules whose entry says thresholds: a mask (`none`) unit uses none
UNIT_PARAMS = ("scale", "start", "end", "low", "high", "schedule")
MAX_UNITS = 16                   # units read from a PNG's `Workbench units`
MODEL_HASH = re.compile(r"\s*\[[0-9a-fA-F]{1,64}\]$")  # the " [d14c016b]" the extension puts after a model's name


def unit_names(params: dict) -> list[str]:
    """The control units of a trial's parameters: their names, or [""] for an old-style one-unit trial."""
    names = [key[:-len(".image")] for key in params if key.endswith(".image")]
    return names or [""]


def unit_params(params: dict, name: str, model: str) -> dict:
    """One unit's parameters as {param: value} (image, controlnet, preprocess included), named or old-style."""
    key = (lambda param: LEGACY_KEYS[param]) if not name else (lambda param: f"{name}.{param}")
    unit = {param: params[key(param)] for param in UNIT_PARAMS if params.get(key(param)) is not None}
    unit.update({"image": params.get(key("image"), ""),
                 "controlnet": params.get(f"{name}.controlnet", model) if name else model,
                 "preprocess": params.get(f"{name}.preprocess", "canny") if name else "canny"})
    return unit


def extension_value(text) -> str:
    """A value the extension's split reads whole: no comma, no ": "."""
    return str(text).replace(",", " ").replace(": ", ":").strip()


def entry(unit: dict) -> str:
    """One unit as the extension reads it: valid values only (the exact ones go in `Workbench units`)."""
    fields = {"Module": extension_value(unit["preprocess"]),
              "Model": extension_value(model_label(unit["controlnet"])),
              "Weight": min(max(float(unit.get("scale", 1.0)), WEIGHT_RANGE[0]), WEIGHT_RANGE[1])}
    if unit["preprocess"] in THRESHOLD_MODULES:
        for key, param in (("Threshold A", "low"), ("Threshold B", "high")):
            fields[key] = min(max(int(unit.get(param, 100 if param == "low" else 200)), THRESHOLD_RANGE[0]),
                              THRESHOLD_RANGE[1])
    fields.update({"Guidance Start": unit.get("start", 0.0), "Guidance End": unit.get("end", 1.0)})
    return ", ".join(f"{key}: {value}" for key, value in fields.items())


def unit_differences(unit: dict, label: str) -> list[str]:
    """What A1111 will not reproduce of a unit: a weight it reads clamped, a threshold it resets, a schedule."""
    notes = []
    scale = float(unit.get("scale", 1.0))
    if not WEIGHT_RANGE[0] <= scale <= WEIGHT_RANGE[1]:
        notes.append(f"{label} weight {scale:g} (A1111 reads {min(max(scale, 0.0), 2.0):g})")
    if unit["preprocess"] in THRESHOLD_MODULES:
        notes += [f"{label} {param} threshold {unit[param]}" for param in ("low", "high")
                  if param in unit and not THRESHOLD_RANGE[0] <= int(unit[param]) <= THRESHOLD_RANGE[1]]
    if unit.get("schedule"):
        notes.append(f"{label} scale schedule {unit['schedule']} (A1111 holds the weight constant)")
    return notes


def format_units(params: dict, model: str) -> dict:
    """The infotext pairs of a trial's units: one `ControlNet <i>` entry each, `Workbench units` (exact), and
    `Workbench only`, which says in words what A1111 would not reproduce."""
    units = [{"unit": name, **unit_params(params, name, model)} for name in unit_names(params)]
    pairs = {f"ControlNet {i}": entry(unit) for i, unit in enumerate(units)}
    pairs["Workbench units"] = json.dumps(units, separators=(",", ":"))
    notes = [note for i, unit in enumerate(units) for note in unit_differences(unit, unit["unit"] or f"ControlNet {i}")]
    pairs["Workbench only"] = "; ".join(notes)
    return pairs


def unit_to_params(unit: dict) -> dict:
    """A unit read back as sweep parameters: an old-style unit's top-level keys, or a named unit's `name.param`."""
    name = unit.get("unit", "")
    params = {}
    for param in UNIT_PARAMS:
        if param in unit:
            params[f"{name}.{param}" if name else LEGACY_KEYS[param]] = unit[param]
    if name:
        params.update({f"{name}.image": unit.get("image", ""), f"{name}.controlnet": unit.get("controlnet", ""),
                       f"{name}.preprocess": unit.get("preprocess", "canny")})
    elif unit.get("image"):
        params["control_image"] = unit["image"]
    return params


def workbench_units(text: str) -> list[dict]:
    """The `Workbench units` field: a JSON list of unit dicts with known keys and plain values, else ValueError."""
    try:
        units = json.loads(text)
    except ValueError:
        raise ValueError("infotext `Workbench units` is not JSON") from None
    known = {"unit", "image", "controlnet", "preprocess", *UNIT_PARAMS}
    if not (isinstance(units, list) and len(units) <= MAX_UNITS and all(
            isinstance(u, dict) and set(u) <= known and all(isinstance(v, (str, int, float)) for v in u.values())
            for u in units)):
        raise ValueError(f"infotext `Workbench units` must be a list of up to {MAX_UNITS} units with keys "
                         f"{sorted(known)}")
    return units


def parse_units(pairs: dict) -> dict:
    """A trial's unit parameters from an infotext's pairs; an A1111 PNG's units also as `control_units` (module, model
    and parameters each), which `spec_from_png` checks against what the workbench can run."""
    if "Workbench units" in pairs:
        params = {}
        for unit in workbench_units(pairs["Workbench units"]):
            params.update(unit_to_params(unit))
        return params
    params, a1111 = {}, []
    for i in range(MAX_UNITS):
        if f"ControlNet {i}" not in pairs:
            break
        fields = parse_pairs(pairs[f"ControlNet {i}"])  # A1111's plain pieces, or an older workbench PNG's quoted ones
        unit = {"unit": fields.get("Unit", ""), "preprocess": fields.get("Module", "canny"),
                "controlnet": MODEL_HASH.sub("", fields.get("Model", "")), "image": fields.get("Image", "")}
        unit.update({param: read_number(fields, key, cast) if cast is not str else fields[key]
                     for key, param, cast in UNIT_ENTRY if key in fields})
        if unit["preprocess"] not in THRESHOLD_MODULES:  # the extension writes -1 or defaults it does not use
            unit.pop("low", None), unit.pop("high", None)
        params.update(unit_to_params(unit))
        if not unit["unit"]:
            a1111.append(unit)
    if a1111:
        params["control_units"] = a1111
    return params


"""Sweep specs and trials: what to run, expanded into one record per image. No torch here.

A spec lists values for each parameter; a parameter with one value is fixed, one with
several is an axis. `expand` makes the cartesian product (mode "product") or walks the
axes side by side (mode "zip"). Every trial gets a `trial_id`: a hash of everything that
changes its image, plus the model fingerprint, so a re-run knows what is already done.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import numbers
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .sizes import size_range

# The parameters a trial is made of, in the order rows show them. Each is a list in a spec.
AXES = ("prompt", "negative_prompt", "conditioning_scale", "control_guidance_start", "control_guidance_end",
        "adapter", "lora_weight", "guidance", "steps", "scheduler", "canny_low", "canny_high", "seed")
SCHEDULERS = ("ddim", "euler", "euler_a", "dpm++2m", "pndm", "lms")
MODES = ("product", "zip")


@dataclass
class SweepSpec:
    """A sweep: values per parameter (lists; one value means fixed) and run settings."""
    prompt: list = field(default_factory=lambda: ["a yellow star on a blue background"])
    negative_prompt: list = field(default_factory=lambda: [""])
    conditioning_scale: list = field(default_factory=lambda: [1.0])   # ControlNet strength, >= 0
    control_guidance_start: list = field(default_factory=lambda: [0.0])  # fraction of steps, 0-1
    control_guidance_end: list = field(default_factory=lambda: [1.0])
    adapter: list = field(default_factory=lambda: [None])  # LoRA adapter names; None = no LoRA
    lora_weight: list = field(default_factory=lambda: [0.0])  # multiplies the adapter's B @ A
    guidance: list = field(default_factory=lambda: [5.0])   # CFG scale; the toy model likes 3-7.5
    steps: list = field(default_factory=lambda: [20])
    scheduler: list = field(default_factory=lambda: ["ddim"])
    canny_low: list = field(default_factory=lambda: [100])  # controlnet_aux defaults
    canny_high: list = field(default_factory=lambda: [200])
    seed: list = field(default_factory=lambda: [0])
    control_image: str = "toy:a yellow star on a blue background"  # a file, or "toy:<caption>" (a toy scene)
    resolution: int | None = None  # short side in px; None = the model's trained size
    model: str = "toy"             # load_pipeline name: preset, hub id or folder
    adapters: dict = field(default_factory=dict)  # adapter name -> LoRA file, each loaded once
    mode: str = "product"
    max_trials: int = 10_000       # a guard against typos that expand to millions of images
    metrics: bool = True           # edge precision/recall/F1/SSIM per row

    @property
    def axes(self) -> dict:
        """The parameters with more than one value."""
        return {name: getattr(self, name) for name in AXES if len(getattr(self, name)) > 1}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        """Write the spec as YAML (or JSON if the name ends in .json)."""
        path = Path(path)
        text = (json.dumps(self.to_dict(), indent=2) if path.suffix == ".json"
                else yaml.safe_dump(self.to_dict(), sort_keys=False))
        path.write_text(text)


def spec_from_dict(data: dict) -> SweepSpec:
    """Build and validate a spec; single values become one-element lists; unknown keys are errors."""
    if not isinstance(data, dict):
        raise ValueError(f"a sweep spec must be a mapping of parameter names to values, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(SweepSpec)}
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            raise ValueError(f"Unknown spec key: {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                             + f"; known keys: {sorted(known)}")
    data = {k: (list(v) if isinstance(v, (list, tuple)) else [v]) if k in AXES else v for k, v in data.items()}
    spec = SweepSpec(**data)
    check_spec(spec)
    return spec


def load_spec(path: str | Path) -> SweepSpec:
    """Read a spec from a YAML or JSON file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"spec file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    except yaml.YAMLError as err:
        raise ValueError(f"spec file {str(path)!r} is not valid YAML/JSON: {err}") from None
    return spec_from_dict(data or {})


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_spec(spec: SweepSpec) -> None:
    """Raise ValueError naming the parameter and value for anything that cannot run."""
    for name in AXES:
        values = getattr(spec, name)
        if not isinstance(values, list) or not values:
            raise ValueError(f"axis `{name}` is empty; give at least one value")
    for name in ("conditioning_scale", "lora_weight", "guidance", "control_guidance_start", "control_guidance_end"):
        for value in getattr(spec, name):
            if not _is_number(value):
                raise ValueError(f"`{name}` values must be numbers, got {value!r} ({type(value).__name__})")
    for name in ("conditioning_scale", "guidance"):
        for value in getattr(spec, name):
            if value < 0:
                raise ValueError(f"`{name}` must be >= 0, got {value}")
    for name in ("control_guidance_start", "control_guidance_end"):
        for value in getattr(spec, name):
            if not 0 <= value <= 1:
                raise ValueError(f"`{name}` is a fraction of the steps and must be in [0, 1], got {value}")
    for name, low in (("seed", 0), ("steps", 1), ("canny_low", 0), ("canny_high", 0)):
        for value in getattr(spec, name):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"`{name}` values must be integers >= {low}, got {value!r} ({type(value).__name__})")
    for value in spec.prompt + spec.negative_prompt:
        if not isinstance(value, str):
            raise ValueError(f"prompts must be strings, got {value!r} ({type(value).__name__})")
    for name, kind in (("adapters", dict), ("control_image", str), ("model", str), ("metrics", bool), ("mode", str)):
        if not isinstance(getattr(spec, name), kind):
            raise ValueError(f"`{name}` must be a {kind.__name__}, got {getattr(spec, name)!r}")
    for name, path in spec.adapters.items():
        if not isinstance(name, str) or not isinstance(path, str):
            raise ValueError(f"`adapters` maps names to LoRA files (strings), got {name!r}: {path!r}")
    for value in spec.adapter:
        if value is not None and not isinstance(value, str):
            raise ValueError(f"`adapter` values must be adapter names (strings) or null, got {value!r}")
    for value in spec.scheduler:
        if not isinstance(value, str) or value not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {value!r}; known: {list(SCHEDULERS)}")
    for value in spec.adapter:
        if value is not None and value not in spec.adapters:
            raise ValueError(f"adapter {value!r} is not loaded; `adapters` names {sorted(spec.adapters) or 'none'}. "
                             "Add it there as name: path/to/lora.safetensors")
    if any(w != 0 for w in spec.lora_weight) and spec.adapter == [None]:
        raise ValueError(f"`lora_weight` {spec.lora_weight} needs an adapter: set `adapter` (and `adapters`)")
    if spec.mode not in MODES:
        raise ValueError(f"`mode` must be one of {list(MODES)}, got {spec.mode!r}")
    if spec.mode == "zip" and len({len(v) for v in spec.axes.values()}) > 1:
        raise ValueError(f"mode 'zip' needs every axis to have the same length, got "
                         f"{ {k: len(v) for k, v in spec.axes.items()} }")
    if spec.resolution is not None:
        size_range(spec.model).check(spec.resolution, "resolution", repr(spec.model))
    if isinstance(spec.max_trials, bool) or not isinstance(spec.max_trials, int) or spec.max_trials < 1:
        raise ValueError(f"`max_trials` must be a positive integer, got {spec.max_trials!r}")
    count = count_trials(spec)
    if count > spec.max_trials:
        raise ValueError(f"the spec expands to {count:,} trials, over max_trials={spec.max_trials:,}; "
                         "raise max_trials in the spec if you mean it")
    check_combinations(spec)


# Pairs of parameters that must hold together in every trial: (first, second, test, what is required).
PAIRED = (("control_guidance_start", "control_guidance_end", lambda start, end: start < end,
           "the ControlNet must start acting before it stops: start < end"),
          ("canny_low", "canny_high", lambda low, high: low <= high,
           "Canny's hysteresis needs low <= high"))


def combinations(spec: SweepSpec, names: tuple[str, ...]) -> list[tuple]:
    """The distinct value tuples of `names` that the expansion will produce, without expanding."""
    columns = [getattr(spec, name) for name in names]
    if spec.mode == "zip":
        n = count_trials(spec)
        rows = [tuple(c[i] if len(c) > 1 else c[0] for c in columns) for i in range(n)]
    else:
        rows = list(itertools.product(*columns))
    return list(dict.fromkeys(rows))


def check_combinations(spec: SweepSpec) -> None:
    """Raise ValueError naming the first trial whose parameters cannot go together."""
    for first, second, holds, rule in PAIRED:
        for a, b in combinations(spec, (first, second)):
            if not holds(a, b):
                raise ValueError(f"`{first}` {a} with `{second}` {b} cannot run ({rule}); with mode "
                                 f"{spec.mode!r} the spec pairs them. Change the values, or use mode "
                                 f"{'zip' if spec.mode == 'product' else 'product'} if that is what you meant.")


def warn_duplicates(spec: SweepSpec) -> None:
    """Warn about repeated values on an axis: they make the same trial, which runs once."""
    for name in AXES:
        values = [coerce(name, v) for v in getattr(spec, name)]
        repeated = sorted({repr(v) for v in values if values.count(v) > 1})
        if repeated:
            warnings.warn(f"axis `{name}` repeats {', '.join(repeated)}: each repeated value makes the same "
                          f"trials, which run once, so the axis has {len(set(map(repr, values)))} values, "
                          f"not {len(values)}", stacklevel=3)


def count_trials(spec: SweepSpec) -> int:
    """How many images the spec makes, without expanding it."""
    if spec.mode == "zip":
        return max([len(v) for v in spec.axes.values()], default=1)
    return math.prod(len(getattr(spec, name)) for name in AXES)


def coerce(name: str, value):
    """The type diffusers wants: floats for scales (a single ControlNet rejects an int), ints for counts."""
    if name in ("conditioning_scale", "lora_weight", "guidance", "control_guidance_start", "control_guidance_end"):
        return float(value)
    if name in ("seed", "steps", "canny_low", "canny_high"):
        return int(value)
    return value


def trial_id(params: dict, fingerprint: str) -> str:
    """A stable 16-hex id: the same parameters on the same model always give the same id."""
    text = json.dumps({"params": params, "model": fingerprint}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Trial:
    """One image to make: its parameters and its id."""
    trial_id: str
    index: int      # position in the expanded spec
    params: dict


def expand(spec: SweepSpec, fingerprint: str = "") -> list[Trial]:
    """Expand a spec into trials (a pure function: no model, no files)."""
    check_spec(spec)
    values = [[coerce(name, v) for v in getattr(spec, name)] for name in AXES]
    if spec.mode == "zip":
        n = count_trials(spec)
        combos = [[vs[i] if len(vs) > 1 else vs[0] for vs in values] for i in range(n)]
    else:
        combos = itertools.product(*values)
    trials = []
    for index, combo in enumerate(combos):
        params = dict(zip(AXES, combo), control_image=spec.control_image, resolution=spec.resolution)
        trials.append(Trial(trial_id(params, fingerprint), index, params))
    return trials

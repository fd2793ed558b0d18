"""Sweep specs and trials: what to run, expanded into one record per image. No torch here.

A spec lists values for each parameter; a parameter with one value is fixed, one with
several is an axis (each described by its record in `axes.py`). `expand` makes the cartesian
product (mode "product", where `link` groups step together) or walks the axes side by side
(mode "zip"); `expansion.py` holds how. Every trial gets a `trial_id`: a hash of everything that
changes its image, plus the model fingerprint, so a re-run knows what is already done. A
control image that is a file counts by its content (`expand`'s `content`), so an edited file
never reuses old images and a moved folder still finds its own. Files a spec names are read
relative to the spec file's folder (`base_dir`), or to the working directory for a spec made
in Python.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import math
import numbers
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .axes import (AXES, FLOAT_AXES, INTEGER_AXES, OPTIONAL_AXES, REGISTERED, UNIT_LEGACY_AXES,  # noqa: F401
                   axis_record)
from .expansion import check_link, combos, count, pairs_of
from .lora_blocks import block_scales
from ..families import DEFAULT_MODEL, SPEC_KEYS, named_spec_defaults
from .metric_registry import check_metric_models, metric_names
from .samples import SAMPLE_PREFIX
from .samplers import ALIASES, SCHEDULERS, canonical_sampler
from .shorten import short
from .trials import Trial, coerce, trial_id  # noqa: F401 (a trial's record and id, re-exported)
from .sizes import named_size_range
from .control_schedules import parse_schedule
from .units import (LEGACY_KEYS, OPTIONAL_UNIT_AXES, PREPROCESSORS, UNIT_AXES, UNIT_FIELDS, Unit, check_controls,
                    is_unit_key, spec_units, split_unit_key)

# The parameters of a trial, their row order and checks come from the axis records (`axes.py`); a unit's parameters
# behave like the top-level key they stand for (`kind_of`: canny.scale -> conditioning_scale).
MODES = ("product", "zip")
TOY_SOURCES = ("toy:", "toy-mask:")  # control sources drawn by the toy world, not read from a file
BUILT_IN_SOURCES = (*TOY_SOURCES, SAMPLE_PREFIX)  # and the shipped photos (`samples.py`): none is a path to resolve
# Upper bounds, so a typo cannot ask for a week of work or a spec file for gigabytes of memory.
MAX_STEPS = 1000            # denoising steps of one image (samplers converge in 20-50; DDPM used 1000)
MAX_SEEDS = 1000            # seeds per cell
MAX_SPEC_BYTES = 1_000_000  # a spec file's size
# Classifier-free guidance: the default of generate() (a spec's comes from its model's profile). The toy model
# likes 3-7.5; SD1.5 users often use 7.5, which on the toy oversaturates colours.
DEFAULT_GUIDANCE = 5.0


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
    lora_blocks: list = field(default_factory=lambda: [None])  # block weight presets or dicts (blocks.py)
    control_schedule: list = field(default_factory=lambda: [None])  # ControlNet strength over steps (schedules.py)
    guidance: list | None = None   # CFG scale; None = the model's profile's (`profiles.spec_defaults`; the toy's 5)
    steps: list | None = None      # denoising steps; None = the profile's (the toy's 20)
    scheduler: list | None = None  # None = the profile's (the toy's ddim); A1111's names too ("DPM++ 2M Karras")
    clip_skip: list = field(default_factory=lambda: [None])  # A1111's Clip skip: 1 = the last layer, 2 = one before
    canny_low: list = field(default_factory=lambda: [100])  # controlnet_aux defaults
    canny_high: list = field(default_factory=lambda: [200])
    seed: list = field(default_factory=lambda: [0])
    control_image: str = "toy:a yellow star on a blue background"  # a file, or "toy:<caption>" (a toy scene)
    resolution: int | None = None  # short side in px; None = the model's trained size
    model: str = DEFAULT_MODEL     # load_pipeline name: preset, hub id or folder
    adapters: dict = field(default_factory=dict)  # adapter name -> LoRA file, each loaded once
    mode: str = "product"
    link: list = field(default_factory=list)  # groups of axes that step together inside a product (expansion.py)
    max_trials: int = 10_000       # a guard against typos that expand to millions of images
    metrics: bool | list = True    # metric names (metric_registry.py); true = [edge, toy], false = none
    metric_models: dict = field(default_factory=dict)  # metric name -> hub id or folder, e.g. {clip_score: ...}
    controls: dict = field(default_factory=dict)   # unit name -> {controlnet, image, preprocess} (units.py)
    unit_axes: dict = field(default_factory=dict)  # "canny.scale" -> values; YAML has them as top-level keys
    extra_axes: dict = field(default_factory=dict)  # a registered axis (`axes.register_axis`) -> values; top-level too
    base_dir: str | None = field(default=None, compare=False)  # the spec file's folder (set by load_spec, not saved)

    def __post_init__(self):
        """Axes become lists of plain values (a number, a tuple or a numpy array as given in Python); steps, guidance
        and scheduler left out come from the model's profile where its name places it (a preset), else they wait for
        `resolve_spec`, which reads the model's folder or file. No file is read here."""
        for name in AXES:
            if getattr(self, name) is not None:
                setattr(self, name, plain_values(getattr(self, name)))
        for name in ("unit_axes", "extra_axes"):
            if isinstance(getattr(self, name), dict):
                setattr(self, name, {key: plain_values(values) for key, values in getattr(self, name).items()})
        if any(getattr(self, name) is None for name in SPEC_KEYS):
            for name, value in (named_spec_defaults(self.model) or {}).items():
                if getattr(self, name) is None:
                    setattr(self, name, value)

    @property
    def units(self) -> list[Unit]:
        """The spec's ControlNet units (one unnamed unit when there is no `controls`)."""
        return spec_units(self.controls, self.model, self.control_image)

    def parameters(self) -> dict:
        """Every trial parameter with its values, in row order: the axes, then each unit's (`canny.scale`, ...).

        An optional axis (`lora_blocks`) is a parameter only when the spec sets it, so older
        specs keep their trial ids.
        """
        names = [name for name in AXES if (name not in OPTIONAL_AXES or getattr(self, name) != [None])
                 and not (name in SPEC_KEYS and getattr(self, name) is None)]  # None until resolved
        if not self.controls:
            return {**{name: getattr(self, name) for name in names}, **self.extra_axes}
        values = {name: getattr(self, name) for name in names if name not in UNIT_LEGACY_AXES}
        for unit in self.units:
            for param, default in UNIT_AXES.items():
                if param not in OPTIONAL_UNIT_AXES or unit.key(param) in self.unit_axes:
                    values[unit.key(param)] = self.unit_axes.get(unit.key(param), [default])
        return {**values, **self.extra_axes}

    @property
    def resolved(self) -> bool:
        """Whether the values a model's profile gives are filled in (`resolve_spec` fills them from its folder)."""
        return all(getattr(self, name) is not None for name in SPEC_KEYS)

    def resolve(self, path: str) -> str:
        """A file the spec names, as a path from here: relative ones are read from the spec file's folder."""
        if path.startswith(BUILT_IN_SOURCES) or self.base_dir is None or Path(path).expanduser().is_absolute():
            return path
        return str(Path(self.base_dir) / path)

    def resolved_units(self) -> list[Unit]:
        """The units, with their image files resolved (`resolve`)."""
        return [dataclasses.replace(unit, image=self.resolve(unit.image)) for unit in self.units]

    def resolved_adapters(self) -> dict:
        """`adapters`, with their files resolved (`resolve`)."""
        return {name: self.resolve(path) for name, path in self.adapters.items()}

    @property
    def axes(self) -> dict:
        """The parameters with more than one value."""
        return {name: values for name, values in self.parameters().items() if len(values) > 1}

    def to_dict(self) -> dict:
        """The spec as its YAML reads: per-unit axes as top-level keys, no empty `controls`."""
        data = dataclasses.asdict(self)
        del data["base_dir"]
        data.update(data.pop("unit_axes"))
        data.update(data.pop("extra_axes"))
        if not data["link"]:  # a spec from before `link` reads the same, so its folder knows it (growth.is_known)
            del data["link"]
        if not data["controls"]:
            del data["controls"]
        else:  # each unit has its own image and axes: the one-unit keys would be refused on reading
            for name in (*UNIT_LEGACY_AXES, "control_image"):
                del data[name]
        return data

    def to_text(self, as_json: bool = False) -> str:
        """The spec as YAML (or JSON) text, as `save` writes it."""
        return json.dumps(self.to_dict(), indent=2) if as_json else yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        """Write the spec as YAML (or JSON if the name ends in .json)."""
        path = Path(path)
        path.write_text(self.to_text(as_json=path.suffix == ".json"))


def plain_values(value) -> list:
    """An axis as a list of plain Python values: one value becomes a list; numpy arrays and scalars
    (np.linspace, np.arange) become floats and ints, so the spec saves as YAML and hashes stably."""
    if hasattr(value, "tolist") and getattr(value, "ndim", 1) == 0:
        value = value.tolist()  # a numpy scalar (np.float64(0.5)): one value
    values = list(value) if isinstance(value, (list, tuple)) or hasattr(value, "tolist") else [value]
    return [v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) else v for v in values]


def spec_from_dict(data: dict) -> SweepSpec:
    """Build and validate a spec; single values become one-element lists; unknown keys are errors."""
    try:
        return build_spec(data)
    except RecursionError:
        raise ValueError("the spec is nested too deeply to be a sweep spec (lists inside lists, hundreds deep)") from None


def build_spec(data: dict) -> SweepSpec:
    """`spec_from_dict` without its guard against values nested too deeply."""
    if not isinstance(data, dict):
        raise ValueError(f"a sweep spec must be a mapping of parameter names to values, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(SweepSpec)} - {"unit_axes", "extra_axes", "base_dir"} | set(REGISTERED)
    controls = data.get("controls") or {}
    check_controls(controls, reserved=known | set(AXES))
    unit_axes = {}
    for key in data:
        if is_unit_key(key) and str(key).partition(".")[0] in controls:
            unit_axes[key] = plain_values(data[key])
        elif is_unit_key(key):
            raise ValueError(f"{short(key)} names control unit {short(str(key).partition('.')[0])}, which `controls` does not "
                             f"define; units: {sorted(controls) or 'none'}")
        elif key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            raise ValueError(f"Unknown spec key: {short(key)}" + (f" (did you mean {short(close[0])}?)" if close else "")
                             + f"; known keys: {sorted(known)}")
    if controls:
        legacy = sorted(k for k in data if k in UNIT_LEGACY_AXES or k == "control_image")
        if legacy:
            unit = next(iter(controls))
            raise ValueError(f"with `controls`, each unit has its own image and axes: use `{unit}.scale`, "
                             f"`{unit}.start`, ... instead of {legacy}")
    extra_axes = {k: v for k, v in data.items() if k in REGISTERED}
    data = {k: v for k, v in data.items() if k not in unit_axes and k not in extra_axes}
    spec = SweepSpec(**data, unit_axes=unit_axes, extra_axes=extra_axes)  # axes are made plain lists as it is built
    check_spec(spec)
    return spec


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_spec(spec: SweepSpec) -> None:
    """Raise ValueError naming the parameter and value for anything that cannot run."""
    check_controls(spec.controls, reserved={f.name for f in dataclasses.fields(SweepSpec)} | set(AXES))
    if not isinstance(spec.unit_axes, dict):
        raise ValueError(f"`unit_axes` maps '<unit>.<param>' to values, got {short(spec.unit_axes)}")
    for key, values in spec.unit_axes.items():
        if not is_unit_key(key) or split_unit_key(key)[0] not in spec.controls:
            raise ValueError(f"unit axis {short(key)} must be '<unit>.<param>' with a unit of `controls` "
                             f"({sorted(spec.controls) or 'none'}) and a param of {list(UNIT_AXES)}")
        if not isinstance(values, list):
            raise ValueError(f"unit axis {short(key)} must be a list of values, got {short(values)}")
    unknown = sorted(set(spec.extra_axes) - set(REGISTERED)) if isinstance(spec.extra_axes, dict) else [spec.extra_axes]
    if unknown:
        raise ValueError(f"`extra_axes` names axes that are not registered: {short(unknown)}; registered: "
                         f"{sorted(REGISTERED) or 'none'} (axes.register_axis)")
    parameters = spec.parameters()
    for name, values in parameters.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"axis `{name}` is empty; give at least one value")
    for name, values in parameters.items():
        kind, axis = kind_of(name), axis_record(name)
        for value in values if axis.kind == "float" else []:
            low, high = axis.low, axis.high
            if not _is_number(value):
                raise ValueError(f"`{name}` values must be numbers, got {short(value)} ({type(value).__name__})")
            if high == 1 and not low <= value <= high:
                raise ValueError(f"`{name}` is a fraction of the steps and must be in [0, 1], got {value}")
            if value < low:
                raise ValueError(f"`{name}` must be >= {low}, got {value}")
        for value in values if kind == "control_schedule" else []:
            parse_schedule(value)  # unknown names, F outside (0, 1]: a did-you-mean error
        low = axis.low
        for value in values if axis.kind == "int" else []:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"`{name}` values must be integers >= {low}, got {short(value)} ({type(value).__name__})")
            if kind == "steps" and value > MAX_STEPS:
                raise ValueError(f"`{name}` {value} is over the limit of {MAX_STEPS} steps an image")
    if len(set(map(repr, spec.seed))) > MAX_SEEDS:
        raise ValueError(f"`seed` has {len(spec.seed):,} values, over the limit of {MAX_SEEDS} seeds a cell")
    for unit in spec.units:  # each unit draws a known condition (`conditions.py`)
        if not isinstance(unit.preprocess, str) or unit.preprocess not in PREPROCESSORS:
            raise ValueError(f"control unit {short(unit.name)}: `preprocess` is one of {list(PREPROCESSORS)}, "
                             f"got {short(unit.preprocess)}")
    for value in spec.prompt + spec.negative_prompt:
        if not isinstance(value, str):
            raise ValueError(f"prompts must be strings, got {short(value)} ({type(value).__name__})")
    for name, kind in (("adapters", dict), ("control_image", str), ("model", str), ("mode", str),
                       ("metric_models", dict)):
        if not isinstance(getattr(spec, name), kind):
            raise ValueError(f"`{name}` must be a {kind.__name__}, got {short(getattr(spec, name))}")
    metric_names(spec.metrics)  # true, false, or known names
    check_metric_models(spec.metric_models)
    for name, path in spec.adapters.items():
        if not isinstance(name, str) or not isinstance(path, str):
            raise ValueError(f"`adapters` maps names to LoRA files (strings), got {short(name)}: {short(path)}")
    for value in spec.adapter:
        if value is not None and not isinstance(value, str):
            raise ValueError(f"`adapter` values must be adapter names (strings) or null, got {short(value)}")
    for value in spec.scheduler or []:  # None: the model's, once resolved
        if not isinstance(value, str) or canonical_sampler(value) not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {short(value)}; known: {list(SCHEDULERS)}, or A1111's names "
                             f"({', '.join(sorted(a for a in ALIASES if a not in SCHEDULERS))})")
    for value in spec.adapter:
        if value is not None and value not in spec.adapters:
            raise ValueError(f"adapter {short(value)} is not loaded; `adapters` names {sorted(spec.adapters) or 'none'}. "
                             "Add it there as name: path/to/lora.safetensors")
    if any(w != 0 for w in spec.lora_weight) and spec.adapter == [None]:
        raise ValueError(f"`lora_weight` {spec.lora_weight} needs an adapter: set `adapter` (and `adapters`)")
    if spec.lora_blocks != [None]:
        if spec.adapter == [None]:
            raise ValueError(f"`lora_blocks` {spec.lora_blocks} weighs an adapter's blocks: set `adapter` (and `adapters`)")
        for value in spec.lora_blocks:
            block_scales(value)
    if spec.mode not in MODES:
        raise ValueError(f"`mode` must be one of {list(MODES)}, got {short(spec.mode)}")
    check_link(spec.link, spec.parameters(), spec.mode)
    if spec.mode == "zip" and len({len(v) for v in spec.axes.values()}) > 1:
        raise ValueError(f"mode 'zip' needs every axis to have the same length, got "
                         f"{ {k: len(v) for k, v in spec.axes.items()} }")
    sizes = named_size_range(spec.model)  # None for a folder or file: `resolve_spec` reads its configs
    if spec.resolution is not None and sizes is not None:
        sizes.check(spec.resolution, "resolution", repr(spec.model))
    if isinstance(spec.max_trials, bool) or not isinstance(spec.max_trials, int) or spec.max_trials < 1:
        raise ValueError(f"`max_trials` must be a positive integer, got {short(spec.max_trials)}")
    count = count_trials(spec)
    if count > spec.max_trials:
        raise ValueError(f"the spec expands to {count:,} trials, over max_trials={spec.max_trials:,}; "
                         "raise max_trials in the spec if you mean it")
    check_combinations(spec)


# Pairs of unit parameters that must hold together in every trial: (first, second, test, what is required).
PAIRED = (("start", "end", lambda start, end: start < end,
           "the ControlNet must start acting before it stops: start < end"),
          ("low", "high", lambda low, high: low <= high, "Canny's hysteresis needs low <= high"))


def combinations(spec: SweepSpec, names: tuple[str, ...]) -> list[tuple]:
    """The distinct value tuples of `names` that the expansion will produce, without expanding."""
    return pairs_of(spec.parameters(), names, spec.mode, spec.link)


def check_combinations(spec: SweepSpec) -> None:
    """Raise ValueError naming the first trial whose parameters cannot go together."""
    for unit, (first_param, second_param, holds, rule) in itertools.product(spec.units, PAIRED):
        first, second = unit.key(first_param), unit.key(second_param)
        for a, b in combinations(spec, (first, second)):
            if not holds(a, b):
                raise ValueError(f"`{first}` {a} with `{second}` {b} cannot run ({rule}); with mode "
                                 f"{short(spec.mode)} the spec pairs them. Change the values, or use mode "
                                 f"{'zip' if spec.mode == 'product' else 'product'} (or `link` them) if that is "
                                 "what you meant.")


def warn_duplicates(spec: SweepSpec) -> None:
    """Warn about repeated values on an axis: they make the same trial, which runs once."""
    for name, values in spec.parameters().items():
        values = [coerce(name, v) for v in values]
        repeated = sorted({repr(v) for v in values if values.count(v) > 1})
        if repeated:
            warnings.warn(f"axis `{name}` repeats {', '.join(repeated)}: each repeated value makes the same "
                          f"trials, which run once, so the axis has {len(set(map(repr, values)))} values, "
                          f"not {len(values)}", stacklevel=3)


def count_trials(spec: SweepSpec) -> int:
    """How many images the spec makes, without expanding it."""
    return count(spec.parameters(), spec.mode, spec.link)


def kind_of(name: str) -> str:
    """The top-level parameter a name behaves like: "canny.scale" -> "conditioning_scale"."""
    return LEGACY_KEYS[split_unit_key(name)[1]] if is_unit_key(name) else name


def expand(spec: SweepSpec, fingerprint: str = "", content: dict | None = None) -> list[Trial]:
    """Expand a spec into trials (a pure function: no model, no files).

    `content` maps a control image as the spec names it to its content ("sha256:..."): the trial
    id then hashes that instead of the name (a run folder's trial-id scheme 2; None is scheme 1,
    the name, for folders made before). A trial's params keep the name either way.
    """
    check_spec(spec)
    if not spec.resolved:
        raise ValueError(f"the spec leaves {[n for n in SPEC_KEYS if getattr(spec, n) is None]} to its model "
                         f"{short(spec.model)}'s profile: resolve_spec(spec) reads them from its folder first")
    parameters = {name: [coerce(name, v) for v in values] for name, values in spec.parameters().items()}
    fixed = {"control_image": spec.control_image} if not spec.controls else {
        f"{unit.name}.{field}": getattr(unit, field) for unit in spec.units for field in UNIT_FIELDS}
    image_keys = [unit.key("image") for unit in spec.units]
    by_content = {} if content is None else {key: content.get(fixed[key], fixed[key]) for key in image_keys}
    trials = []
    for index, combo in enumerate(combos(parameters, spec.mode, spec.link)):
        params = dict(combo, **fixed, resolution=spec.resolution)
        trials.append(Trial(trial_id({**params, **by_content}, fingerprint), index, params))
    return trials

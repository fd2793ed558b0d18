"""Sweep specs: what to run, in plain records (no torch).

    sweep_spec.py        SweepSpec, its checks, and `expand`: a spec's trials (trials.py: a trial and its id)
    resolve.py           the one step that reads the model's files: its defaults and size
    units.py             control units: each ControlNet's image, preprocessing and axes
    control_schedules.py a unit's strength over the denoising steps (constant, linear, step@F, ...)
    samplers.py          the samplers a spec names (ddim, euler, dpm++2m, ...)
    lora_blocks.py       LoRA block-weight presets (all, up-only, ...)
    sizes.py             the sizes a model accepts
    metric_registry.py   the metrics a spec may ask for, as records that name their scorer lazily
    shorten.py           values quoted short in error messages

`workbench.spec` itself offers what `sweep_spec.py` defines, as the single module of that name always did.
"""

from .sweep_spec import *  # noqa: F401,F403 (the spec's names, as `from workbench.spec import SweepSpec` expects)
from .sweep_spec import _is_number  # noqa: F401
from .files import load_spec, read_spec_file, read_yaml  # noqa: F401 (reading spec files)
from .resolve import resolve_spec  # noqa: F401 (the one step that reads the model's files)

"""The one step of a spec that reads the disk: its model's defaults filled in, its size checked.

Building, checking and expanding a spec read no file. A spec whose model its name places (a
preset, a hub id a family lists) has its defaults from the start; one whose model is a folder,
a single file or another hub id leaves steps, guidance and scheduler to `resolve_spec`, which
recognises the model's family from its files (`families.family_for`) and takes its base (GPU)
profile's values, whatever the machine, so trial ids never depend on where a spec runs. A run
folder records the resolved spec (spec.yaml), so reading it back reads no model.
"""

from __future__ import annotations

import dataclasses

from ..families import SPEC_KEYS, spec_defaults
from .sizes import size_range
from .sweep_spec import SweepSpec


def resolve_spec(spec: SweepSpec) -> SweepSpec:
    """`spec` with the values it leaves to its model's profile filled in and its resolution checked against the
    model's trained size, both read from the model's folder or file where its name does not say (the same spec when
    nothing is missing)."""
    if spec.resolution is not None:
        size_range(spec.model).check(spec.resolution, "resolution", repr(spec.model))
    if spec.resolved:
        return spec
    defaults = spec_defaults(spec.model)
    return dataclasses.replace(spec, **{name: defaults[name] for name in SPEC_KEYS if getattr(spec, name) is None})

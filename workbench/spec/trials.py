"""A trial: one image to make, its parameters as diffusers wants them, and the id that hashes them. No torch."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from .axes import axis_record
from .lora_blocks import block_label
from .samplers import canonical_sampler


def coerce(name: str, value):
    """The type diffusers wants: floats for scales (a single ControlNet rejects an int), ints for counts."""
    kind = axis_record(name).kind
    if kind == "float":
        return float(value)
    if kind == "int":
        return int(value)
    if kind == "blocks":
        return block_label(value)
    if kind == "sampler":  # A1111's spelling is resolved before trial ids hash it
        return canonical_sampler(value)
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

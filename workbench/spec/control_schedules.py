"""ControlNet strength schedules: how a unit's conditioning scale changes over the denoising steps. No torch here.

    canny.schedule: [constant, linear, cosine, step@0.5, ramp@0.3]

At step i of n the unit's residuals are multiplied by  scale x factor(i, n):
  constant   1 at every step (the default; what a spec without a schedule does)
  linear     from 1 at the first step down to 0 at the last
  cosine     the same fall, cosine-shaped: slow at first and last, fast in the middle
  step@F     1 while (i + 1) / n <= F, then 0: the same steps as `control_guidance_end: F`
  ramp@F     0 while i / n < F, then 1: the same steps as `control_guidance_start: F`
diffusers has only start and end (its `controlnet_keep`); a schedule is applied per image by the
sweep's scale hook (`models/scales.per_sample_scales`), so one batch can hold several schedules.
"""

from __future__ import annotations

import difflib
import math

from .shorten import short

NAMES = ("constant", "linear", "cosine")
CUTS = ("step", "ramp")  # written step@F, ramp@F with F in (0, 1]


def parse_schedule(value) -> tuple[str, float | None]:
    """(name, F) of a schedule value; a ValueError naming the value and what is allowed (with a guess) otherwise."""
    if value is None:
        return "constant", None
    if isinstance(value, str):
        name, at, fraction = value.partition("@")
        if not at and name in NAMES:
            return name, None
        if at and name in CUTS:
            try:
                f = float(fraction)
            except ValueError:
                f = math.nan
            if 0 < f <= 1:
                return name, f
            raise ValueError(f"schedule {short(value)}: F in {name}@F is a fraction of the steps in (0, 1]")
    allowed = [*NAMES, "step@F", "ramp@F"]
    close = difflib.get_close_matches(str(value).partition("@")[0], [*NAMES, *CUTS], n=1)
    raise ValueError(f"unknown schedule {short(value)}" + (f" (did you mean {close[0]!r}?)" if close else "")
                     + f"; schedules: {allowed}, F in (0, 1]")


def schedule_factor(value, step: int, steps: int) -> float:
    """The factor of a unit's scale at step `step` (from 0) of `steps`."""
    name, fraction = parse_schedule(value)
    last = max(1, steps - 1)
    if name == "constant":
        return 1.0
    if name == "linear":
        return 1.0 - step / last
    if name == "cosine":
        return 0.5 * (1 + math.cos(math.pi * step / last))
    if name == "step":
        return 1.0 if (step + 1) / steps <= fraction + 1e-9 else 0.0
    return 1.0 if step / steps >= fraction - 1e-9 else 0.0  # ramp


def schedule_curve(value, points: int = 20) -> list[float]:
    """The factor at `points` evenly spaced steps: what a grid header draws."""
    return [schedule_factor(value, i, points) for i in range(points)]

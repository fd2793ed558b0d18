"""The samplers a sweep can use: one table, read by the spec, the pipeline and the PNG infotext. No torch here.

Each sampler has the name a spec uses (`scheduler: euler_a`), the diffusers class that runs it,
and the name AUTOMATIC1111 writes into a PNG's infotext (`Sampler: Euler a`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sampler:
    """One sampler: the diffusers scheduler class's name and A1111's name for it."""
    diffusers_class: str
    a1111_name: str


SCHEDULERS = {
    "ddim": Sampler("DDIMScheduler", "DDIM"),
    "euler": Sampler("EulerDiscreteScheduler", "Euler"),
    "euler_a": Sampler("EulerAncestralDiscreteScheduler", "Euler a"),
    "dpm++2m": Sampler("DPMSolverMultistepScheduler", "DPM++ 2M"),
    "pndm": Sampler("PNDMScheduler", "PLMS"),  # A1111 calls PNDM's pseudo linear multistep PLMS
    "lms": Sampler("LMSDiscreteScheduler", "LMS"),
}

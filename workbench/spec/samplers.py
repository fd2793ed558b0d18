"""The samplers a sweep can use: one table, read by the spec, the pipeline and the PNG infotext. No torch here.

Each sampler has the name a spec uses (`scheduler: euler_a`), the diffusers class that runs it
and the config it sets, and the name AUTOMATIC1111 writes into a PNG's infotext (`Sampler: Euler a`).

Karras sigmas (Karras et al. 2022: noise levels spaced for fewer steps) are a variant of a sampler:
`dpm++2m_karras` is DPM-Solver++ 2M with `use_karras_sigmas`. A1111 before 1.9 named it
"DPM++ 2M Karras"; 1.9 and later write "Sampler: DPM++ 2M" with "Schedule type: Karras", and read
a missing schedule type as its default, which is Karras for DPM++ 2M. So infotext always says the
schedule type of a sampler that has a Karras twin ("Uniform" for the plain one), and a spec may
name a sampler by A1111's spelling too: it is resolved (`canonical_sampler`) before trial ids are made.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sampler:
    """One sampler: the diffusers scheduler class, the config it sets there, and A1111's name for it."""
    diffusers_class: str
    a1111_name: str
    karras: bool = False      # Karras sigmas: A1111's "Schedule type: Karras"
    options: tuple = ()       # other scheduler config values it sets, as (key, value) pairs

    def config(self, has_karras_twin: bool) -> dict:
        """What the pipeline's scheduler is built with (`from_config(..., **config)`): Karras sigmas on or off where a
        twin could have left them on, and the sampler's own options."""
        return {**({"use_karras_sigmas": self.karras} if has_karras_twin or self.karras else {}), **dict(self.options)}


SCHEDULERS = {
    "ddim": Sampler("DDIMScheduler", "DDIM"),
    "euler": Sampler("EulerDiscreteScheduler", "Euler"),
    "euler_a": Sampler("EulerAncestralDiscreteScheduler", "Euler a"),
    "dpm++2m": Sampler("DPMSolverMultistepScheduler", "DPM++ 2M", options=(("algorithm_type", "dpmsolver++"),)),
    "pndm": Sampler("PNDMScheduler", "PLMS"),  # A1111 calls PNDM's pseudo linear multistep PLMS
    "lms": Sampler("LMSDiscreteScheduler", "LMS"),
    "dpm++2m_karras": Sampler("DPMSolverMultistepScheduler", "DPM++ 2M", karras=True,
                              options=(("algorithm_type", "dpmsolver++"),)),
    "dpm++2m_sde_karras": Sampler("DPMSolverMultistepScheduler", "DPM++ 2M SDE", karras=True,
                                  options=(("algorithm_type", "sde-dpmsolver++"),)),
    "dpm++sde_karras": Sampler("DPMSolverSDEScheduler", "DPM++ SDE", karras=True),  # needs torchsde
    "lms_karras": Sampler("LMSDiscreteScheduler", "LMS", karras=True),
}


def has_karras_twin(name: str) -> bool:
    """Whether the sampler's A1111 name also exists with Karras sigmas or without (so its schedule type matters)."""
    sampler = SCHEDULERS[name]
    return any(other.a1111_name == sampler.a1111_name and other.karras != sampler.karras
               for other in SCHEDULERS.values())


def schedule_type(name: str) -> str | None:
    """What A1111 1.9+ writes as "Schedule type" for a sampler: Karras, Uniform for a Karras twin's plain one, else None."""
    return "Karras" if SCHEDULERS[name].karras else "Uniform" if has_karras_twin(name) else None


# A1111's spellings: "DPM++ 2M" (plain), "DPM++ 2M Karras" (before 1.9), and each spec name itself.
ALIASES = {**{s.a1111_name + (" Karras" if s.karras else ""): name for name, s in SCHEDULERS.items()},
           **{name: name for name in SCHEDULERS}}


def canonical_sampler(value):
    """A spec's `scheduler` value as its spec name ("DPM++ 2M Karras" -> "dpm++2m_karras"); other values unchanged."""
    return ALIASES.get(value, value) if isinstance(value, str) else value


def sampler_from_infotext(sampler: str, schedule: str | None) -> str:
    """The spec name of an infotext's "Sampler" and "Schedule type" (a name it does not know comes back as it is)."""
    if schedule == "Karras" and f"{sampler} Karras" in ALIASES:
        return ALIASES[f"{sampler} Karras"]
    return ALIASES.get(sampler, sampler)

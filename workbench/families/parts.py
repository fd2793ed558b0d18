"""The parts every family's pipeline has, asked the same way whatever the family. No imports."""

from __future__ import annotations


def unit_controlnets(controlnet) -> list:
    """A pipeline's ControlNets, one per control unit: a MultiControlNetModel's `nets`, or the one itself."""
    return list(getattr(controlnet, "nets", [controlnet]))


def trained_side(pipe, denoiser) -> int:
    """The image side a pipeline was trained at, in px (diffusers' default size): the denoiser's sample_size x the
    VAE's downscaling (`families.trained_size(pipe)` finds the denoiser)."""
    return denoiser.config.sample_size * pipe.vae_scale_factor

"""The parts every family's pipeline has, asked the same way whatever the family. No imports."""

from __future__ import annotations


def trained_size(pipe) -> int:
    """The image side the pipeline was trained at, in px (diffusers' default size): sample_size x VAE factor."""
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


def unit_controlnets(controlnet) -> list:
    """A pipeline's ControlNets, one per control unit: a MultiControlNetModel's `nets`, or the one itself."""
    return list(getattr(controlnet, "nets", [controlnet]))

"""The parts every family's pipeline has, asked the same way whatever the family; and how a UNet family's ControlNets
feed its denoiser (SD1.5's and SDXL's alike, so both family modules name these). No imports."""

from __future__ import annotations


def unit_controlnets(controlnet) -> list:
    """A pipeline's ControlNets, one per control unit: a MultiControlNetModel's `nets`, or the one itself."""
    return list(getattr(controlnet, "nets", [controlnet]))


def trained_side(pipe, denoiser) -> int:
    """The image side a pipeline was trained at, in px (diffusers' default size): the denoiser's sample_size x the
    VAE's downscaling (`families.trained_size(pipe)` finds the denoiser)."""
    return denoiser.config.sample_size * pipe.vae_scale_factor


def control_residuals(net, x, t, image, condition: dict, guess: bool = False, scale=1.0) -> list:
    """A ControlNet's residuals as one flat list: a UNet ControlNet's are each down block's, then the middle
    block's. `condition` holds the text (and SDXL's extras); at `scale` 1 the caller weights them itself (a
    MultiControlNetModel takes a list of images and scales, and sums its nets' residuals)."""
    down, mid = net(x, t, controlnet_cond=image, conditioning_scale=scale, guess_mode=guess, return_dict=False,
                    **condition)
    return [*down, mid]


def predict_noise(denoiser, x, t, residuals: list | None, condition: dict):
    """The denoiser's output with the ControlNets' summed residuals (`control_residuals`' layout; None: none) added."""
    down, mid = (None, None) if residuals is None else (residuals[:-1], residuals[-1])
    return denoiser(x, t, down_block_additional_residuals=down, mid_block_additional_residual=mid, return_dict=False,
                    **condition)[0]

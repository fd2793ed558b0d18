"""Look inside a ControlNet pipeline, for teaching: what the ControlNet adds, and where."""

from __future__ import annotations

import pandas as pd
import torch

from ..families import denoiser, family_of, trained_size, unit_controlnets


@torch.no_grad()
def controlnet_residuals(pipe, prompt: str = "", unit: int = 0, controlnet=None, control: str = "zeros") -> pd.DataFrame:
    """One row per zero convolution: the residual it adds into the UNet, its shape, weight norm and largest value.

    `controlnet` replaces the pipeline's (the unit-th) for this call; `control` is the image it reads: "zeros" (black)
    or "noise" (uniform noise, seed 0).

    A ControlNet is a trainable copy of the UNet's encoder that reads the control image.
    Each of its blocks ends in a 1x1 "zero convolution" (initialised to zero, so training
    starts from the unchanged UNet); their outputs are added to the UNet's skip connections
    (down blocks) and to its middle block, after multiplying by the conditioning scale.
    """
    size = trained_size(pipe)
    latent = size // pipe.vae_scale_factor
    device, dtype = pipe.device, denoiser(pipe).dtype
    sample = torch.zeros(1, denoiser(pipe).config.in_channels, latent, latent, device=device, dtype=dtype)
    family = family_of(pipe)
    context, extra = family.text_context(pipe, family.tokenize(pipe, [prompt]))
    control = (torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) if control == "noise"
               else torch.zeros(1, 3, size, size)).to(device, dtype)
    if controlnet is None:
        controlnet = unit_controlnets(pipe.controlnet)[unit]  # with several units, the unit-th
    residuals = family.control_residuals(controlnet, sample, torch.tensor([500], device=device), control,
                                         {"encoder_hidden_states": context.to(dtype), **extra})
    convs = list(controlnet.controlnet_down_blocks) + [controlnet.controlnet_mid_block]
    rows = []
    for i, (residual, conv) in enumerate(zip(residuals, convs)):
        is_mid = i == len(residuals) - 1
        rows.append({"zero_conv": "controlnet_mid_block" if is_mid else f"controlnet_down_blocks.{i}",
                     "adds_to": "UNet middle block" if is_mid else f"UNet skip connection {i}",
                     "residual_shape (C, H, W)": tuple(residual.shape[1:]),
                     "weight_norm": float(conv.weight.float().norm()),
                     "max_abs": float(residual.abs().max())})
    return pd.DataFrame(rows)

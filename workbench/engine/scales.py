"""Each image its own ControlNet strength inside one batched call: a forward hook per ControlNet.

diffusers takes one scale per ControlNet for a whole call. A sweep batches images that differ in
scale (and in their strength over the steps, `spec/control_schedules.py`), so a hook scales each
image's residuals instead; `generate` and the sweep's batches both draw through it.
"""

from __future__ import annotations

import numbers
from contextlib import ExitStack, contextmanager

import torch

from ..families import unit_controlnets
from ..spec.control_schedules import schedule_factor


def check_scale(scale, name: str = "controlnet_conditioning_scale") -> float:
    """Return `scale` as a float, or raise if it is not a finite non-negative number."""
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise ValueError(f"`{name}` must be a non-negative float, got {scale!r} ({type(scale).__name__})")
    scale = float(scale)  # a single ControlNet rejects an int scale, so always pass a float
    if not scale >= 0 or scale == float("inf"):
        raise ValueError(f"`{name}` must be a finite number >= 0, got {scale}")
    return scale



@contextmanager
def per_sample_scales(controlnet, scales: list[float], schedules: list | None = None, total_steps=None):
    """Inside this block, the ControlNet's residuals for image i are multiplied by scales[i] (x its schedule).

    diffusers accepts one float scale per ControlNet. A forward hook scales each image's
    residuals instead, so images at different scales share one batched call. With
    classifier-free guidance the batch is [unconditional..., conditional...], so the
    scales repeat once per half: a (2B, 1, 1, 1) tensor. With `schedules` (one per image,
    `schedules.py`), the hook counts its calls, one a denoising step, and multiplies image i's
    scale by its schedule's factor at that step of `total_steps()` (the scheduler's own count).
    """
    factors = torch.tensor([check_scale(s) for s in scales])
    scheduled = schedules is not None and any(s not in (None, "constant") for s in schedules)
    calls = [0]

    def scale_residuals(module, inputs, output):
        down, mid = output
        step_factors = factors
        if scheduled:
            steps = total_steps()
            step_factors = factors * torch.tensor([schedule_factor(s, calls[0], steps) for s in schedules])
            calls[0] += 1
        per_image = step_factors.to(mid.device, mid.dtype).repeat(mid.shape[0] // len(factors)).view(-1, 1, 1, 1)
        return [residual * per_image for residual in down], mid * per_image

    handle = controlnet.register_forward_hook(scale_residuals)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def per_unit_scales(controlnet, scales_by_unit: list[list[float]], schedules_by_unit: list | None = None,
                    total_steps=None):
    """`per_sample_scales` on each ControlNet of a pipeline: scales_by_unit[u][i] for unit u, image i.

    With several units the pipeline holds a MultiControlNetModel, which calls each of its
    `nets` and sums their residuals; a hook on each net scales its own share, per image.
    """
    nets = unit_controlnets(controlnet)
    if len(nets) != len(scales_by_unit):
        raise ValueError(f"{len(scales_by_unit)} units' scales for {len(nets)} ControlNets")
    with ExitStack() as stack:
        for u, (net, scales) in enumerate(zip(nets, scales_by_unit)):
            schedules = schedules_by_unit[u] if schedules_by_unit is not None else None
            stack.enter_context(per_sample_scales(net, scales, schedules, total_steps))
        yield

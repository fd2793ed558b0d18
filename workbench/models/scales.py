"""Each image its own ControlNet strength inside one batched call: a forward hook per ControlNet.

diffusers takes one scale per ControlNet for a whole call. A sweep batches images that differ in
scale (and in their strength over the steps, `spec/control_schedules.py`), so a hook scales each
image's residuals instead; `generate` and the sweep's batches both draw through it.

The hook is one function, and what it multiplies by is a record on the ControlNet (`ImageScales`),
set for the length of a call. Under torch.compile that matters: the compiled ControlNet guards on
the hooks it calls, so a new hook each batch would recompile it each batch. `keep_scale_hooks`
(which `compile_pipeline` calls) leaves the hook in place, and it runs outside the compiled graph.
"""

from __future__ import annotations

import numbers
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..families import unit_controlnets
from ..spec.control_schedules import schedule_factor

SCALES = "_workbench_image_scales"  # the ControlNet's attribute holding this call's ImageScales (or None)
KEPT = "_workbench_scale_hook"      # the hook's handle, on a ControlNet whose hook stays (compiled)


def check_scale(scale, name: str = "controlnet_conditioning_scale") -> float:
    """Return `scale` as a float, or raise if it is not a finite non-negative number."""
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise ValueError(f"`{name}` must be a non-negative float, got {scale!r} ({type(scale).__name__})")
    scale = float(scale)  # a single ControlNet rejects an int scale, so always pass a float
    if not scale >= 0 or scale == float("inf"):
        raise ValueError(f"`{name}` must be a finite number >= 0, got {scale}")
    return scale


@dataclass
class ImageScales:
    """What one call multiplies each image's residuals by: a scale per image, times its schedule's factor at the step
    (the hook counts its calls, one a denoising step, of `total_steps()`, the scheduler's own count)."""
    factors: torch.Tensor                     # (B,) one scale per image
    schedules: list | None = None             # one schedule per image, or None: constant
    total_steps: Callable[[], int] | None = None
    calls: int = field(default=0)

    def at_this_step(self) -> torch.Tensor:
        """The images' factors at the current step (and count the step)."""
        if self.schedules is None:
            return self.factors
        steps = self.total_steps()
        step = torch.tensor([schedule_factor(s, self.calls, steps) for s in self.schedules])
        self.calls += 1
        return self.factors * step


@torch.compiler.disable  # runs eagerly, outside a compiled ControlNet's graph: its record changes every call
def scale_residuals(module, inputs, output):
    """The forward hook: each image's residuals times its factor (every tensor the ControlNet returns: a UNet
    ControlNet's down-block list and middle-block tensor). With classifier-free guidance the batch is
    [unconditional..., conditional...], so the factors repeat once per half: a (2B, 1, 1, 1) tensor."""
    scales = getattr(module, SCALES, None)
    if scales is None:
        return output
    first = first_tensor(output)
    factors = scales.at_this_step()
    per_image = factors.to(first.device, first.dtype).repeat(first.shape[0] // len(factors)).view(-1, 1, 1, 1)
    return times(output, per_image)


def first_tensor(output):
    """The first tensor in a ControlNet's output (tensors in nested tuples and lists)."""
    return output if isinstance(output, torch.Tensor) else first_tensor(output[0])


def times(output, per_image):
    """Every tensor in a ControlNet's output times `per_image`, in the output's own nesting."""
    if isinstance(output, torch.Tensor):
        return output * per_image
    return type(output)(times(part, per_image) for part in output)


def keep_scale_hooks(controlnet) -> None:
    """Register the scale hook on each of a pipeline's ControlNets for good (it does nothing outside a call)."""
    for net in unit_controlnets(controlnet):
        if getattr(net, KEPT, None) is None:
            object.__setattr__(net, KEPT, net.register_forward_hook(scale_residuals))


@contextmanager
def per_sample_scales(controlnet, scales: list[float], schedules: list | None = None, total_steps=None):
    """Inside this block, the ControlNet's residuals for image i are multiplied by scales[i] (x its schedule).

    The hook is registered for the block and removed after it, unless `keep_scale_hooks` keeps it.
    """
    scheduled = schedules is not None and any(s not in (None, "constant") for s in schedules)
    record = ImageScales(torch.tensor([check_scale(s) for s in scales]), schedules if scheduled else None, total_steps)
    previous = getattr(controlnet, SCALES, None)
    object.__setattr__(controlnet, SCALES, record)
    handle = None if getattr(controlnet, KEPT, None) is not None else controlnet.register_forward_hook(scale_residuals)
    try:
        yield
    finally:
        object.__setattr__(controlnet, SCALES, previous)
        if handle is not None:
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

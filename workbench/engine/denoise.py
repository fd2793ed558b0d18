"""The engine's own denoising loop, so that trials sharing their first steps compute them once.

`pipe(...)` takes a batch from noise to images in one call. A sweep of `canny.end: [0.25, 0.5,
0.75, 1.0]` at 20 steps makes four images per seed that follow one path for the first 5 steps:
the same seed, prompt and ControlNet strength so far. Drawn apart they cost 80 UNet
sample-steps; only 50 are distinct (5 + 10 + 15 + 20). This loop is the pipeline's, written
out, computing each distinct prefix once and then branching:

    latents = noise(seed) * init_noise_sigma
    for i, t in enumerate(timesteps):
        trials whose factors differ at step i split: each branch copies its parent's latents,
        its scheduler history and its generator
        x = scale_model_input(cat([latents, latents]), t)            # classifier-free guidance
        residuals = sum over units u of factor[u] * controlnet_u(x, t, text, control_u)
                                                    (guess mode: the conditional half only, zeros for the other)
        uncond, cond = unet(x, t, text, + residuals).chunk(2)
        latents = scheduler.step(uncond + g * (cond - uncond), t, latents, generator=...)
    image = vae.decode(latents / scaling_factor)

A unit's factor at step i is its scale x its schedule (`schedules.py`) x 1 inside its
[start, end] (diffusers' `controlnet_keep`). What SD1.5 and SDXL add to the text conditioning
comes from their family module (`loop_conditioning`). Branching is exact in exact arithmetic;
in floats an image equals the unshared pipeline's within rounding (a batch's composition
changes the order of sums). Under torch.compile each new batch size compiles again, so a
branching sweep pays a few extra compilations. Steps are counted by the scheduler's own
timesteps (PNDM runs one more than `steps`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..families import denoiser, family_of, unit_controlnets
from ..spec.control_schedules import schedule_factor

# Scheduler attributes that hold one entry per batch row (its history); branching indexes them by row.
ROW_STATE = ("model_outputs", "ets", "derivatives", "cur_sample", "cur_model_output", "last_sample", "sample",
             "prev_derivative", "dt")


def keep(step: int, steps: int, start: float, end: float) -> float:
    """1 while the ControlNet acts at `step` of `steps` (inside [start, end]), else 0: diffusers' rule."""
    return 1.0 - float(step / steps < start or (step + 1) / steps > end)


def unit_factors(params: dict, units, steps: int) -> np.ndarray:
    """(units, steps): each unit's residual factor per step for one trial: scale x schedule x keep."""
    return np.array([[params[unit.key("scale")] * schedule_factor(params.get(unit.key("schedule")), i, steps)
                      * keep(i, steps, params[unit.key("start")], params[unit.key("end")]) for i in range(steps)]
                     for unit in units], dtype=np.float64)


def branch_rows(seeds: list[int], factors: np.ndarray) -> list[list[int]]:
    """For each step, the row of each trial: trials share a row while their seed and every factor so far agree.

    `factors` is (trials, units, steps). Row numbers count from 0 at each step, in order of first use.
    """
    rows, previous = [], list(seeds)
    for step in range(factors.shape[2]):
        keys = [(previous[b], tuple(factors[b, :, step])) for b in range(len(seeds))]
        number = {key: r for r, key in enumerate(dict.fromkeys(keys))}
        previous = [number[key] for key in keys]
        rows.append(previous)
    return rows


@dataclass
class Branching:
    """What a batch computed: UNet sample-steps done, what one row per trial would do, and each trial's shared steps."""
    sample_steps: int
    unshared_steps: int
    shared_steps: list[int]  # per trial: steps whose row also served another trial


def branching(rows: list[list[int]]) -> Branching:
    """Count the work of `branch_rows`' plan."""
    shared = [sum(row.count(row[b]) > 1 for row in rows) for b in range(len(rows[0]))]
    return Branching(sum(max(row) + 1 for row in rows), len(rows) * len(rows[0]), shared)


def shares_a_prefix(seeds: list[int], factors: np.ndarray) -> bool:
    """Whether branching saves work: two trials that end apart start on one row."""
    rows = branch_rows(seeds, factors)
    return len(set(rows[-1])) > len(set(rows[0]))


def parents(before: list[int], after: list[int]) -> list[int]:
    """For each row after a step's split, the row it came from."""
    found: dict[int, int] = {}
    for old, new in zip(before, after):
        found.setdefault(new, old)
    return [found[r] for r in range(len(found))]


def index_rows(scheduler, index: torch.Tensor, rows: int) -> None:
    """Give each new row the scheduler history of its parent row (multistep samplers keep some)."""
    def pick(value):
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == rows:
            return value[index.to(value.device)]
        if isinstance(value, list):
            return [pick(item) for item in value]
        return value
    for name in ROW_STATE:
        if hasattr(scheduler, name):
            setattr(scheduler, name, pick(getattr(scheduler, name)))


def cloned(generator: torch.Generator) -> torch.Generator:
    """A generator in the same state: a branch of an ancestral sampler draws the noise its parent would."""
    copy = torch.Generator(generator.device)
    copy.set_state(generator.get_state())
    return copy


def control_tensor(pipe, control, width: int, height: int, dtype) -> torch.Tensor:
    """A control image as the ControlNet reads it: (1, 3, H, W), resized and normalised by the pipeline."""
    return pipe.prepare_image(image=control, width=width, height=height, batch_size=1, num_images_per_prompt=1,
                              device=pipe.device, dtype=dtype, do_classifier_free_guidance=False, guess_mode=False)


def guess_mode(pipe) -> bool:
    """Whether the pipeline runs its ControlNets in guess mode: diffusers turns it on for the whole call when the
    first ControlNet's config pools its conditions (`global_pool_conditions`, as a shuffle ControlNet's does)."""
    return bool(getattr(unit_controlnets(pipe.controlnet)[0].config, "global_pool_conditions", False))


def conditional_half(condition):
    """The conditional rows of CFG's stacked [unconditional, conditional] keywords (tensors, nested in dicts)."""
    if isinstance(condition, dict):
        return {name: conditional_half(value) for name, value in condition.items()}
    return condition[condition.shape[0] // 2:]


def decode(pipe, latents: torch.Tensor) -> np.ndarray:
    """Latents to (N, H, W, 3) floats in [0, 1], as the pipeline decodes (fp32 where the VAE asks for it)."""
    vae = pipe.vae
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    latents = latents.to(next(vae.post_quant_conv.parameters()).dtype)
    mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
    if mean is not None and std is not None:
        mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents.device, latents.dtype)
        std = torch.tensor(std).view(1, -1, 1, 1).to(latents.device, latents.dtype)
        latents = latents * std / vae.config.scaling_factor + mean
    else:
        latents = latents / vae.config.scaling_factor
    image = vae.decode(latents, return_dict=False)[0]
    if upcast:
        vae.to(torch.float16)
    return pipe.image_processor.postprocess(image, output_type="np")


@torch.no_grad()
def denoise(pipe, embeddings: dict, controls: list, seeds: list[int], factors: np.ndarray, steps: int,
            guidance: float) -> tuple[np.ndarray, Branching]:
    """Draw one image per trial, computing the steps that trials share once.

    Args:
        embeddings: one prompt's embeddings, as its family's `encode` gives them.
        controls: one control image (PIL) per unit, all of one size (the images' size).
        seeds: one per trial. factors: (trials, units, scheduler steps), from `unit_factors`.
        steps, guidance: denoising steps and classifier-free guidance; the pipeline's scheduler is used
            (`pipe.scheduler.set_timesteps(steps)` must give as many timesteps as `factors` has).
    Returns (images as (trials, H, W, 3) floats in [0, 1], the branching's bookkeeping).
    """
    unet = denoiser(pipe)
    scheduler, device, dtype = pipe.scheduler, pipe.device, unet.dtype
    scheduler.set_timesteps(steps, device=device)
    if len(scheduler.timesteps) != factors.shape[2]:
        raise ValueError(f"factors cover {factors.shape[2]} steps; the scheduler runs {len(scheduler.timesteps)}")
    plan = branch_rows(seeds, factors)
    width, height = controls[0].size
    nets = unit_controlnets(pipe.controlnet)
    images = [control_tensor(pipe, control, width, height, net.dtype) for net, control in zip(nets, controls)]
    family = family_of(pipe)
    firsts = [plan[0].index(r) for r in range(max(plan[0]) + 1)]  # the first trial on each row
    generators = [torch.Generator("cpu").manual_seed(seeds[b]) for b in firsts]
    shape = (1, unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    latents = torch.cat([torch.randn(shape, generator=g, dtype=dtype).to(device) for g in generators])
    latents = latents * scheduler.init_noise_sigma
    rows = len(generators)
    guess = guess_mode(pipe)  # the ControlNets then read only the conditional half; the other half gets no residuals
    condition = family.loop_conditioning(pipe, embeddings, rows, height, width)
    for i, t in enumerate(scheduler.timesteps):
        if i and plan[i] != plan[i - 1]:  # some rows split: branch them
            index = parents(plan[i - 1], plan[i])
            picked = torch.tensor(index)
            latents = latents[picked.to(device)]
            index_rows(scheduler, picked, rows)
            generators = [cloned(generators[p]) for p in index]
            rows = len(index)
            condition = family.loop_conditioning(pipe, embeddings, rows, height, width)
        on_row = [plan[i].index(r) for r in range(rows)]
        x = scheduler.scale_model_input(torch.cat([latents, latents]), t)
        net_x, net_condition, halves = (x[rows:], conditional_half(condition), 1) if guess else (x, condition, 2)
        residuals = None  # summed over the units, in the family's layout (a UNet's: down blocks', then the middle's)
        for u, (net, image) in enumerate(zip(nets, images)):
            weights = torch.tensor([factors[b, u, i] for b in on_row], dtype=dtype, device=device)
            if not weights.any():
                continue  # a unit switched off on every row adds nothing
            unit = family.control_residuals(net, net_x, t, image.repeat(halves * rows, 1, 1, 1), net_condition, guess)
            weights = weights.repeat(halves).view(-1, 1, 1, 1)
            unit = [r * weights for r in unit]
            residuals = unit if residuals is None else [a + b for a, b in zip(residuals, unit)]
        if guess and residuals is not None:  # as the pipeline does: zero residuals for the unconditional half
            residuals = [torch.cat([torch.zeros_like(r), r]) for r in residuals]
        noise = family.predict_noise(unet, x, t, residuals, condition)
        uncond, cond = noise.chunk(2)
        step_kwargs = pipe.prepare_extra_step_kwargs(generators, 0.0)
        latents = scheduler.step(uncond + guidance * (cond - uncond), t, latents, **step_kwargs, return_dict=False)[0]
    decoded = decode(pipe, latents)
    last = plan[-1]
    return decoded[[last[b] for b in range(len(seeds))]], branching(plan)

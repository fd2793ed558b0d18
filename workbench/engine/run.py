"""A sweep's run stage: a batch of trials -> images, one pipeline call each (or the engine's own loop), with the
out-of-memory backoff and one sweep at a time on a pipeline.

    call_pipeline          one pipeline call; a per-image scale (and schedule) hook on each ControlNet
    generate_batch         the engine's own loop (`denoise.py`) where trials share their first steps, else the above
    generate_with_backoff  calls of at most `BatchLimit.size` images, halving it on out-of-memory
    embeddings_for         prompt embeddings, kept per text-encoder input
    pipeline_in_use        a lock: one sweep at a time on one pipeline (a notebook cell and the panel)
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np
import torch

from ..families import family_of, repeat, unit_controlnets
from ..lora import text_encoder_weight
from ..spec.sweep_spec import Trial
from ..spec.units import Unit
from .denoise import denoise, shares_a_prefix, unit_factors
from ..models.scales import per_unit_scales


def check_controlnets(pipe, units: list[Unit]) -> None:
    """Refuse a pipeline whose number of ControlNets differs from the spec's units."""
    have = len(unit_controlnets(pipe.controlnet))
    if have != len(units):
        names = [u.controlnet for u in units]
        raise ValueError(f"the spec has {len(units)} control unit(s) ({', '.join(u.name or 'control' for u in units)}) "
                         f"but the pipeline has {have} ControlNet(s); load it with "
                         f"load_pipeline(model, controlnet={names!r})")


def embeddings_for(pipe, params: dict, cache: dict) -> dict:
    """Prompt embeddings as pipeline keywords, computed once per text-encoder input and kept.

    The key holds everything that changes the text encoders' output: the prompt, the negative
    prompt, the weight of the active adapter where it has text-encoder layers (kohya files
    often do), and `clip_skip`. An adapter on the UNet alone shares its prompts' embeddings across every weight,
    which is where the cache saves its time. Call it after the trial's adapter is switched on.
    """
    text_weight = text_encoder_weight(pipe, params["adapter"], params["lora_weight"], params.get("lora_blocks"))
    key = (params["prompt"], params["negative_prompt"], None if text_weight is None else params["adapter"], text_weight,
           params.get("clip_skip"))
    if key not in cache:
        cache[key] = family_of(pipe).encode(pipe, params["prompt"], params["negative_prompt"], params.get("clip_skip"))
    return cache[key]


LEGACY_UNIT = Unit("", "", "")  # the one unnamed unit of a spec without `controls`


def call_pipeline(pipe, params: dict, trials: list[Trial], controls, embeddings,
                  units: list[Unit] = (LEGACY_UNIT,), pipe_kwargs: dict | None = None) -> np.ndarray:
    """One pipeline call for a batch of trials: (B, H, W, 3) floats in [0, 1], NaN left visible.

    Each image has its own generator (its seed) and its own conditioning scale per unit;
    `controls` is one image per unit (or a single image for a single unit). `pipe_kwargs` adds
    keywords of the diffusers call (`generate`'s width, height, guess_mode, ...).
    """
    controls = controls if isinstance(controls, list) else [controls]
    one = len(units) == 1

    def per_unit(param: str):  # what diffusers takes: a value for one ControlNet, a list for several
        values = [params[unit.key(param)] for unit in units]
        return values[0] if one else values

    generators = [torch.Generator("cpu").manual_seed(t.params["seed"]) for t in trials]
    scales = [[t.params[unit.key("scale")] for t in trials] for unit in units]
    schedules = [[t.params.get(unit.key("schedule")) for t in trials] for unit in units]
    with torch.no_grad(), per_unit_scales(pipe.controlnet, scales, schedules, lambda: len(pipe.scheduler.timesteps)):
        return pipe(**repeat(embeddings, len(trials)), image=controls[0] if one else controls,
                    num_inference_steps=params["steps"], guidance_scale=params["guidance"],
                    controlnet_conditioning_scale=1.0 if one else [1.0] * len(units),  # the hooks scale each image
                    control_guidance_start=per_unit("start"), control_guidance_end=per_unit("end"),
                    **{"width": controls[0].width, "height": controls[0].height, **(pipe_kwargs or {})},
                    generator=generators, output_type="np").images


def generate_batch(pipe, params: dict, trials: list[Trial], controls, embeddings, units: list[Unit],
                   share_prefix: bool, pipe_kwargs: dict | None = None) -> tuple[list, list[int]]:
    """A batch's images and each trial's `shared_steps`: by the engine's own loop where its trials share a
    prefix or differ in start and end (`denoise.py`), else by one pipeline call (`call_pipeline`).

    The one function that makes images: a sweep's batches, `generate` and the blends (through it) all call it."""
    controls = controls if isinstance(controls, list) else [controls]
    if share_prefix:  # the caller has set the batch's sampler (`set_scheduler`), as for `call_pipeline`
        pipe.scheduler.set_timesteps(params["steps"], device=pipe.device)  # its own count of steps (PNDM: one more)
        steps = len(pipe.scheduler.timesteps)
        factors = np.stack([unit_factors(t.params, units, steps) for t in trials])
        seeds = [t.params["seed"] for t in trials]
        windows = {tuple((t.params[u.key("start")], t.params[u.key("end")]) for u in units) for t in trials}
        if len(windows) > 1 or shares_a_prefix(seeds, factors):
            images, plan = denoise(pipe, embeddings, controls, seeds, factors, params["steps"], params["guidance"])
            return list(images), plan.shared_steps
    return list(call_pipeline(pipe, params, trials, controls, embeddings, units, pipe_kwargs)), [0] * len(trials)


class BatchLimit:
    """The most images per pipeline call; an out-of-memory error lowers it for the rest of the sweep."""

    def __init__(self, size: int):
        self.size = size


def generate_with_backoff(pipe, params, trials, controls, embeddings, limit: BatchLimit, log=print,
                          units: list[Unit] = (LEGACY_UNIT,), share_prefix: bool = False) -> tuple[list, list]:
    """Generate `trials` in calls of at most `limit.size` images; on out-of-memory, halve it and go on.
    Returns the images and each trial's shared steps."""
    images, shared = [], []
    while len(images) < len(trials):
        chunk = trials[len(images):len(images) + limit.size]
        try:
            chunk_images, chunk_shared = generate_batch(pipe, params, chunk, controls, embeddings, units, share_prefix)
            images, shared = images + chunk_images, shared + chunk_shared
        except torch.OutOfMemoryError:
            if len(chunk) == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            limit.size = len(chunk) // 2
            log(f"out of memory at batch {len(chunk)}; going on with batches of {limit.size}")
    return images, shared


_MAKING_LOCKS = threading.Lock()


@contextmanager
def pipeline_in_use(pipe, log):
    """One sweep at a time on one pipeline: a notebook cell's sweep waits while the panel's runs (in its thread),
    since both switch the pipeline's adapters and scheduler."""
    with _MAKING_LOCKS:  # two threads must not each make a lock for one pipeline
        if not hasattr(pipe, "_workbench_lock"):
            pipe._workbench_lock = threading.RLock()
    if not pipe._workbench_lock.acquire(blocking=False):
        log("another sweep is running on this pipeline (the panel?): waiting for it to finish; press its Stop")
        pipe._workbench_lock.acquire()
    try:
        yield
    finally:
        pipe._workbench_lock.release()

"""Generate images with a ControlNet pipeline: one batched call, one torch.Generator per image."""

from __future__ import annotations

import numbers
from contextlib import ExitStack, contextmanager, nullcontext
import re
import warnings

import torch
from PIL import Image

from ..families import family_of, repeat, spec_defaults, unit_controlnets
from ..spec.control_schedules import parse_schedule, schedule_factor
from ..spec.sweep_spec import DEFAULT_GUIDANCE  # one CFG default for generate() and sweeps


def check_scale(scale, name: str = "controlnet_conditioning_scale") -> float:
    """Return `scale` as a float, or raise if it is not a finite non-negative number."""
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise ValueError(f"`{name}` must be a non-negative float, got {scale!r} ({type(scale).__name__})")
    scale = float(scale)  # a single ControlNet rejects an int scale, so always pass a float
    if not scale >= 0 or scale == float("inf"):
        raise ValueError(f"`{name}` must be a finite number >= 0, got {scale}")
    return scale


def check_seeds(seeds) -> list[int]:
    """Return `seeds` as a list of ints, or raise naming the first seed that is not an integer."""
    seeds = [seeds] if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool) else list(seeds)
    if not seeds:
        raise ValueError("`seeds` must hold at least one integer seed")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seeds must be non-negative integers, got {seed!r} ({type(seed).__name__})")
    return [int(s) for s in seeds]


def prompt_token_count(pipe, prompt: str) -> int:
    """How many tokens `prompt` takes, with the start and end tokens."""
    return len(pipe.tokenizer(prompt, truncation=False).input_ids)


def warn_long_prompt(pipe, prompt: str) -> None:
    """Warn when `prompt` is longer than the tokenizer keeps (the rest is cut off)."""
    count, limit = prompt_token_count(pipe, prompt), pipe.tokenizer.model_max_length
    if count > limit:
        warnings.warn(f"prompt {prompt!r} is {count} tokens; the model reads only the first {limit}, "
                      "the rest is ignored", stacklevel=3)


SMALL_VOCABULARY = 5000  # word-level toy vocabularies; real CLIP (49k BPE tokens) spells any word


def known_words(tokenizer) -> list[str]:
    """The whole words a small tokenizer knows (its vocabulary entries that end a word)."""
    return sorted(token[:-4] for token in tokenizer.get_vocab() if token.endswith("</w>") and len(token) > 4)


def warn_unknown_words(pipe, prompt: str) -> None:
    """Warn, naming the words, when a small-vocabulary model (the toy) never learnt a prompt word."""
    if len(pipe.tokenizer) > SMALL_VOCABULARY:
        return
    vocabulary = pipe.tokenizer.get_vocab()
    unknown = [w for w in re.findall(r"[a-z]+", prompt.lower()) if w + "</w>" not in vocabulary]
    if unknown:
        warnings.warn(f"prompt words {unknown} are out of this model's vocabulary, so it cannot draw them; "
                      f"it knows: {', '.join(named_words(known_words(pipe.tokenizer)))} (and short words)",
                      stacklevel=3)


def named_words(words: list[str]) -> list[str]:
    """The words worth naming in a warning: three letters or more, and not the tail of a longer one (a byte-pair
    vocabulary also holds word pieces such as "ircle" of "circle", and every single letter)."""
    long = [w for w in words if len(w) >= 3]
    return [w for w in long if not any(other != w and other.endswith(w) for other in long)]


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


def sampling_defaults(pipe, steps: int | None, guidance: float | None) -> tuple[int, float]:
    """`steps` and `guidance`, or where None a spec's defaults for the model `pipe` was loaded as (its GPU
    profile's, whatever the machine, as a sweep takes them), else 20 and 5."""
    name = getattr(pipe, "workbench_model", None)
    defaults = spec_defaults(name) if name else {"steps": [20], "guidance": [DEFAULT_GUIDANCE]}
    return (steps if steps is not None else defaults["steps"][0],
            guidance if guidance is not None else defaults["guidance"][0])


def generate(pipe, prompt: str, control: Image.Image, seeds, *, scale: float = 1.0, steps: int | None = None,
             guidance: float | None = None, negative_prompt: str = "", width: int | None = None,
             height: int | None = None, schedule: str | None = None, clip_skip: int | None = None,
             **pipe_kwargs) -> list[Image.Image]:
    """Generate one image per seed in one pipeline call; image i equals a lone call with seeds[i].

    Args:
        pipe: a StableDiffusionControlNetPipeline (see `load_pipeline`).
        prompt: the text prompt; `negative_prompt` steers away from text ("" means none: SDXL then uses zeros).
        control: the control image (e.g. from `make_canny`); its size sets the output size
            unless `width`/`height` are given.
        seeds: an int or a list of ints; each image gets its own torch.Generator.
        scale: ControlNet conditioning scale: 0 ignores the control, 1 is the trained strength.
        steps, guidance: denoising steps and classifier-free guidance scale (CFG); default: what a sweep
            spec takes for the model the pipeline was loaded as (the toy's 20 and 5, SD1.5's 30 and 7.5).
        schedule: the ControlNet's strength over the steps (`schedules.py`: "linear", "step@0.5", ...), as a
            sweep's `control_schedule`; None or "constant" keeps `scale` at every step.
        clip_skip: A1111's Clip skip: 1 (or None) reads the text encoder's last layer, 2 the one before, ...
    """
    scale = check_scale(scale)
    seeds = check_seeds(seeds)
    steps, guidance = sampling_defaults(pipe, steps, guidance)
    if not isinstance(prompt, str):
        raise ValueError(f"`prompt` must be a string, got {prompt!r} ({type(prompt).__name__})")
    warn_long_prompt(pipe, prompt)
    warn_unknown_words(pipe, prompt)
    width = width or control.width
    height = height or control.height
    # The pipeline draws each image's starting noise from its own generator, so a batch of
    # seeds gives the same images as one call per seed. Generators live on the CPU:
    # the same seed then gives the same noise on every device.
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
    # An empty negative prompt is None on every path (a sweep's too): SDXL then uses zeros for it, as diffusers
    # intends (`force_zeros_for_empty_prompt`); "" would be encoded as text and give another image.
    negative = [negative_prompt] * len(seeds) if negative_prompt else None
    if schedule not in (None, "constant"):  # a hook scales the residuals per step, as in a sweep
        parse_schedule(schedule)  # an unknown name is refused before the first step
        hooks = per_sample_scales(pipe.controlnet, [scale] * len(seeds), [schedule] * len(seeds),
                                  lambda: len(pipe.scheduler.timesteps))
        scale = 1.0
    else:
        hooks = nullcontext()
    # With Clip skip, the prompt embeddings come from the family's `encode`, as a sweep's do (diffusers' own SD1.5
    # clip-skip path fails with transformers 5).
    prompts = ({"prompt": [prompt] * len(seeds), "negative_prompt": negative} if not clip_skip else
               repeat(family_of(pipe).encode(pipe, prompt, negative_prompt, clip_skip), len(seeds)))
    with hooks:
        result = pipe(**prompts, image=control, num_inference_steps=steps, guidance_scale=guidance,
                      controlnet_conditioning_scale=scale, generator=generators,
                      width=width, height=height, **pipe_kwargs)
    return result.images

"""Generate images with a ControlNet pipeline: one batched call, one torch.Generator per image.

`generate` is the engine's front door for one prompt: it checks its arguments and draws through the
same function as a sweep's batches (`run.generate_batch`), so the two cannot drift apart.
"""

from __future__ import annotations

import numbers
import re
import warnings

import numpy as np
from PIL import Image

from ..families import family_of, spec_defaults
from ..spec.control_schedules import parse_schedule
from ..spec.sweep_spec import DEFAULT_GUIDANCE, Trial  # one CFG default for generate() and sweeps
from . import run
from ..models.scales import check_scale, per_sample_scales, per_unit_scales  # noqa: F401 (their old home, re-exported)


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
             output_type: str = "pil", **pipe_kwargs) -> list[Image.Image]:
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
        output_type: "pil" (a list of PIL images) or "np" (a (B, H, W, 3) array of floats in [0, 1]).
        pipe_kwargs: more keywords of the diffusers pipeline call (control_guidance_start/end, guess_mode, ...).
    """
    scale = check_scale(scale)
    seeds = check_seeds(seeds)
    steps, guidance = sampling_defaults(pipe, steps, guidance)
    if not isinstance(prompt, str):
        raise ValueError(f"`prompt` must be a string, got {prompt!r} ({type(prompt).__name__})")
    if output_type not in ("pil", "np"):
        raise ValueError(f"`output_type` is 'pil' (PIL images) or 'np' (floats in [0, 1]), got {output_type!r}")
    if schedule not in (None, "constant"):
        parse_schedule(schedule)  # an unknown name is refused before the first step
    warn_long_prompt(pipe, prompt)
    warn_unknown_words(pipe, prompt)
    # A sweep's batch of one prompt: each image its own seed (its own CPU generator, so a batch equals one call per
    # seed) and the unit's scale and schedule; the start and end of a ControlNet's action as diffusers' keywords.
    unit = run.LEGACY_UNIT
    params = {"steps": steps, "guidance": guidance, unit.key("start"): pipe_kwargs.pop("control_guidance_start", 0.0),
              unit.key("end"): pipe_kwargs.pop("control_guidance_end", 1.0)}
    trials = [Trial("", i, {"seed": seed, unit.key("scale"): scale, unit.key("schedule"): schedule})
              for i, seed in enumerate(seeds)]
    # The family's prompt embeddings, as a sweep's: an empty negative prompt is None on every path (SDXL then uses
    # zeros for it, as diffusers intends with `force_zeros_for_empty_prompt`).
    embeddings = family_of(pipe).encode(pipe, prompt, negative_prompt, clip_skip)
    size = {"width": width or control.width, "height": height or control.height}
    images, _ = run.generate_batch(pipe, params, trials, [control], embeddings, [unit],
                                   share_prefix=False, pipe_kwargs={**size, **pipe_kwargs})
    return np.stack(images) if output_type == "np" else pipe.image_processor.numpy_to_pil(np.stack(images))

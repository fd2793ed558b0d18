"""Study blends of LoRA adapters, and what fusing them into the weights buys.

`lora.blend_adapters` switches several adapters on at once, each at its weight, and
`lora.fused_lora` writes a blend into the weights (see `lora/adapters.py` for the algebra).
Two adapters that learned the same thing add up: 0.5 + 0.5 acts about like one adapter at 1,
and 1 + 1 overshoots like one at 2; adapters that learned different things mix. Here:
`blend_table` draws blends on scenes and scores them, and `time_fusing` times a blend with
and without fusing and checks both draw the same images.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .control import control_for
from .families import trained_size
from .generation import generate
from .lora import blend_adapters, lora_components, lora_off
from .toy.scores import scene_scores


def blend_label(weights: dict) -> str:
    """A short name for a blend: "live 0.5 + r4-s1 0.5"; "base" when every weight is 0."""
    parts = [f"{name} {weight:g}" for name, weight in weights.items() if weight]
    return " + ".join(parts) or "base"


def blend_table(pipe, blends: list[dict], captions: list[str], control_sources: list[str], seed: int = 0,
                steps: int = 20, guidance: float | None = None) -> tuple[pd.DataFrame, dict]:
    """Draw every blend on every caption; a row per image, scored where the toy world can score it.

    Args:
        blends: a list of {adapter: weight} dicts; {} or all-zero weights draw the base model.
        captions, control_sources: one prompt per scene and its control (`toy:<caption>`,
            a file, ...); toy captions get `style_strength`, `colour_fidelity` and `shape_iou`.
    Returns (table, images), images keyed by (blend label, scene index).
    """
    if len(captions) != len(control_sources):
        raise ValueError(f"{len(captions)} captions but {len(control_sources)} control sources; give one each")
    size = trained_size(pipe)
    extra = {} if guidance is None else {"guidance": guidance}
    rows, images = [], {}
    for blend in blends:
        label = blend_label(blend)
        if any(blend.values()):
            blend_adapters(pipe, blend)
        else:
            lora_off(pipe)
        for i, (caption, source) in enumerate(zip(captions, control_sources)):
            image = generate(pipe, caption, control_for(source, size), seeds=seed, steps=steps, **extra)[0]
            images[(label, i)] = image
            rows.append({"blend": label, **{f"w_{k}": v for k, v in blend.items()}, "scene": i, "prompt": caption,
                         **scene_scores(image, caption, source)})
    lora_off(pipe)
    return pd.DataFrame(rows), images


@dataclass
class FuseTiming:
    """Seconds per image with the LoRA branch and fused, the fuse and unfuse themselves, and what changed."""
    unfused_seconds: float      # median seconds per image, adapters applied as a separate branch
    fused_seconds: float        # median seconds per image, the blend written into the weights
    fuse_seconds: float
    unfuse_seconds: float
    fused_difference: float     # largest pixel difference (0-255), fused against unfused images
    restored_difference: float  # largest pixel difference (0-255), base before the fuse against after the unfuse

    @property
    def speedup(self) -> float:
        return self.unfused_seconds / self.fused_seconds


def largest_difference(a, b) -> float:
    """The largest per-pixel difference (0-255) between two lists of images."""
    return float(max(np.abs(np.asarray(x, np.float32) - np.asarray(y, np.float32)).max() for x, y in zip(a, b)))


def time_fusing(pipe, weights: dict, prompt: str, control, seeds=(0,), steps: int = 20, repeats: int = 3) -> FuseTiming:
    """Time one blend with and without fusing (median of `repeats` calls each), and check both agree.

    The unfused and fused images should differ only by float rounding, and the base model
    drawn after `unfuse_lora` should be the base drawn before the fuse.
    """
    def timed(run):
        seconds, out = [], None
        for _ in range(repeats):
            started = time.perf_counter()
            out = run()
            seconds.append(time.perf_counter() - started)
        return float(np.median(seconds)) / len(seeds), out

    draw = lambda: generate(pipe, prompt, control, seeds=list(seeds), steps=steps)  # noqa: E731
    lora_off(pipe)
    base_before = draw()
    blend_adapters(pipe, weights)
    unfused_seconds, unfused = timed(draw)
    components = lora_components(pipe)
    started = time.perf_counter()
    pipe.fuse_lora(components=components, adapter_names=list(weights))
    fuse_seconds = time.perf_counter() - started
    try:
        fused_seconds, fused = timed(draw)
    finally:
        started = time.perf_counter()
        pipe.unfuse_lora(components=components)
        unfuse_seconds = time.perf_counter() - started
    lora_off(pipe)
    base_after = draw()
    return FuseTiming(unfused_seconds, fused_seconds, fuse_seconds, unfuse_seconds,
                      largest_difference(unfused, fused), largest_difference(base_before, base_after))

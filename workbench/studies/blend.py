"""Study blends of LoRA adapters, and what fusing them into the weights buys.

`lora.blend_adapters` switches several adapters on at once, each at its weight, and
`lora.fused_lora` writes a blend into the weights (see `lora/adapters.py` for the algebra).
Two adapters that learned the same thing add up: 0.5 + 0.5 acts about like one adapter at 1,
and 1 + 1 overshoots like one at 2; adapters that learned different things mix. Here:
`blend_table` draws blends on scenes and scores them with the model's profile's metrics, and `time_fusing` times a blend with
and without fusing and checks both draw the same images.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..models.control import control_for
from ..families import trained_size
from ..engine.generation import generate
from ..lora import blend_adapters, fuse, lora_off, unfuse
from ..spec.metric_registry import ALWAYS, AfterContext, ScoringContext, metric_names, metrics_running
from ..models.pipeline import model_name
from ..models.profiles import profile
from ..engine.scoring import check_metrics, writer_scores
from ..spec.resolve import resolve_spec
from ..spec.sweep_spec import expand, spec_from_dict


def blend_label(weights: dict) -> str:
    """A short name for a blend: "live 0.5 + r4-s1 0.5"; "base" when every weight is 0."""
    parts = [f"{name} {weight:g}" for name, weight in weights.items() if weight]
    return " + ".join(parts) or "base"


def blend_table(pipe, blends: list[dict], captions: list[str], control_sources: list[str], seed: int = 0,
                steps: int | None = None, guidance: float | None = None, model: str | None = None,
                metrics: list | None = None, out_dir: str | Path | None = None) -> tuple[pd.DataFrame, dict]:
    """Draw every blend on every caption, and the base model beside them; a row per image, scored.

    Args:
        blends: a list of {adapter: weight} dicts; {} or all-zero weights draw the base model,
            which is drawn anyway as the reference of metrics that compare with weight 0.
        captions, control_sources: one prompt per scene and its control (`toy:<caption>`, a file, ...).
        steps, metrics: default to the profile of `model` (the name the pipeline was loaded by):
            on the toy `style_strength`, `colour_fidelity` and `shape_iou`; on any model edge F1
            against the control and `lora_effect` (pixel distance from the base image), and
            `clip_score`/`dino_distance` where the profile requests them.
        out_dir: where the images are written for the metrics that read files (default: a new
            temporary folder).
    Returns (table, images), images keyed by (blend label, scene index).
    """
    if len(captions) != len(control_sources):
        raise ValueError(f"{len(captions)} captions but {len(control_sources)} control sources; give one each")
    model = model_name(pipe, model)
    chosen = profile(model, pipe.device.type)
    names = metric_names(list(chosen.metrics if metrics is None else metrics))
    check_metrics(names)  # a metric's missing model weights stop us before the first image
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="workbench-blends-"))
    out.mkdir(parents=True, exist_ok=True)
    size, steps = trained_size(pipe), steps or chosen.steps
    extra = {} if guidance is None else {"guidance": guidance}
    drawn = blends if any(not any(blend.values()) for blend in blends) else [{}, *blends]
    rows, images = [], {}
    for b, blend in enumerate(drawn):
        label = blend_label(blend)
        if any(blend.values()):
            blend_adapters(pipe, blend)
        else:
            lora_off(pipe)
        for i, (caption, source) in enumerate(zip(captions, control_sources)):
            spec = resolve_spec(spec_from_dict({"model": model, "prompt": [caption], "control_image": source,
                                                "seed": [seed], "steps": [steps],
                                                **({"guidance": [guidance]} if guidance is not None else {})}))
            control = control_for(source, size)
            image = generate(pipe, caption, control, seeds=seed, steps=steps, **extra)[0]
            images[(label, i)] = image
            path = out / f"blend{b}-scene{i}.png"
            image.save(path)
            context = ScoringContext(model, spec.resolved_units(), [control], expand(spec)[0].params, spec.metric_models)
            rows.append({"blend": label, **{f"w_{k}": v for k, v in blend.items()}, "scene": i, "prompt": caption,
                         "control_image": source, "seed": seed, "adapter": label,
                         "lora_weight": float(sum(blend.values())), "state": "COMPLETE", "trial_id": f"{b}-{i}",
                         "image_path": str(path), **writer_scores(names, image, context)})
    lora_off(pipe)
    return scored_after(pd.DataFrame(rows), names, out, pipe.device), images


def scored_after(table: pd.DataFrame, names: list[str], out: Path, device) -> pd.DataFrame:
    """The table with the after-sweep metrics among `names` (and `lora_effect`) filled in from its image files."""
    context = AfterContext(table, out, device, {})
    for metric in metrics_running([*names, *ALWAYS], "after"):
        for trial, scores in metric.score_function()(table, context, {metric.name}).items():
            for column, value in scores.items():
                table.loc[table.trial_id == trial, column] = value
    return table.drop(columns=["state", "trial_id", "adapter"])


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


def time_fusing(pipe, weights: dict, prompt: str, control, seeds=(0,), steps: int | None = None,
                repeats: int = 3) -> FuseTiming:
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
    started = time.perf_counter()
    components = fuse(pipe, list(weights))
    fuse_seconds = time.perf_counter() - started
    try:
        fused_seconds, fused = timed(draw)
    finally:
        started = time.perf_counter()
        unfuse(pipe, components)
        unfuse_seconds = time.perf_counter() - started
    lora_off(pipe)
    base_after = draw()
    return FuseTiming(unfused_seconds, fused_seconds, fuse_seconds, unfuse_seconds,
                      largest_difference(unfused, fused), largest_difference(base_before, base_after))

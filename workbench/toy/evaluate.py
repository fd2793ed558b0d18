"""Measure the toy model: does it draw the prompt's colours, follow the control's edges, and how fast?

Each measurement draws images (`generate`) and reads them with the scores of `scores.py`.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from ..models.control import make_canny
from ..families import trained_size
from ..engine.generation import generate
from ..metrics.scorers import control_edge_scores, foreground_mask, mask_iou
from .scores import generated_shape_mask, region_colour, shape_regions
from .world import Scene, render_mask, render_scene


def measure_fidelity(pipe, scenes: list[Scene], seed: int = 0, steps: int = 20, guidance: float = 5.0,
                     scale: float = 1.0) -> pd.DataFrame:
    """One image per scene (controlled at `scale`); a row each with the colours read back."""
    size = trained_size(pipe)
    rows = []
    for scene in scenes:
        control = make_canny(render_scene(scene, size), resolution=size)
        [image] = generate(pipe, scene.caption, control, seed, scale=scale, steps=steps, guidance=guidance)
        inside, outside = shape_regions(scene, size)
        rows.append({"caption": scene.caption, "shape_colour": region_colour(image, inside),
                     "background_colour": region_colour(image, outside), "want_shape": scene.color,
                     "want_background": scene.background})
    table = pd.DataFrame(rows)
    table["shape_ok"] = table.shape_colour == table.want_shape
    table["background_ok"] = table.background_colour == table.want_background
    table["both_ok"] = table.shape_ok & table.background_ok
    return table


def measure_control(pipe, scenes: list[Scene], scales=(0.0, 0.25, 0.5, 0.75, 1.0, 1.5), seed: int = 0,
                    steps: int = 20, guidance: float = 5.0) -> pd.DataFrame:
    """Edge precision/recall/F1 (and shape IoU) of each scene at each conditioning scale."""
    size = trained_size(pipe)
    rows = []
    for scene in scenes:
        control = make_canny(render_scene(scene, size), resolution=size)
        silhouette = np.asarray(render_mask(scene, size)) > 127
        for scale in scales:
            [image] = generate(pipe, scene.caption, control, seed, scale=scale, steps=steps, guidance=guidance)
            scores = control_edge_scores(control, image)
            rows.append({"caption": scene.caption, "scale": scale, "precision": scores.precision,
                         "recall": scores.recall, "f1": scores.f1,
                         "shape_iou": mask_iou(silhouette, generated_shape_mask(image, scene))})
    return pd.DataFrame(rows)


def measure_mask_control(pipe, scenes: list[Scene], scales=(0.0, 0.25, 0.5, 0.75, 1.0, 1.5), seed: int = 0,
                         steps: int = 20, guidance: float = 5.0) -> pd.DataFrame:
    """Shape IoU of each scene at each scale of a mask ControlNet, whose control is the scene's silhouette."""
    size = trained_size(pipe)
    rows = []
    for scene in scenes:
        mask = render_mask(scene, size)
        silhouette = np.asarray(mask) > 127
        for scale in scales:
            [image] = generate(pipe, scene.caption, mask.convert("RGB"), seed, scale=scale, steps=steps,
                               guidance=guidance)
            rows.append({"caption": scene.caption, "scale": scale,
                         "shape_iou": mask_iou(silhouette, generated_shape_mask(image, scene)),
                         "foreground_iou": mask_iou(silhouette, foreground_mask(image))})
    return pd.DataFrame(rows)


def measure_speed(pipe, batch: int = 8, steps: int = 20, repeats: int = 3, guidance: float = 5.0) -> float:
    """Median seconds for one batched controlled generation (after one warm-up call)."""
    size = trained_size(pipe)
    scene = Scene("circle", "red", "blue", 0.5, 0.5, 0.3, 0)
    control = make_canny(render_scene(scene, size), resolution=size)
    seeds = list(range(batch))
    generate(pipe, scene.caption, control, seeds, steps=steps, guidance=guidance)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        generate(pipe, scene.caption, control, seeds, steps=steps, guidance=guidance)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

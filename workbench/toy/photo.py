"""A toy scene as a "photo": light falling across it, a soft shadow, and grain.

The flat scenes of `world.py` have one kind of edge, the shape's, as strong as an edge can
be, so every pair of Canny thresholds finds the same map. A photo has edges of every
strength: the shape's outline (strong), the shadow's rim (medium), the shading and the grain
(weak). Low thresholds keep them all; high ones keep only the outline. This is the picture
that shows what the thresholds do (notebook 01).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from .world import PALETTE, Scene, draw_silhouette


def render_photo(scene: Scene, size: int = 64, grain: float = 10.0, seed: int = 0) -> Image.Image:
    """`scene` lit from the top left, with a drop shadow and Gaussian grain (`grain` grey levels)."""
    side = size * 4
    mask = np.asarray(draw_silhouette(scene, side), np.float32) / 255
    shadow = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).transform(
        (side, side), Image.AFFINE, (1, 0, -side * 0.06, 0, 1, -side * 0.06)).filter(
        ImageFilter.GaussianBlur(side * 0.03)), np.float32) / 255
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    light = 1.15 - 0.45 * (x + y) / 2                       # brighter at the top left
    background = np.array(PALETTE[scene.background], np.float32) * light[..., None]
    background *= 1 - 0.45 * shadow[..., None] * (1 - mask[..., None])
    shape = np.array(PALETTE[scene.color], np.float32) * (0.85 + 0.3 * (1 - y))[..., None]
    pixels = background * (1 - mask[..., None]) + shape * mask[..., None]
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).resize((size, size), Image.LANCZOS)
    noise = np.random.default_rng(seed).normal(0, grain, (size, size, 1))
    return Image.fromarray((np.asarray(image, np.float32) + noise).clip(0, 255).astype(np.uint8))

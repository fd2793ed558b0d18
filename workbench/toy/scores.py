"""Score a toy image: which colours it drew, how much style it shows, how well its shape fits the scene.

Colours are read by a nearest-palette classifier: the median colour of a region, named
by the closest of the world's seven colours. The shape region is the scene's silhouette
shrunk by 2 px, the background its complement grown by 2 px, so edge pixels don't vote.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from ..spec.metric_registry import ScoringContext
from ..metrics.scorers import mask_iou
from ..spec.sweep_spec import TOY_SOURCES
from .world import (OUTLINE_WIDTH, PALETTE, Scene, render_mask, render_scene, rim_shade, scene_from_caption,
                    stripe_period)

COLOUR_NAMES = sorted(PALETTE)
COLOUR_VALUES = np.array([PALETTE[name] for name in COLOUR_NAMES], dtype=np.float32)
MIN_PIXELS = 20  # fewer pixels than this are too few to measure a style in


def classify_colour(rgb) -> str:
    """The palette colour nearest to `rgb` (Euclidean distance in RGB)."""
    distances = ((COLOUR_VALUES - np.asarray(rgb, np.float32)) ** 2).sum(axis=1)
    return COLOUR_NAMES[int(distances.argmin())]


def region_colour(image, region: np.ndarray) -> str:
    """The palette name of the median colour of `image` inside the boolean `region`."""
    pixels = np.asarray(image)[region]
    return classify_colour(np.median(pixels, axis=0)) if len(pixels) else "none"


def shape_regions(scene: Scene, size: int, margin: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(inside, outside) boolean masks of the scene's shape, each `margin` px away from its edge."""
    silhouette = (np.asarray(render_mask(scene, size)) > 127).astype(np.uint8)
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    inside = cv2.erode(silhouette, kernel).astype(bool)
    outside = ~cv2.dilate(silhouette, kernel).astype(bool)
    return inside, outside


def generated_shape_mask(image, scene: Scene) -> np.ndarray:
    """Pixels nearer to the prompt's shape colour than to its background colour."""
    pixels = np.asarray(image, np.float32)
    to_shape = ((pixels - np.array(PALETTE[scene.color])) ** 2).sum(-1)
    to_background = ((pixels - np.array(PALETTE[scene.background])) ** 2).sum(-1)
    return to_shape < to_background


def shifted_correlation(grey: np.ndarray, inside: np.ndarray, dx: float, dy: float) -> float | None:
    """Correlation of the grey values inside with those (dx, dy) pixels further on, also inside.

    None when fewer than MIN_PIXELS have a partner inside (a small shape, a long shift).
    """
    move = np.float32([[1, 0, -dx], [0, 1, -dy]])  # output (x, y) reads input (x + dx, y + dy)
    size = grey.shape[::-1]
    moved = cv2.warpAffine(grey, move, size, flags=cv2.INTER_LINEAR, borderValue=0)
    both = inside & (cv2.warpAffine(inside.astype(np.float32), move, size, flags=cv2.INTER_LINEAR) > 0.99)
    a, b = grey[both], moved[both]
    if len(a) < MIN_PIXELS:
        return None
    if a.std() < 1e-6 or b.std() < 1e-6:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def stripe_periodicity(grey: np.ndarray, inside: np.ndarray, period: float) -> float:
    """How much the region repeats every `period` pixels and flips every half period, at best in [0, 1].

    Stripes match themselves one period along their normal (correlation near +1) and their
    negative half a period along (near -1): the score is half the difference, at the best
    direction (every 5 degrees) and period (0.85x, 1x, 1.15x). Where the shape is too small
    to hold a whole period, the half-period flip alone counts. A blotch or a flat colour
    does neither, and scores near 0.
    """
    best = 0.0
    for degrees in range(0, 180, 5):
        ux, uy = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
        for p in period * np.array([0.85, 1.0, 1.15]):
            flip = shifted_correlation(grey, inside, p / 2 * ux, p / 2 * uy)
            if flip is None:
                continue
            repeat = shifted_correlation(grey, inside, p * ux, p * uy)
            best = max(best, -flip if repeat is None else (repeat - flip) / 2)
    return best


def stripe_strength(image, scene: Scene) -> float:
    """How much the shape looks drawn in zebra style: 0 for a flat shape, about 1 for drawn stripes.

    The periodicity of the shape's interior (see `stripe_periodicity`) times its contrast
    relative to the same scene drawn in zebra style (capped at 1). Faint stripes score low,
    and so do round blotches drawn on a flat shape (about 0.1, see the tests). It is not a
    judge of the look: the holes and rings of a half-trained LoRA can score 0.5, and wavy
    bands less, so look at the images as well.
    """
    size = image.size[0]
    inside, _ = shape_regions(scene, size, margin=1)
    if inside.sum() < MIN_PIXELS:
        return 0.0
    grey = np.asarray(image.convert("L"), np.float32)
    drawn = np.asarray(render_scene(replace(scene, style="zebra"), size).convert("L"), np.float32)
    contrast = min(1.0, grey[inside].std() / max(drawn[inside].std(), 1e-6))
    return stripe_periodicity(grey, inside, stripe_period(size)) * contrast


def shade(rgb, towards_white: bool) -> np.ndarray:
    """Luminance (0-255), counted up towards white, or towards black when `towards_white` is False."""
    luminance = np.asarray(rgb, np.float32) @ np.float32([0.299, 0.587, 0.114])
    return luminance if towards_white else 255 - luminance


def outline_strength(image, scene: Scene) -> float:
    """How much the shape looks drawn in outlined style: 0 for a flat shape, about 1 for a drawn rim.

    An outline is a thin band along the shape's edge that is darker (for a black rim; lighter
    for a white one) than both the shape's interior and the background. The score looks at
    2-px bands from 4 px outside the edge to 4 px inside, so a rim drawn a little off the edge
    still counts, and takes the best: how far the band's median shade goes beyond the
    interior's and background's, as a fraction of the drawn rim's. A shape that darkens all
    over, or an edge blurred between two colours, scores near 0. Where the rim's shade is the
    background's (a white rim on white), only bands inside the shape count.
    """
    size = image.size[0]
    silhouette = (np.asarray(render_mask(scene, size)) > 127).astype(np.uint8)
    signed = (cv2.distanceTransform(silhouette, cv2.DIST_L2, 3)              # + inside the shape,
              - cv2.distanceTransform(1 - silhouette, cv2.DIST_L2, 3))      # - outside it
    rim = rim_shade(scene.color, scene.background)
    white = rim == PALETTE["white"]
    shades = shade(image.convert("RGB"), white)
    drawn = {name: float(shade(PALETTE[name], white)) for name in (scene.color, scene.background)}
    target = float(shade(rim, white))
    margin = OUTLINE_WIDTH * size + 2
    interior, background = shades[signed >= margin], shades[signed <= -margin]
    if len(interior) < MIN_PIXELS:  # a small star: its deepest pixels stand for the interior
        interior = shades.ravel()[np.argsort(signed.ravel())[-MIN_PIXELS:]]
    inner = float(np.median(interior))
    outer = float(np.median(background)) if len(background) >= MIN_PIXELS else drawn[scene.background]
    rim_shows_outside = target - drawn[scene.background] > 50
    floor = max(inner, outer) if rim_shows_outside else inner
    full = max(target - (max(drawn.values()) if rim_shows_outside else drawn[scene.color]), 50.0)
    best = 0.0
    for offset in range(-4 if rim_shows_outside else 0, 3):
        band = shades[(signed > offset) & (signed <= offset + 2)]
        if len(band) >= MIN_PIXELS:
            best = max(best, (float(np.median(band)) - floor) / full)
    return float(min(best, 1.0))


STYLE_STRENGTH = {"outlined": outline_strength, "zebra": stripe_strength}


def style_strength(image, scene: Scene) -> float:
    """How much `image` shows the style named in `scene` (0 none, about 1 drawn); see the per-style scores."""
    if scene.style not in STYLE_STRENGTH:
        raise ValueError(f"scene style {scene.style!r} has no strength score; styles: {sorted(STYLE_STRENGTH)}")
    return STYLE_STRENGTH[scene.style](image, scene)


def scene_scores(image, prompt: str, control_source: str) -> dict:
    """Style and content of one toy image, as results-table columns (empty when they don't apply).

    The shape's place comes from the control (`toy:<caption>` or `toy-mask:<caption>`, a
    centred scene); its colours and style from the prompt, which must be a toy caption.
      style_strength: the prompt's style (outline rim or zebra stripes), 0 none to about 1;
        NaN where the prompt names no style.
      colour_fidelity: 1.0 when both the shape's and the background's colours are the
        prompt's, else 0.0 (its mean over rows is the share of images that keep both).
      shape_iou: the generated shape (pixels nearer the shape's colour than the
        background's) against the control scene's silhouette.
    """
    if not control_source.startswith(TOY_SOURCES):
        return {}
    try:
        asked = scene_from_caption(prompt.strip())
    except ValueError:
        return {}
    placed = scene_from_caption(control_source.split(":", 1)[1])
    scene = replace(placed, color=asked.color, background=asked.background, style=asked.style)
    image = image.convert("RGB")
    inside, outside = shape_regions(scene, image.size[0])
    kept = region_colour(image, inside) == scene.color and region_colour(image, outside) == scene.background
    silhouette = np.asarray(render_mask(scene, image.size[0])) > 127
    silhouette = silhouette[:, :, 0] if silhouette.ndim == 3 else silhouette
    return {"style_strength": style_strength(image, scene) if scene.style else float("nan"),
            "colour_fidelity": float(kept), "shape_iou": mask_iou(generated_shape_mask(image, scene), silhouette)}


def row_scores(image, context: ScoringContext) -> dict:
    """The `toy` metric: style and content columns for a toy-model row with a toy-scene control (else none).

    It applies when the model is the toy and a unit's control is a toy scene (`toy:<caption>`
    or `toy-mask:<caption>`); see `scene_scores`.
    """
    if context.model != "toy":
        return {}
    source = next((u.image for u in context.units if u.image.startswith(TOY_SOURCES)), None)
    return {} if source is None else scene_scores(image, context.params["prompt"], source)

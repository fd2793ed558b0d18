"""A toy scene as a "photo": light falling across it, a soft shadow, and grain.

The flat scenes of `world.py` have one kind of edge, the shape's, as strong as an edge can
be, so every pair of Canny thresholds finds the same map. A photo has edges of every
strength: the shape's outline (strong), the shadow's rim (medium), the shading and the grain
(weak). Low thresholds keep them all; high ones keep only the outline. This is the picture
that shows what the thresholds do (notebook 01).

A scene with a style is drawn in it (the outline's rim, the zebra stripes), lit the same way:
a folder of such photos (`write_photo_folder`) is the offline stand-in for a real style
dataset, on which lesson 02 trains a LoRA on any model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from .world import PALETTE, Scene, draw_silhouette, render_scene, sample_scenes


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
    fill = (np.asarray(render_scene(scene, size).resize((side, side), Image.BICUBIC), np.float32) if scene.style
            else np.array(PALETTE[scene.color], np.float32))  # a style's rim or stripes, else the flat colour
    shape = fill * (0.85 + 0.3 * (1 - y))[..., None]
    pixels = background * (1 - mask[..., None]) + shape * mask[..., None]
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).resize((size, size), Image.LANCZOS)
    noise = np.random.default_rng(seed).normal(0, grain, (size, size, 1))
    return Image.fromarray((np.asarray(image, np.float32) + noise).clip(0, 255).astype(np.uint8))


def write_photo_folder(folder: str | Path, style: str, size: int, n: int = 24, prior: int = 8,
                       unconditional: int = 8) -> Path:
    """Write toy photos as a Hugging Face `imagefolder` (PNGs and metadata.jsonl) for LoRA training; return it.

    `n` scenes in `style` (seed 11), `prior` plain ones with their captions (seed 13) and
    `unconditional` plain ones with empty captions (seed 17), as `toy.data.style_dataset`
    mixes them. A folder already written with the same settings is kept as it is.
    """
    folder = Path(folder)
    settings = {"style": style, "size": size, "n": n, "prior": prior, "unconditional": unconditional}
    record = folder / "photos.json"
    if record.is_file() and json.loads(record.read_text()) == settings and (folder / "metadata.jsonl").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    groups = [(sample_scenes(n, seed=11, style=style), True), (sample_scenes(prior, seed=13), True),
              (sample_scenes(unconditional, seed=17), False)]
    lines = []
    for scenes, captioned in groups:
        for scene in scenes:
            name = f"photo{len(lines):04d}.png"
            render_photo(scene, size, seed=len(lines)).save(folder / name)
            lines.append(json.dumps({"file_name": name, "text": scene.caption if captioned else ""}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    record.write_text(json.dumps(settings))
    return folder

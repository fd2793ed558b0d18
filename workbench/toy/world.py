"""The toy world: coloured shapes on coloured backgrounds, with captions, drawn from a seed.

A scene is "a red circle on a blue background". The style subset adds stripes,
"a red circle on a blue background in zebra style", a look the base model never sees,
for LoRA to learn. Shapes are drawn at 4x size and shrunk, so their edges are smooth.
"""

from __future__ import annotations

import math
import re
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

# Seven colours far apart in RGB, so a nearest-colour classifier can tell them apart.
PALETTE = {
    "red": (220, 30, 30), "yellow": (245, 215, 30), "green": (30, 160, 60), "blue": (30, 70, 220),
    "purple": (140, 40, 190), "white": (245, 245, 245), "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle", "star")
STYLES = ("zebra",)
STRIPE_BANDS = 10  # zebra bands across the image: each is 1/10 of its width, so stripes repeat every 1/5
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Scene:
    """One toy image: a shape of one colour on a background of another."""
    shape: str
    color: str
    background: str
    cx: float        # centre, as a fraction of the image width
    cy: float        # centre, as a fraction of the image height
    size: float      # radius, as a fraction of the image size
    angle: float     # rotation in degrees
    style: str | None = None

    @property
    def caption(self) -> str:
        text = f"a {self.color} {self.shape} on a {self.background} background"
        return f"{text} in {self.style} style" if self.style else text


def caption_words() -> list[str]:
    """Every caption the world can write, one per combination: the tokenizer's training corpus."""
    lines = [Scene(s, c, b, .5, .5, .3, 0, style).caption
             for s in SHAPES for c in PALETTE for b in PALETTE if b != c for style in (None, *STYLES)]
    return lines


def sample_scene(rng: random.Random, style: str | None = None) -> Scene:
    """Draw one random scene: shape, two different colours, position, size and angle."""
    color, background = rng.sample(sorted(PALETTE), 2)
    size = rng.uniform(0.22, 0.38)
    return Scene(shape=rng.choice(SHAPES), color=color, background=background,
                 cx=rng.uniform(size, 1 - size), cy=rng.uniform(size, 1 - size),
                 size=size, angle=rng.uniform(0, 360), style=style)


def sample_scenes(n: int, seed: int = 0, style: str | None = None) -> list[Scene]:
    """`n` scenes drawn deterministically from `seed`."""
    rng = random.Random(seed)
    return [sample_scene(rng, style) for _ in range(n)]


def shape_outline(scene: Scene, side: float) -> list[tuple[float, float]] | None:
    """The polygon of the scene's shape in pixels of an image `side` wide; None for a circle."""
    cx, cy, r = scene.cx * side, scene.cy * side, scene.size * side
    corners = {"square": 4, "triangle": 3, "star": 10}.get(scene.shape)
    if corners is None:
        return None
    points = []
    for i in range(corners):
        radius = r * (0.45 if scene.shape == "star" and i % 2 else 1.0)  # a star alternates radii
        theta = math.radians(scene.angle + 360 * i / corners)
        points.append((cx + radius * math.sin(theta), cy - radius * math.cos(theta)))
    return points


def draw_silhouette(scene: Scene, side: int) -> Image.Image:
    """The shape's silhouette at `side` pixels: white inside the shape, black outside (mode "L")."""
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    outline = shape_outline(scene, side)
    if outline is None:
        cx, cy, r = scene.cx * side, scene.cy * side, scene.size * side
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    else:
        draw.polygon(outline, fill=255)
    return mask


def render_mask(scene: Scene, size: int = 64) -> Image.Image:
    """The shape's silhouette at `size` pixels, with smooth (grey) edges."""
    return draw_silhouette(scene, size * SUPERSAMPLE).resize((size, size), Image.LANCZOS)


def stripes(colour: tuple, side: int, angle: float) -> Image.Image:
    """Diagonal stripes of `colour` and its opposite shade, for zebra style."""
    other = (15, 15, 15) if sum(colour) > 300 else (245, 245, 245)
    image = Image.new("RGB", (side, side), colour)
    draw = ImageDraw.Draw(image)
    width = side / STRIPE_BANDS
    direction = math.radians(angle + 45)
    dx, dy = math.cos(direction), math.sin(direction)
    for k in range(-12, 13, 2):  # every other band across the image
        ox, oy = side / 2 + k * width * -dy, side / 2 + k * width * dx
        a, b = (ox - dx * side, oy - dy * side), (ox + dx * side, oy + dy * side)
        draw.line([a, b], fill=other, width=int(width))
    return image


def stripe_period(size: int) -> float:
    """Pixels from one zebra stripe to the next in an image `size` pixels wide."""
    return 2 * size / STRIPE_BANDS


def render_scene(scene: Scene, size: int = 64) -> Image.Image:
    """Draw `scene` as an RGB image `size` pixels square."""
    side = size * SUPERSAMPLE
    image = Image.new("RGB", (side, side), PALETTE[scene.background])
    fill = (stripes(PALETTE[scene.color], side, scene.angle) if scene.style == "zebra"
            else Image.new("RGB", (side, side), PALETTE[scene.color]))
    mask = draw_silhouette(scene, side)
    image.paste(fill, (0, 0), mask)
    return image.resize((size, size), Image.LANCZOS)


CAPTION_PATTERN = re.compile(r"^a (\w+) (\w+) on a (\w+) background(?: in (\w+) style)?$")


def scene_from_caption(caption: str) -> Scene:
    """The centred scene a caption describes: "a red circle on a blue background [in zebra style]"."""
    match = CAPTION_PATTERN.match(caption.strip().lower())
    if not match:
        raise ValueError(f"toy caption {caption!r} must read 'a <colour> <shape> on a <colour> background'")
    color, shape, background, style = match.groups()
    for word, allowed in ((color, PALETTE), (shape, SHAPES), (background, PALETTE), (style, (None, *STYLES))):
        if word not in allowed:
            raise ValueError(f"{word!r} in toy caption {caption!r} is not one of {sorted(a for a in allowed if a)}")
    return Scene(shape, color, background, cx=0.5, cy=0.5, size=0.33, angle=0, style=style)

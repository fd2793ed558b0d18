"""The toy world: coloured shapes on coloured backgrounds, with captions, drawn from a seed.

A scene is "a red circle on a blue background". Two style subsets add a look the base
model never sees, for LoRA to learn: "... in outlined style" draws a thick dark rim around
the shape (learnt in under a minute on a CPU); "... in zebra style" fills it with stripes
(a texture, much slower to learn). Shapes are drawn at 4x size and shrunk, so their edges
are smooth.
"""

from __future__ import annotations

import math
import re
import random
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw

# Seven colours far apart in RGB, so a nearest-colour classifier can tell them apart.
PALETTE = {
    "red": (220, 30, 30), "yellow": (245, 215, 30), "green": (30, 160, 60), "blue": (30, 70, 220),
    "purple": (140, 40, 190), "white": (245, 245, 245), "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle", "star")
STYLES = ("outlined", "zebra")
STRIPE_BANDS = 10      # zebra bands across the image: each is 1/10 of its width, so stripes repeat every 1/5
OUTLINE_WIDTH = 0.05   # the outlined style's rim, as a fraction of the image width (3 px at 64 px)
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


def opposite_shade(colour: tuple) -> tuple:
    """Near-black for a light colour, near-white for a dark one: the styles' second colour."""
    return (15, 15, 15) if sum(colour) > 300 else (245, 245, 245)


def stripes(colour: tuple, side: int, angle: float) -> Image.Image:
    """Diagonal stripes of `colour` and its opposite shade, for zebra style."""
    other = opposite_shade(colour)
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


def rim_shade(colour: str, background: str) -> tuple:
    """The outlined style's rim: black, or white where black would vanish into the shape or background."""
    if colour == "black" or (background == "black" and colour != "white"):
        return PALETTE["white"]
    return PALETTE["black"]


def draw_rim(scene: Scene, side: int, width: int) -> Image.Image:
    """The band inside the shape's edge, `width` pixels deep, white on black (mode "L")."""
    rim = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(rim)
    outline = shape_outline(scene, side)
    if outline is None:
        cx, cy, r = scene.cx * side, scene.cy * side, scene.size * side
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=255, width=width)  # an ellipse's width grows inward
    else:  # a line twice as wide along the edge, with round joints, then cut to the shape
        draw.line(outline + outline[:2], fill=255, width=2 * width, joint="curve")
        rim = ImageChops.multiply(rim, draw_silhouette(scene, side))
    return rim


def render_scene(scene: Scene, size: int = 64) -> Image.Image:
    """Draw `scene` as an RGB image `size` pixels square."""
    side = size * SUPERSAMPLE
    colour = PALETTE[scene.color]
    image = Image.new("RGB", (side, side), PALETTE[scene.background])
    mask = draw_silhouette(scene, side)
    if scene.style == "zebra":
        image.paste(stripes(colour, side, scene.angle), (0, 0), mask)
    elif scene.style == "outlined":
        image.paste(colour, (0, 0), mask)
        rim = draw_rim(scene, side, round(OUTLINE_WIDTH * side))
        image.paste(rim_shade(scene.color, scene.background), (0, 0), rim)
    else:
        image.paste(colour, (0, 0), mask)
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

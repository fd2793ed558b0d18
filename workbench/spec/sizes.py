"""The image sizes a model can make: its trained size and the range a sweep may ask for. No torch here.

A Stable Diffusion UNet works on latents 8x (SD1.5 and SDXL; the toy 4x) smaller than the image, and
was trained at one size. Far from it, images fall apart (below) or repeat their subject in a
grid (above), and memory grows with the square of the side (the attention maps with its
fourth power): `resolution: 100000` once grew a sweep to 24 GB before the kernel killed it.
So a spec's `resolution` is checked against its model's range before anything loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..families import family_for, known_family, model_folder
from .shorten import short

MULTIPLE = 8     # sides divide by 8: the SD1.5 VAE halves the image 3 times (the toy's twice)
MAX_FACTOR = 4   # at most 4x the trained side: SD1.5 2048 px, the toy 256 px; past it, only repeats and memory
MIN_FACTOR = 4   # at least 1/4 of it: below, the UNet's deepest feature maps shrink to a pixel or two


@dataclass(frozen=True)
class SizeRange:
    """The sides a model accepts, in px: multiples of 8 from trained/4 to 4 x trained."""
    trained: int            # the side the model was trained at
    source: str = "preset"  # where `trained` came from, for messages

    @property
    def smallest(self) -> int:
        return max(MULTIPLE, self.trained // MIN_FACTOR // MULTIPLE * MULTIPLE)

    @property
    def largest(self) -> int:
        return self.trained * MAX_FACTOR

    def check(self, resolution, name: str = "resolution", model: str = "this model") -> None:
        """Raise ValueError naming the value and the allowed range unless `resolution` is allowed."""
        if isinstance(resolution, bool) or not isinstance(resolution, int):
            raise ValueError(f"`{name}` must be a whole number of pixels or null, got {short(resolution)} "
                             f"({type(resolution).__name__})")
        if not self.smallest <= resolution <= self.largest or resolution % MULTIPLE:
            raise ValueError(
                f"`{name}` {resolution} is outside what {model} can make: a multiple of {MULTIPLE} from "
                f"{self.smallest} to {self.largest} px (it was trained at {self.trained} px, {self.source}; "
                f"past {MAX_FACTOR}x that a UNet only repeats its subject while memory grows with the square "
                f"of the side). Try {self.nearest(resolution)}, or leave `{name}` out for {self.trained}.")

    def nearest(self, resolution: int) -> int:
        """The allowed side closest to `resolution`."""
        rounded = round(resolution / MULTIPLE) * MULTIPLE
        return min(max(rounded, self.smallest), self.largest)


def read_trained_size(folder: Path) -> int | None:
    """The trained side of a diffusers folder: the UNet's sample_size x the VAE's downscaling."""
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text())
        vae = json.loads((folder / "vae" / "config.json").read_text())
        return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def named_size_range(model: str) -> SizeRange | None:
    """The size range of a model its name alone places (a preset, a hub id a family lists), read from no file; None
    for anything else (`size_range` reads it)."""
    family = known_family(model) if isinstance(model, str) else None
    if family is None:
        return None
    trained = family.TRAINED_SIZES.get(model, family.DEFAULT_SIZE)
    return SizeRange(trained, f"the {short(model)} preset" if model in family.PRESETS else f"as for {family.NAME}")


def size_range(model: str) -> SizeRange:
    """The size range of a model name as a spec gives it: a preset, a folder, or a hub id.

    A preset or a hub id that a family lists has its family's trained size (`families/`); a folder
    or a cached hub snapshot is read from its unet and vae configs, else from its family; anything
    else is taken to be SD1.x.
    """
    named = named_size_range(model)
    if named is not None:
        return named
    folder = model_folder(model)  # a folder, or a hub id the cache holds: its configs
    trained = read_trained_size(folder) if folder is not None else None
    if trained:
        return SizeRange(trained, "from its unet and vae configs")
    family = family_for(model)  # from its model_index.json, else SD1.x
    return SizeRange(family.DEFAULT_SIZE, f"as for {family.NAME}")

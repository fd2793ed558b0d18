"""Comparing images made under different batch sizes, thread counts or process layouts.

Float reductions round differently when the batch, the threads or the CPU change, so such
images may differ by a grey level here and there (seen: 1 of 48 images, by 1 level, between
a 2-process and a 1-process sweep on another x86-64 CPU). Bit-identity is asserted only where
the configuration is truly identical: same process, threads and batch.
"""

from pathlib import Path

import numpy as np
from PIL import Image

MAX_LEVELS = 2      # no pixel may differ by more than 2 grey levels out of 255
MEAN_LEVELS = 0.05  # and the mean difference stays under 0.05 levels: a few pixels off by one


def as_levels(image) -> np.ndarray:
    """A PIL image, a PNG path or a uint8 array as an int array of grey levels."""
    if isinstance(image, (str, Path)):
        image = Image.open(image)
    return np.asarray(image).astype(np.int16)


def assert_images_close(first, second, what: str = "") -> None:
    """Raise unless the two images are equal within MAX_LEVELS per pixel and MEAN_LEVELS on average."""
    a, b = as_levels(first), as_levels(second)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} and {b.shape}"
    difference = np.abs(a - b)
    assert difference.max() <= MAX_LEVELS and difference.mean() < MEAN_LEVELS, (
        f"{what}: max difference {difference.max()} levels (allowed {MAX_LEVELS}), "
        f"mean {difference.mean():.4f} (allowed < {MEAN_LEVELS})")

"""Control images: load any picture as RGB, turn it into a Canny edge map with controlnet_aux (or another
condition's map, `conditions.py`), and make each control unit's image for a sweep (a file, a shipped photo,
a toy scene, or a toy silhouette).

controlnet_aux is installed without its declared dependencies (see the README): its
package `__init__` imports every detector, and several need torchvision. The Canny
detector needs only OpenCV and numpy, so `canny_detector` imports its module alone.
"""

from __future__ import annotations

import numbers
import math
import warnings
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..spec.conditions import condition, estimator
from ..spec.samples import is_sample, sample
from ..spec.shorten import short
from ..spec.sweep_spec import TOY_SOURCES
from ..spec.units import Unit
from .conditions import aux_module, draw_condition, network

MIN_DETECT_SIZE = 64  # controlnet_aux rounds sizes to multiples of 64; below 64 cv2 crashes


PIXEL_BUDGET = 4096 * 4096  # pixels an input image keeps before any conversion: a larger one is shrunk first


def within_budget(image: Image.Image) -> Image.Image:
    """`image` shrunk to at most PIXEL_BUDGET pixels at its own mode and bit depth (a box filter: each pixel the mean of
    the ones it covers), before anything converts it to floats or 8 bits; a smaller image comes back as it is.

    A 36-megapixel 16-bit PNG is 82 KB on disk and under Pillow's bomb limit; converted whole to float64, it took
    740 MB. Control and training images end up at most a few thousand pixels a side, so nothing is lost."""
    pixels = image.width * image.height
    if pixels <= PIXEL_BUDGET:
        return image
    factor = math.sqrt(pixels / PIXEL_BUDGET)
    size = (max(1, int(image.width / factor)), max(1, int(image.height / factor)))
    return image.resize(size, Image.NEAREST if image.mode in ("P", "1") else Image.BOX)


def load_image(image) -> Image.Image:
    """Return `image` (a path, a shipped photo "sample:coffee", a PIL image or a numpy array of any mode or bit depth)
    as 8-bit RGB, at most PIXEL_BUDGET pixels (`within_budget`)."""
    if is_sample(image):
        image = sample(image).path
    if isinstance(image, (str, Path)):
        path = Path(image).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"image file {str(path)!r} does not exist")
        try:
            image = decode_image(path, "image file")
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{short(str(path))} is not an image file PIL can read ({short(str(err))})") from None
    if isinstance(image, np.ndarray):
        image = Image.fromarray(to_uint8(image))
    if not isinstance(image, Image.Image):
        raise ValueError(f"image must be a file path, a PIL image or a numpy array, got {type(image).__name__}")
    if image.width == 0 or image.height == 0:
        raise ValueError(f"image has zero size ({image.width}x{image.height})")
    image = within_budget(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = Image.fromarray(to_uint8(np.asarray(image)))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")  # transparent means white
    return image.convert("RGB")


def decode_image(path: Path, what: str) -> Image.Image:
    """A file's image, decoded whole; one past Pillow's decompression-bomb limit is refused, naming `what` and the file.

    Pillow only warns between the limit and twice it; here that is a refusal too. Other read
    errors (not an image, truncated) are left to the caller to word.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.load()
                return opened.copy()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ValueError(f"{what} {short(str(path))} has more pixels than Pillow's decompression-bomb limit "
                         f"({Image.MAX_IMAGE_PIXELS:,}): it was not decoded. Resize it first if it is yours.") from None


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale an image array of any dtype to uint8: 16-bit by /257, floats in [0, 1] by x255."""
    if array.size == 0 or array.ndim not in (2, 3):
        raise ValueError(f"image array must be HxW or HxWxC and non-empty, got shape {array.shape}")
    if array.ndim == 3 and array.shape[2] not in (1, 3, 4):
        raise ValueError(f"image array must have 1, 3 or 4 channels, got shape {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("image array contains NaN or infinite values")
        scale = 255.0 if array.max() <= 1.0 else 1.0
        return np.clip(array * scale, 0, 255).round().astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        top = 255 if array.max() <= 255 else 65535
        return (np.clip(array, 0, top).astype(np.float64) * (255.0 / top)).round().astype(np.uint8)
    raise ValueError(f"image array dtype {array.dtype} is not supported; use uint8, uint16 or float")


def fit_size(width: int, height: int, resolution: int, buckets: tuple = ()) -> tuple[int, int]:
    """Scale (width, height) so the short side is `resolution`, each side a multiple of 8; or, given a family's
    trained `buckets` ((width, height) pairs at its trained size, SDXL's), the bucket nearest the image's aspect
    ratio, scaled so a square bucket's side is `resolution` (multiples of 8). A square image gets a square either way."""
    if buckets and width != height:
        side = max(b[0] for b in buckets if b[0] == b[1])
        aspect = np.log(width / height)
        best = min(buckets, key=lambda b: abs(np.log(b[0] / b[1]) - aspect))
        return tuple(max(8, int(round(edge * resolution / side / 8)) * 8) for edge in best)
    scale = resolution / min(width, height)
    return tuple(max(8, int(round(side * scale / 8)) * 8) for side in (width, height))


@lru_cache(maxsize=1)
def canny_detector():
    """controlnet_aux's CannyDetector, imported without running the package `__init__` (`conditions.aux_module`)."""
    return aux_module("canny").CannyDetector()


def check_thresholds(low, high) -> None:
    """Canny hysteresis thresholds: numbers, 0 <= low <= high."""
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
            raise ValueError(f"Canny `{name}` threshold must be a number, got {value!r} ({type(value).__name__})")
    if not 0 <= low <= high:
        raise ValueError(f"Canny thresholds must satisfy 0 <= low <= high, got low={low}, high={high}")


def make_canny(image, low: float = 100, high: float = 200, resolution: int = 512, buckets: tuple = ()) -> Image.Image:
    """Canny edges of `image` as an RGB PIL image, white edges on black, sized for the pipeline.

    The image is first resized explicitly (Lanczos) so its short side is `resolution` and both
    sides are multiples of 8, as the VAE needs. controlnet_aux detects on sizes that are
    multiples of 64 (at least 64); for other sizes its edge map is resized back to the target,
    by area and re-binarised, so thin edges survive and the map stays black and white.
    """
    check_thresholds(low, high)
    if isinstance(resolution, bool) or not isinstance(resolution, numbers.Integral) or resolution < 8:
        raise ValueError(f"`resolution` must be an integer >= 8, got {resolution!r}")
    rgb = load_image(image)
    size = fit_size(rgb.width, rgb.height, resolution, buckets)
    pixels = np.asarray(rgb.resize(size, Image.LANCZOS)) if rgb.size != size else np.asarray(rgb)
    detect = max(MIN_DETECT_SIZE, min(size))
    edges = canny_detector()(pixels, low_threshold=low, high_threshold=high,
                             detect_resolution=detect, image_resolution=detect, output_type="np")
    edges = edges[:, :, 0]
    if edges.shape != (size[1], size[0]):
        shrinking = edges.shape[0] > size[1]
        edges = cv2.resize(edges, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_NEAREST)
        edges = np.where(edges > 0, 255, 0).astype(np.uint8)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def load_detector(name: str, models: dict | None = None):
    """The network that draws condition `name` (`wb.conditions()`), loaded from the hub cache or the folder `models`
    names (a clear error when its weights are missing; "tiny": random weights from a small config)."""
    if name == "canny":
        return canny_detector()
    model = estimator(name, models)
    if model is None:
        raise ValueError(f"condition {name!r} draws with no network")
    return network(name, model)  # missing weights: refused by the loader, naming the repo, file and command


def make_control(image, preprocess: str = "canny", low: float = 100, high: float = 200,
                 resolution: int = 512, models: dict | None = None, buckets: tuple = ()) -> Image.Image:
    """A ControlNet's input from an image: its Canny edges, the image itself (`none`), or another condition's map
    (`wb.conditions()`: depth, seg, openpose, lineart, softedge, pidi, scribble) drawn with the weights `models` names.

    The result keeps the image's aspect ratio: its short side is `resolution` and both sides are multiples of 8
    (`fit_size`), or it is the nearest of a family's trained `buckets` scaled to `resolution`.
    """
    if preprocess == "canny":
        return make_canny(image, low, high, resolution=resolution, buckets=buckets)
    rgb = load_image(image)
    rgb = rgb.resize(fit_size(rgb.width, rgb.height, resolution, buckets), Image.LANCZOS)
    return draw_condition(preprocess, rgb, models) if condition(preprocess).needs_weights else rgb


# ---- the control images of a sweep's units -------------------------------------------------------

def source_image(source: str, size: int):
    """A control's source: a file, a shipped photo ("sample:coffee", `samples.py`), "toy:<caption>" (the toy scene)
    or "toy-mask:<caption>" (its silhouette)."""
    if is_sample(source):
        return sample(source).path
    if source.startswith(TOY_SOURCES):
        from ..toy.world import render_mask, render_scene, scene_from_caption
        kind, caption = source.split(":", 1)
        scene = scene_from_caption(caption)
        return render_scene(scene, size) if kind == "toy" else render_mask(scene, size).convert("RGB")
    return source


def control_for(source: str, size: int, low: int = 100, high: int = 200, preprocess: str = "canny",
                models: dict | None = None, buckets: tuple = ()) -> Image.Image:
    """The control image of a unit: its source (see `source_image`) made into the ControlNet's input."""
    return make_control(source_image(source, size), preprocess, low, high, resolution=size, models=models,
                        buckets=buckets)


def unit_controls(units: list[Unit], params: dict, size: int, cache: dict, models: dict | None = None,
                  buckets: tuple = ()) -> list[Image.Image]:
    """Each unit's control for one trial's parameters, made once per (unit, thresholds) and kept. `models`: the
    spec's `metric_models` (which weights draw depth, seg, ...); `buckets`: the family's trained sizes (SDXL's)."""
    controls = []
    for unit in units:
        key = (unit.name, unit.image, unit.preprocess, params[unit.key("low")], params[unit.key("high")])
        if key not in cache:
            cache[key] = control_for(unit.image, size, key[3], key[4], unit.preprocess, models, buckets)
        controls.append(cache[key])
    if len({c.size for c in controls}) > 1:
        raise ValueError(f"the control images have different sizes {[c.size for c in controls]} at resolution {size}: "
                         "give every unit an image of the same aspect ratio")
    return controls


def check_control_image(control_image: str, unit: str = "") -> None:
    """Refuse a missing or unreadable control image, an unknown sample, or a toy caption the toy world cannot draw."""
    name = f"control unit {unit!r} `image`" if unit else "`control_image`"
    if not isinstance(control_image, str) or not control_image:
        raise ValueError(f"{name} must be a file path, 'sample:<photo>' or 'toy:<caption>', got {control_image!r}")
    if is_sample(control_image):
        sample(control_image)
    elif control_image.startswith(TOY_SOURCES):
        from ..toy.world import scene_from_caption
        scene_from_caption(control_image.split(":", 1)[1])
    else:
        load_image(control_image)

"""LoRA training data from a folder of images with captions, in the two layouts people already have.

    Hugging Face `imagefolder`        kohya-ss
      data/metadata.jsonl               data/10_mystyle/img1.png
        {"file_name": "a.png",          data/10_mystyle/img1.txt   <- the caption
         "text": "a caption"}           data/1_regular/img9.jpg    <- `<repeats>_<name>`: each image
      data/a.png                                                      counts `repeats` times an epoch

Images are read when an item is asked for: EXIF orientation applied, resized so the short side
is the resolution, centre-cropped to a square. Each item records the original size and the
crop's top-left corner, which SDXL's UNet takes as its "time ids" (as diffusers' SDXL training
script does). A broken image, one past Pillow's decompression-bomb limit, or a metadata line
naming a file outside the folder is an error naming the file, never a silent skip.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..models.control import decode_image
from ..models.fingerprint import file_sha256
from ..spec.shorten import short

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
KOHYA_FOLDER = re.compile(r"^(\d{1,4})_(.+)$")  # <repeats>_<name>
MAX_METADATA_BYTES = 50 * 2**20


@dataclass(frozen=True)
class Entry:
    """One image of the folder: its file, caption, and how many times it counts in an epoch."""
    path: Path
    caption: str
    repeats: int = 1


def read_training_image(path: Path) -> Image.Image:
    """An image file as RGB, upright by its EXIF orientation; refused, naming the file, when it cannot be read."""
    try:
        return ImageOps.exif_transpose(decode_image(path, "training image")).convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"training image {short(str(path))} cannot be read ({short(str(err))})") from None


def cover_crop(image: Image.Image, size: tuple[int, int], where: tuple[float, float] = (0.5, 0.5)
               ) -> tuple[Image.Image, tuple[int, int]]:
    """Resize so the image covers `size` (width, height), crop it there; return it and the crop's (top, left). `where`
    places the crop in the room left over, as (down, across) fractions: (0.5, 0.5) is the centre."""
    target_width, target_height = size
    width, height = covering_size((image.width, image.height), size)
    resized = image.resize((width, height), Image.LANCZOS)
    top, left = round((height - target_height) * where[0]), round((width - target_width) * where[1])
    return resized.crop((left, top, left + target_width, top + target_height)), (top, left)


def covering_size(image_size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """The (width, height) an image of `image_size` is resized to so that it just covers `target`, keeping its shape."""
    (width, height), (target_width, target_height) = image_size, target
    scale = max(target_width / width, target_height / height)
    return max(target_width, round(width * scale)), max(target_height, round(height * scale))


def square_crop(image: Image.Image, resolution: int, where: tuple[float, float] = (0.5, 0.5)
                ) -> tuple[Image.Image, tuple[int, int]]:
    """Resize so the short side is `resolution` and crop a square there (`cover_crop`)."""
    return cover_crop(image, (resolution, resolution), where)


def bucket_sizes(resolution: int, step: int = 64, max_ratio: float = 2.0) -> list[tuple[int, int]]:
    """Aspect-ratio buckets as kohya's sd-scripts makes them: (width, height) in multiples of `step`, each side from
    resolution/2 to 2 x resolution, at most resolution^2 pixels, no side more than `max_ratio` times the other."""
    area, sizes = resolution * resolution, set()
    for width in range(max(step, resolution // 2 // step * step), 2 * resolution + 1, step):
        height = min(2 * resolution, area // width // step * step)
        if height >= step and max(width, height) <= max_ratio * min(width, height):
            sizes |= {(width, height), (height, width)}
    return sorted(sizes)


def nearest_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is nearest the image's (compared as log ratios, so 2:1 and 1:2 are as far)."""
    return min(buckets, key=lambda size: abs(math.log(size[0] / size[1]) - math.log(width / height)))


def huggingface_entries(folder: Path) -> list[Entry]:
    """metadata.jsonl's lines: {"file_name": ..., "text": ...}, each file inside the folder."""
    path = folder / "metadata.jsonl"
    if path.stat().st_size > MAX_METADATA_BYTES:
        raise ValueError(f"{short(str(path))} is over {MAX_METADATA_BYTES:,} bytes")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            name, caption = record["file_name"], record.get("text", "")
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{path.name} line {number} is not {{\"file_name\": ..., \"text\": ...}}: "
                             f"{short(line)}") from None
        file = (folder / str(name)).resolve()
        if not file.is_relative_to(folder.resolve()) or not file.is_file():
            raise ValueError(f"{path.name} line {number} names {short(name)}, which is not a file inside {folder}")
        entries.append(Entry(file, str(caption)))
    return entries


def kohya_entries(folder: Path) -> list[Entry]:
    """Images with a `.txt` caption beside each, in the folder and its `<repeats>_<name>` subfolders."""
    entries = []
    places = [(folder, 1, "")] + [(sub, int(m.group(1)), m.group(2)) for sub in sorted(folder.iterdir())
                                  if sub.is_dir() and (m := KOHYA_FOLDER.match(sub.name))]
    for place, repeats, name in places:
        for image in sorted(p for p in place.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            text = image.with_suffix(".txt")
            caption = text.read_text().strip() if text.is_file() else name.replace("_", " ")  # kohya: the class name
            entries.append(Entry(image, caption, max(1, repeats)))
    return entries


class ImageFolder(torch.utils.data.Dataset):
    """A folder of images and captions, read lazily (see the module docstring); `train_lora` takes it.

    Item i is a dict: `pixels` (3, R, R) uint8, `caption`, `original_size` (height, width) and
    `crop_top_left` (top, left), and `file`. `crop="random"` places each image's square at random along its long
    side (drawn once per image from `seed`: training encodes each image once), where diffusers' scripts offer
    `--random_crop`; SDXL's size ids record where it fell. `buckets=True` gives each image the aspect-ratio bucket
    nearest its own (`bucket_sizes`, sides in multiples of `bucket_step`) instead of a square, as kohya buckets a
    folder of mixed shapes; items then carry their `target_size` (height, width), and a training batch holds one
    bucket.
    """

    def __init__(self, folder: str | Path, resolution: int, crop: str = "center", seed: int = 0,
                 buckets: bool = False, bucket_step: int = 64):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"image folder {short(str(folder))} does not exist")
        if isinstance(resolution, bool) or not isinstance(resolution, int) or not 8 <= resolution <= 4096:
            raise ValueError(f"`resolution` must be a whole number of pixels from 8 to 4096, got {short(resolution)}")
        if crop not in ("center", "random"):
            raise ValueError(f"`crop` is 'center' or 'random', got {short(crop)}")
        self.resolution, self.crop, self.seed = resolution, crop, seed
        self.buckets = bucket_sizes(resolution, bucket_step) if buckets else None
        if buckets and not self.buckets:
            raise ValueError(f"no bucket of {bucket_step} px steps fits {resolution} px: give a smaller `bucket_step`")
        self.layout = "huggingface" if (self.folder / "metadata.jsonl").is_file() else "kohya"
        self.entries = huggingface_entries(self.folder) if self.layout == "huggingface" else kohya_entries(self.folder)
        if not self.entries:
            raise ValueError(f"image folder {short(str(folder))} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.order = [i for i, entry in enumerate(self.entries) for _ in range(entry.repeats)]  # repeats counted

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, index: int) -> dict:
        entry = self.entries[self.order[index]]
        image = read_training_image(entry.path)
        where = (0.5, 0.5)
        if self.crop == "random":  # one place per image and seed, whichever of its repeats is read
            draw = random.Random(f"{self.seed}:{self.order[index]}")
            where = (draw.random(), draw.random())
        size = nearest_bucket(image.width, image.height, self.buckets) if self.buckets else (self.resolution,) * 2
        cropped, (top, left) = cover_crop(image, size, where)
        pixels = torch.from_numpy(np.asarray(cropped).copy()).permute(2, 0, 1)
        return {"pixels": pixels, "caption": entry.caption, "original_size": (image.height, image.width),
                "crop_top_left": (top, left), "target_size": (size[1], size[0]), "file": str(entry.path)}

    @property
    def captions(self) -> list[str]:
        return [self.entries[i].caption for i in self.order]

    def fingerprint(self) -> str:
        """A hash of the data as trained on: every file's bytes, its caption and repeats, and the resolution."""
        digest = hashlib.sha256(f"{self.resolution}".encode() + (b"" if self.crop == "center" else
                                                                  f"|random crop {self.seed}".encode())
                                + (b"" if self.buckets is None else f"|buckets {self.buckets}".encode()))
        for entry in self.entries:
            digest.update(f"{file_sha256(entry.path)}|{entry.repeats}|{entry.caption}\n".encode())
        return digest.hexdigest()[:16]


def image_folder(folder: str | Path, resolution: int, crop: str = "center", seed: int = 0, buckets: bool = False,
                 bucket_step: int = 64) -> ImageFolder:
    """A folder of captioned images (Hugging Face `imagefolder` or kohya-ss layout) as a LoRA training dataset; `crop`
    "center" or "random" (each image's crop placed at random, drawn once from `seed`); `buckets` trains each image
    at the aspect-ratio bucket nearest its shape (kohya's buckets, sides in multiples of `bucket_step`)."""
    return ImageFolder(folder, resolution, crop, seed, buckets, bucket_step)

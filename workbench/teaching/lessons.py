"""What a lesson trains on, for any model: the one choice notebook 02 would otherwise spell out per model.

    data = wb.lesson_data(MODEL, DATA, "outlined", P.resolution, prior=256, unconditional=128)

On the toy it is the style's scenes as tensors, exactly the data the shipped study adapters
were trained on (so they match their cache key and load in seconds). On any other model it is
a folder of captioned images (`wb.image_folder`): yours (`DATA`), or by default toy photos in
the style (`toy.photo.write_photo_folder`), written once under `folder`.
"""

from __future__ import annotations

from pathlib import Path

from ..families import DEFAULT_MODEL
from ..lora import image_folder
from ..toy.data import style_dataset
from ..toy.photo import write_photo_folder

# The default folder of toy photos on a real model: a small style set, as DreamBooth-style LoRAs use (tens of
# images), with plain and empty-caption photos mixed in as notebook 02 mixes them on the toy.
PHOTOS = dict(n=24, prior=8, unconditional=8)


def lesson_data(model: str, data: str | Path | None = None, style: str = "outlined", size: int = 64, n: int = 256,
                prior: int = 0, unconditional: int = 0, folder: str | Path = "runs/lesson-data"):
    """The LoRA training data of a lesson on `model`, at `size` px (the profile's resolution).

    Args:
        data: a folder of captioned images (Hugging Face `metadata.jsonl` or kohya-ss layout);
            None takes the default: on the toy, `n` scenes in `style` with `prior` plain ones and
            `unconditional` empty-caption ones (`toy.data.style_dataset`); on any other model, toy
            photos in `style` (`PHOTOS` of them) written to `folder`.
    Returns what `train_lora` and `rank_study` take.
    """
    if data is not None:
        return image_folder(data, size)
    if model == DEFAULT_MODEL:
        return style_dataset(style, n=n, prior=prior, unconditional=unconditional, size=size)
    photos = write_photo_folder(Path(folder) / f"{style}-{size}px", style, size, **PHOTOS)
    return image_folder(photos, size)


def examples(data, n: int = 4) -> tuple[list, list[str]]:
    """The first `n` training images (PIL) and their captions, from any data `lesson_data` returns."""
    from PIL import Image
    if hasattr(data, "fingerprint"):  # an image folder
        items = [data[i] for i in range(min(n, len(data)))]
        return [Image.fromarray(item["pixels"].permute(1, 2, 0).numpy()) for item in items], [i["caption"] for i in items]
    images, captions = data
    return [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in images[:n]], list(captions[:n])

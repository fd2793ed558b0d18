"""Toy-world datasets as tensors: images, Canny controls, captions, silhouettes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..models.control import make_canny
from .world import Scene, render_mask, render_scene, sample_scenes


@dataclass
class ToyDataset:
    """Scenes rendered at one size. Tensors are uint8 to keep 8k images in ~130 MB."""
    scenes: list[Scene]
    images: torch.Tensor    # (N, 3, H, W) uint8 RGB
    controls: torch.Tensor  # (N, 1, H, W) uint8, 255 on Canny edges
    masks: torch.Tensor     # (N, 1, H, W) uint8, 255 inside the shape

    @property
    def captions(self) -> list[str]:
        return [scene.caption for scene in self.scenes]

    def __len__(self) -> int:
        return len(self.scenes)


def to_chw(image) -> torch.Tensor:
    """A PIL image as a (C, H, W) uint8 tensor."""
    array = np.asarray(image)
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def make_dataset(n: int, seed: int = 0, size: int = 64, style: str | None = None,
                 low: int = 100, high: int = 200) -> ToyDataset:
    """Render `n` scenes from `seed`, with their Canny edges (thresholds `low`, `high`) and masks."""
    if n <= 0:
        raise ValueError(f"dataset size `n` must be positive, got {n}")
    scenes = sample_scenes(n, seed=seed, style=style)
    images = [render_scene(scene, size) for scene in scenes]
    controls = [to_chw(make_canny(image, low, high, resolution=size))[:1] for image in images]
    masks = [to_chw(render_mask(scene, size)) for scene in scenes]
    return ToyDataset(scenes, torch.stack([to_chw(i) for i in images]), torch.stack(controls), torch.stack(masks))


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] to floats in [-1, 1], as the VAE expects."""
    return images.float() / 127.5 - 1.0


def style_dataset(style: str = "outlined", n: int = 256, prior: int = 0, unconditional: int = 0,
                  size: int = 64) -> tuple[torch.Tensor, list]:
    """LoRA training data: `n` scenes in `style` (seed 11), `prior` plain ones (seed 13) with their own
    captions, and `unconditional` plain ones (seed 17) with empty captions.

    The plain scenes are prior preservation, as DreamBooth does it: they show the adapter what
    the base model already draws for captions without the style word, so training the style
    does not also repaint the colours. The empty captions do the same for the prompt-free
    prediction that classifier-free guidance subtracts (the base model learned it from
    captions dropped in training): without them the adapter changes that prediction
    untaught, and guidance multiplies the change. Returns (images, captions), which
    `train_lora` and `rank_study` take; the same arguments give the same data, so cached
    adapters are reused.
    """
    styled = make_dataset(n, seed=11, size=size, style=style)
    images, captions = [styled.images], styled.captions
    if prior:
        plain = make_dataset(prior, seed=13, size=size)
        images.append(plain.images)
        captions = captions + plain.captions
    if unconditional:
        images.append(make_dataset(unconditional, seed=17, size=size).images)
        captions = captions + [""] * unconditional
    return torch.cat(images), captions

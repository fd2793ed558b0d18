"""Shared fixtures: tests never touch the hub, and build tiny models from configs."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # without it, a hub id takes ~30 s to fail
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_pipe():
    """A 32 px random-weight SD + ControlNet pipeline whose ControlNet visibly matters."""
    from workbench.families.sd15 import build_tiny_pipeline
    return build_tiny_pipeline(seed=0)


@pytest.fixture(scope="session")
def square_control():
    """A 32 px Canny map of a white square on black."""
    from workbench.control import make_canny
    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[8:24, 8:24] = 255
    return make_canny(Image.fromarray(pixels), resolution=32)


@pytest.fixture(scope="session")
def tiny_sdxl_pipe():
    """A 32 px random-weight SDXL + ControlNet pipeline (two text encoders, pooled text, size ids)."""
    from workbench.families import sdxl
    return sdxl.build_tiny(seed=0)

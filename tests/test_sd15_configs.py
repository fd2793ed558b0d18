"""The shipped SD1.5 architecture configs build models of SD1.5's exact sizes (on the meta device: no memory)."""

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from workbench.sd15_random import load_config


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_sd15_sizes_match_the_published_models():
    with torch.device("meta"):
        assert count(UNet2DConditionModel(**load_config("unet"))) == 859_520_964
        assert round(count(ControlNetModel(**load_config("controlnet"))) / 1e6, 1) == 361.3  # quoted as 361.3M
        assert count(AutoencoderKL(**load_config("vae"))) == 83_653_863
        assert count(CLIPTextModel(CLIPTextConfig(**load_config("text_encoder")))) == 123_060_480

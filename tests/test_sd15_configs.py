"""The shipped SD1.5 architecture configs build models of SD1.5's exact sizes (on the meta device: no memory)."""

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from workbench.families.sd15 import load_config


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_sd15_sizes_match_the_published_models():
    with torch.device("meta"):
        assert count(UNet2DConditionModel(**load_config("unet"))) == 859_520_964
        assert round(count(ControlNetModel(**load_config("controlnet"))) / 1e6, 1) == 361.3  # quoted as 361.3M
        assert count(AutoencoderKL(**load_config("vae"))) == 83_653_863
        assert count(CLIPTextModel(CLIPTextConfig(**load_config("text_encoder")))) == 123_060_480


def test_sdxl_sizes_match_the_published_models():
    """configs/sdxl: SDXL base 1.0's 2.6B UNet and two text towers, and the 1.25B Canny ControlNet."""
    import json
    from pathlib import Path

    from transformers import CLIPTextModelWithProjection
    folder = Path(__file__).resolve().parents[1] / "workbench" / "configs" / "sdxl"

    def config(name):
        return {k: v for k, v in json.loads((folder / f"{name}.json").read_text()).items() if not k.startswith("_")}

    unet = config("unet")  # the "text_time" embedding: 6 time ids x 256 + the pooled text's 1280 = 2816
    assert unet["projection_class_embeddings_input_dim"] == 6 * unet["addition_time_embed_dim"] + 1280
    assert unet["cross_attention_dim"] == 768 + 1280  # both text encoders' hidden states side by side
    with torch.device("meta"):
        assert count(UNet2DConditionModel(**unet)) == 2_567_463_684
        assert count(ControlNetModel(**config("controlnet"))) == 1_251_014_160
        assert count(AutoencoderKL(**config("vae"))) == 83_653_863
        assert count(CLIPTextModel(CLIPTextConfig(**config("text_encoder")))) == 123_060_480
        assert count(CLIPTextModelWithProjection(CLIPTextConfig(**config("text_encoder_2")))) == 694_659_840

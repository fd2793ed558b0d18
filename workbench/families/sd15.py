"""Stable Diffusion 1.x: one CLIP text encoder, prompt embeddings only, 512 px (toy 64, tiny 32)."""

from __future__ import annotations

import torch

NAME = "sd15"
PIPELINE_CLASS = "StableDiffusionControlNetPipeline"
SD15_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD15_CANNY_ID = "lllyasviel/sd-controlnet-canny"
# Preset names: (base, controlnet). "toy" is embedded; "tiny" is random weights from a config.
PRESETS = {"toy": ("toy", "toy"), "tiny": ("tiny", "tiny"), "sd15": (SD15_ID, SD15_CANNY_ID)}
components = ("unet", "controlnet", "vae", "text_encoder")
# The safety checker is off: it needs extra hub weights and blacks out images, which would
# corrupt sweep metrics. Filter images yourself before publishing.
LOAD_KWARGS = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}


def owns(pipe) -> bool:
    return hasattr(pipe, "text_encoder") and hasattr(pipe, "unet")


def encode(pipe, prompt: str, negative: str) -> dict:
    """Positive and negative prompt embeddings, (1, tokens, width) each."""
    with torch.no_grad():
        positive, negative = pipe.encode_prompt(prompt, pipe.device, 1, True, negative)
    return {"prompt_embeds": positive, "negative_prompt_embeds": negative}


def unet_conditioning(pipe, context: torch.Tensor, rows: int) -> dict:
    """SD1.5's UNet needs nothing besides the text embeddings."""
    return {}


def tokenize(pipe, captions: list[str]) -> list[torch.Tensor]:
    return [pipe.tokenizer(captions, padding="max_length", truncation=True, return_tensors="pt").input_ids]


def text_context(pipe, tokens: list[torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """(text embeddings, extra UNet keywords) for training, from `tokenize`'s ids."""
    return pipe.text_encoder(tokens[0].to(pipe.device))[0], {}


def lora_loader():
    from diffusers import StableDiffusionPipeline
    return StableDiffusionPipeline


def pipeline_class():
    import diffusers
    return getattr(diffusers, PIPELINE_CLASS)


def build_tiny(seed: int = 0):
    from ..tiny import build_tiny_pipeline
    return build_tiny_pipeline(seed=seed)

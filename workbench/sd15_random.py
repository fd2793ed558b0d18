"""Stable Diffusion 1.5 + Canny ControlNet at full size with random weights, built offline from configs.

Speed depends on the architecture, not the weights, so benchmarks use this where the real
weights cannot be downloaded. The configs in `configs/sd15/` are the public architecture
values of stable-diffusion-v1-5 and lllyasviel/sd-controlnet-canny. The tokenizer is the
toy world's (token ids fit the 49,408-entry embedding); prompts are padded to 77 tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from .tiny import assemble_pipeline, build_scheduler, build_tokenizer
from .toy.world import caption_words

CONFIGS = Path(__file__).parent / "configs" / "sd15"


def load_config(name: str) -> dict:
    """An architecture config, without its `_source` note."""
    return {k: v for k, v in json.loads((CONFIGS / f"{name}.json").read_text()).items() if not k.startswith("_")}


def build_sd15_random(seed: int = 0, dtype: torch.dtype = torch.float32):
    """A StableDiffusionControlNetPipeline with SD1.5's shapes (860M UNet, 361M ControlNet) and random weights."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(caption_words(), max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(**load_config("text_encoder"), bos_token_id=tokenizer.bos_token_id,
                                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    vae = AutoencoderKL(**load_config("vae"))
    unet = UNet2DConditionModel(**load_config("unet"))
    controlnet = ControlNetModel(**load_config("controlnet"))
    pipe = assemble_pipeline(unet, controlnet, vae, text_encoder, tokenizer, build_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(dtype=dtype)


def write_kohya_lora(path: Path, rank: int = 4, alpha: float = 1.0, seed: int = 0) -> dict[str, int]:
    """A random kohya/A1111 SD1.5 LoRA (fp16): UNet attention and every text-encoder layer, as a third party's.

    Returns the number of layers per component (128 UNet, 72 text encoder). Names and shapes
    come from models built on the meta device, so nothing full-size is allocated.
    """
    from safetensors.torch import save_file
    with torch.device("meta"):  # names and shapes only: nothing is allocated
        unet = UNet2DConditionModel(**load_config("unet"))
        text_encoder = CLIPTextModel(CLIPTextConfig(**load_config("text_encoder")))
    generator = torch.Generator().manual_seed(seed)
    state, counts = {}, {"unet": 0, "text_encoder": 0}
    targets = [("unet", "lora_unet_", unet, ("to_q", "to_k", "to_v", "to_out.0")),
               ("text_encoder", "lora_te_", text_encoder,
                ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"))]
    for component, prefix, model, suffixes in targets:
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and name.endswith(suffixes):
                key = (prefix + name).replace(".", "_")
                out_features, in_features = module.weight.shape
                state[f"{key}.lora_down.weight"] = torch.randn(rank, in_features, generator=generator) * 0.05
                state[f"{key}.lora_up.weight"] = torch.randn(out_features, rank, generator=generator) * 0.05
                state[f"{key}.alpha"] = torch.tensor(alpha)
                counts[component] += 1
    save_file({k: v.half() for k, v in state.items()}, str(path))
    return counts

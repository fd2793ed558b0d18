"""A Hugging Face hub cache written offline: the layout `huggingface-cli download` leaves, random weights.

`from_pretrained(hub_id)` reads `$HF_HOME/hub/models--<org>--<name>/`: `refs/main` holds a
commit hash, `snapshots/<hash>/<path>` are symlinks into `blobs/<sha256>`. Written here with
the real SD1.5 configs and random weights, it rehearses a user's real loading path without
the network. The CLIP tokenizer is written from the merges the package bundles (`families.clip_tokenizer`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

def write_snapshot(hf_home: Path, repo_id: str, folder: Path, commit: str = "0" * 40) -> Path:
    """Move a folder's files into the hub cache as `repo_id` at `commit`; return the snapshot folder."""
    repo = Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for file in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        blob = repo / "blobs" / digest
        shutil.move(file, blob)
        link = snapshot / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def write_sd15_cache(hf_home: Path, base_id: str, controlnet_id: str, work: Path) -> None:
    """SD1.5 and its Canny ControlNet as hub-cache snapshots: real configs, random fp16 weights.

    The base snapshot has the real model_index.json (safety checker and feature extractor
    listed) but not their weights, as `huggingface-cli download --include` can leave it.
    """
    from diffusers import AutoencoderKL, ControlNetModel, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from workbench.families.clip_tokenizer import write_clip_tokenizer
    from workbench.families.sd15 import load_config
    base, controlnet = work / "base", work / "controlnet"
    write_clip_tokenizer(base / "tokenizer")
    torch.manual_seed(0)
    # the published config's token ids (0, 2, 1) are a known quirk; CLIP then pools at the argmax id
    text_encoder = CLIPTextModel(CLIPTextConfig(**load_config("text_encoder"), bos_token_id=0, eos_token_id=2,
                                                pad_token_id=1))
    text_encoder.to(torch.float16).save_pretrained(base / "text_encoder", safe_serialization=True)
    del text_encoder
    AutoencoderKL(**load_config("vae")).to(torch.float16).save_pretrained(base / "vae", safe_serialization=True)
    unet = UNet2DConditionModel(**load_config("unet"))
    ControlNetModel.from_unet(unet).to(torch.float16).save_pretrained(controlnet, safe_serialization=True)
    unet.to(torch.float16).save_pretrained(base / "unet", safe_serialization=True)
    del unet
    PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                  steps_offset=1).save_pretrained(base / "scheduler")
    (base / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.6.0",
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
        "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]}, indent=2))
    write_snapshot(hf_home, base_id, base)
    write_snapshot(hf_home, controlnet_id, controlnet)

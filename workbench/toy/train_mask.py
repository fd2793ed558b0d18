"""Train the toy world's second ControlNet, `toy-mask`: `python -m workbench.toy.train_mask`.

Its control is the shape's filled silhouette (white on black, RGB, 64 px), not its edges.
It is trained exactly as the Canny ControlNet was (stage 5 of `workbench.toy.train`: copied
from the UNet, only the ControlNet learns, captions dropped 30% of the time so it reads the
control), against the shipped toy model's frozen UNet, text encoder and VAE, so the two
ControlNets can be combined on the same base: Canny of a star in one place and a circle's
mask in another, swept as `canny.scale` x `mask.scale`, show which control wins.

    python -m workbench.toy.train_mask --out-dir runs/toy-mask --export workbench/assets/toy/controlnet-mask
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from ..models.devices import pick_device
from ..families import denoiser
from ..families.builders import build_controlnet
from .data import make_dataset
from .train import TOY_MODEL, TrainConfig, export_fp16, latent_means, train_controlnet

DEFAULT = TrainConfig(out_dir="runs/toy-mask", n_images=8000, controlnet_steps=2500)


def train_mask_controlnet(cfg: TrainConfig) -> Path:
    """Train the mask ControlNet on the shipped toy model; write it as a diffusers folder; return it."""
    from diffusers import StableDiffusionControlNetPipeline

    from ..models.pipeline import TOY_DIR
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    pipe = StableDiffusionControlNetPipeline.from_pretrained(TOY_DIR, local_files_only=True, dtype=torch.float32,
                                                             safety_checker=None, feature_extractor=None,
                                                             requires_safety_checker=False)
    device = pick_device(cfg.device)
    pipe.to(device)
    print(f"rendering {cfg.n_images} scenes with their silhouettes; training on {device} ...")
    started = time.time()
    data = make_dataset(cfg.n_images, seed=cfg.seed + 100, size=TOY_MODEL.image_size)  # scenes the Canny net never saw
    with torch.no_grad():
        latents = latent_means(pipe.vae, data.images)
    ids = pipe.tokenizer(data.captions, padding="max_length", truncation=True, return_tensors="pt").input_ids.to(device)
    empty = pipe.tokenizer([""], padding="max_length", return_tensors="pt").input_ids[0].to(device)
    print(f"data ready in {time.time() - started:.0f} s")
    torch.manual_seed(cfg.seed)
    unet = denoiser(pipe)
    controlnet = build_controlnet(TOY_MODEL, unet).to(device)
    train_controlnet(cfg, controlnet, unet, pipe.text_encoder, pipe.scheduler, latents, data.masks, ids, empty,
                     name="mask_controlnet")
    folder = out / "controlnet-mask"
    controlnet.to("cpu").save_pretrained(folder, safe_serialization=True)
    print(f"mask ControlNet written to {folder}")
    return folder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("out_dir", "seed", "n_images", "batch_size", "controlnet_steps", "controlnet_lr", "threads",
                 "checkpoint_every", "device"):
        default = getattr(DEFAULT, name)
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    parser.add_argument("--export", default=None, help="also copy the result (fp16) here, e.g. "
                        "workbench/assets/toy/controlnet-mask")
    args = vars(parser.parse_args(argv))
    export = args.pop("export")
    folder = train_mask_controlnet(dataclasses.replace(DEFAULT, **args))
    if export:
        export_fp16(folder, Path(export), part=True)


if __name__ == "__main__":
    main()

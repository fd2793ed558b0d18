"""Where must a UNet have attention for an attention-only LoRA to learn a fine texture?

    python benchmarks/lora_layout_probe.py [--unet-steps 1500] [--lora-steps 300] [--append-results]

Trains two small UNets the same way on the toy world's plain scenes (the shipped VAE and
text encoder, frozen), then one rank-8 LoRA on each from 256 zebra-style images:
- "toy":  attention at the 8x8 and 4x4 latent levels, as the shipped toy model;
- "sd15": attention at the 16x16 and 8x8 levels, SD1.5's order (attention outside, plain inside).
Zebra stripes repeat every 3.2 latent pixels. The table gives each UNet's noise-prediction
loss on held-out zebra and plain scenes at a few timesteps, before and after the LoRA, and
saves samples (rows: drawn, base, with LoRA) to outputs/lora_layout_<arm>.png to look at.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from peft import LoraConfig
from PIL import Image

import workbench as wb
from report import machine, publish, save_sheet
from workbench.lora import TARGET_MODULES
from workbench.toy.data import make_dataset
from workbench.toy.train import (TOY_MODEL, TrainConfig, cosine_lr, diffusion_loss, latent_means,
                                  sample_batch)

LAYOUTS = {
    "toy": (("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")),
    "sd15": (("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
             ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")),
}
TIMESTEPS = (50, 200, 400, 700)


def encode(pipe, data) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled latents and text embeddings of a ToyDataset, from the pipeline's frozen parts."""
    with torch.no_grad():
        ids = pipe.tokenizer(data.captions, padding="max_length", truncation=True, return_tensors="pt").input_ids
        context = torch.cat([pipe.text_encoder(ids[i:i + 256])[0] for i in range(0, len(ids), 256)])
        return latent_means(pipe.vae, data.images), context


def build(layout: str) -> UNet2DConditionModel:
    down, up = LAYOUTS[layout]
    m = TOY_MODEL
    torch.manual_seed(0)
    return UNet2DConditionModel(sample_size=m.latent_size, in_channels=m.latent_channels,
                                out_channels=m.latent_channels, block_out_channels=tuple(m.unet_channels),
                                layers_per_block=m.layers_per_block, down_block_types=down, up_block_types=up,
                                cross_attention_dim=m.text_width, attention_head_dim=m.attention_head_dim,
                                norm_num_groups=m.norm_num_groups)


def train_base(unet, scheduler, latents, context, empty, steps: int) -> None:
    """The toy trainer's UNet recipe, shortened: its min-SNR loss, 10% empty captions, cosine rate."""
    cfg = TrainConfig()  # batch 32, lr 1e-3, 10% empty captions, min-SNR 5
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, steps, cfg.lr)
        idx = sample_batch(len(latents), cfg.batch_size, generator)
        dropped = torch.rand(cfg.batch_size, generator=generator) < cfg.caption_dropout
        ctx = torch.where(dropped[:, None, None], empty, context[idx])
        loss = diffusion_loss(cfg, scheduler, lambda x, t: unet(x, t, ctx).sample, latents[idx], generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    unet.requires_grad_(False)


def train_adapter(unet, scheduler, latents, context, steps: int) -> None:
    """A rank-8 LoRA on the attention projections, as `wb.train_lora` trains it."""
    unet.add_adapter(LoraConfig(r=8, lora_alpha=8, init_lora_weights="gaussian", target_modules=TARGET_MODULES))
    trainable = [p for name, p in unet.named_parameters() if "lora" in name]
    for p in trainable:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(latents), (8,), generator=generator)
        noise = torch.randn(latents[idx].shape, generator=generator)
        t = torch.randint(0, 1000, (8,), generator=generator)
        loss = F.mse_loss(unet(scheduler.add_noise(latents[idx], noise, t), t, context[idx]).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    unet.requires_grad_(False)


def loss_by_timestep(unet, scheduler, latents, context) -> dict:
    """Mean noise-prediction error at each of TIMESTEPS, with one fixed noise draw."""
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return {t: F.mse_loss(unet(scheduler.add_noise(latents, noise, torch.tensor([t])), t, context).sample,
                              noise).item() for t in TIMESTEPS}


def sample(pipe, unet, context, empty, guidance: float = 5.0) -> torch.Tensor:
    """Text-only DDIM samples (20 steps, classifier-free guidance) as uint8 images."""
    scheduler = copy.deepcopy(pipe.scheduler)
    scheduler.set_timesteps(20)
    x = torch.randn((len(context), 4, 16, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for t in scheduler.timesteps:
            e = unet(torch.cat([x, x]), t, torch.cat([empty.expand(len(context), -1, -1), context])).sample
            uncond, cond = e.chunk(2)
            x = scheduler.step(uncond + guidance * (cond - uncond), t, x).prev_sample
        images = pipe.vae.decode(x / pipe.vae.config.scaling_factor).sample
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unet-steps", type=int, default=1500)
    parser.add_argument("--lora-steps", type=int, default=300)
    parser.add_argument("--n-plain", type=int, default=4000)
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    pipe = wb.load_pipeline("toy", device="cpu")
    with torch.no_grad():
        ids = pipe.tokenizer([""], padding="max_length", return_tensors="pt").input_ids
        empty = pipe.text_encoder(ids)[0]
    plain = encode(pipe, make_dataset(args.n_plain, seed=0, size=64))
    style = encode(pipe, make_dataset(256, seed=11, size=64, style="zebra"))
    held_zebra = make_dataset(128, seed=999, size=64, style="zebra")
    zebra_eval, plain_eval = encode(pipe, held_zebra), encode(pipe, make_dataset(128, seed=998, size=64))
    scheduler = pipe.scheduler
    lines = [f"### lora_layout_probe: UNets {args.unet_steps} steps on {args.n_plain} plain scenes, "
             f"rank-8 LoRA {args.lora_steps} steps on 256 zebra scenes", "", f"Machine: {machine()}.", "",
             "Noise-prediction loss on 128 held-out scenes at timestep t (lower is better):", "",
             "| UNet attention at | UNet s | LoRA s | scenes | adapter | " +
             " | ".join(f"t={t}" for t in TIMESTEPS) + " |", "|---|---|---|---|---|" + "---|" * len(TIMESTEPS)]
    for layout in args.layouts:
        unet = build(layout)
        started = time.perf_counter()
        train_base(unet, scheduler, *plain, empty, args.unet_steps)
        base_seconds = time.perf_counter() - started
        before = {"zebra": loss_by_timestep(unet, scheduler, *zebra_eval),
                  "plain": loss_by_timestep(unet, scheduler, *plain_eval)}
        base_images = sample(pipe, unet, zebra_eval[1][:6], empty)
        started = time.perf_counter()
        train_adapter(unet, scheduler, *style, args.lora_steps)
        lora_seconds = time.perf_counter() - started
        after = {"zebra": loss_by_timestep(unet, scheduler, *zebra_eval),
                 "plain": loss_by_timestep(unet, scheduler, *plain_eval)}
        rows = [held_zebra.images[:6], base_images, sample(pipe, unet, zebra_eval[1][:6], empty)]
        save_sheet([[Image.fromarray(image.permute(1, 2, 0).numpy()) for image in row] for row in rows],
                   Path("outputs") / f"lora_layout_{layout}.png")
        levels = "8x8, 4x4" if layout == "toy" else "16x16, 8x8"
        for scenes in ("zebra", "plain"):
            for name, losses in (("none", before), ("rank 8", after)):
                lines.append(f"| {levels} ({layout}) | {base_seconds:.0f} | {lora_seconds:.0f} | {scenes} | {name} | "
                             + " | ".join(f"{losses[scenes][t]:.3f}" for t in TIMESTEPS) + " |")
        print(f"{layout}: done", flush=True)
    lines.append("")
    publish(lines, args.append_results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

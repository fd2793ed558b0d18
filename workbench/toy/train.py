"""Train the toy world's SD + Canny ControlNet from nothing: `python -m workbench.toy.train`.

Stages, in order, each resumable from its last checkpoint:
  1. tokenizer     BPE over every caption the world can write (one token a word)
  2. text encoder  pretrained to name the colour, shape, background and style of a caption
  3. VAE           reconstruct 64 px scenes; latents are 16x16x4 (downscale 4)
  4. UNet          noise prediction (epsilon, min-SNR weighted), text encoder tuned jointly, EMA
  5. ControlNet    copied from the UNet (`ControlNetModel.from_unet`), trained on edges -> image
  6. VAE decoder   fine-tuned on plain and styled scenes with the encoder frozen, so the codec
                   draws every look of the toy world (LoRA's outlines and zebra stripes too)
                   while the latents the UNet learnt stay exactly as they were
The result is a standard diffusers pipeline folder; `--export` copies it (fp16) into the package.
It trains on the GPU when there is one (`--device auto`); every random draw comes from a CPU
generator, so a run is deterministic for a given seed, device and thread count.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..models.checkpoints import load_checkpoint, save_checkpoint
from ..models.devices import pick_device
from ..families.builders import (ModelConfig, build_controlnet, build_scheduler, build_text_encoder, build_tokenizer,
                                 build_unet, build_vae)
from ..families.sd15 import assemble_pipeline, control_residuals, controlnet_class, pipeline_class, predict_noise
from ..lora.prepare import noise_loss
from .data import make_dataset, to_model_range
from .world import PALETTE, SHAPES, STYLES, caption_words, sample_scenes

# The toy model's architecture: SD1.5's, narrowed. On 2 CPU cores the 4.1M-parameter UNet
# trains at about 2.2 steps/s (batch 32, 16x16 latents); the VAE at about 3 steps/s (batch 16).
TOY_MODEL = ModelConfig(image_size=64, vae_channels=(16, 32, 64), vae_norm_groups=8, vae_mid_attention=False,
                        unet_channels=(32, 64, 128),
                        layers_per_block=1, attention_head_dim=8, norm_num_groups=16,
                        text_width=64, text_layers=2, text_heads=4, max_length=16)


@dataclass
class TrainConfig:
    """Training settings; defaults finish on 2 CPU cores in about an hour."""
    out_dir: str = "runs/toy-train"
    seed: int = 0
    n_images: int = 8000          # distinct scenes; 4 shapes x 42 colour pairs, many positions
    batch_size: int = 32
    text_steps: int = 400         # seconds of work: a linear probe per attribute
    vae_steps: int = 1200
    vae_batch_size: int = 16      # the VAE works at full resolution, so it gets a smaller batch
    unet_steps: int = 6000
    controlnet_steps: int = 2500
    decoder_steps: int = 1000
    n_style_images: int = 2000    # scenes per style, for the decoder only: the UNet never sees a style
    lr: float = 1e-3              # small models tolerate a large rate; cosine decay to 10%
    text_lr_scale: float = 0.3    # the pretrained text encoder moves slower while tuned with the UNet
    controlnet_lr: float = 5e-4
    caption_dropout: float = 0.1  # empty captions teach the unconditional model for CFG
    controlnet_caption_dropout: float = 0.3  # makes the ControlNet read the edges, not the words
    min_snr_gamma: float = 5.0    # Hang et al. 2023: weight min(SNR, 5)/SNR speeds convergence
    ema_decay: float = 0.999
    kl_weight: float = 1e-6
    checkpoint_every: int = 500
    threads: int = 2
    device: str = "auto"          # cuda > mps > cpu; random draws stay on the CPU generator either way


def cosine_lr(step: int, total: int, base: float, warmup: int = 100) -> float:
    """Linear warm-up, then cosine decay from `base` to 10% of it."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class Stage:
    """One resumable training stage: owns its checkpoint file, loss log and progress bar."""

    def __init__(self, name: str, cfg: TrainConfig, steps: int, modules: dict, optimizer, seed: int):
        self.name, self.cfg, self.steps = name, cfg, steps
        self.modules, self.optimizer = modules, optimizer
        self.generator = torch.Generator().manual_seed(seed)
        self.path = Path(cfg.out_dir) / "checkpoints" / f"{name}.pt"
        self.start = 0
        if self.path.exists():
            state = load_checkpoint(self.path)
            for key, module in modules.items():
                module.load_state_dict(state["modules"][key])
            optimizer.load_state_dict(state["optimizer"])
            self.generator.set_state(state["generator"])
            self.start = state["step"]

    def save(self, step: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {"step": step, "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                 "modules": {key: module.state_dict() for key, module in self.modules.items()}}
        save_checkpoint(state, self.path)

    def run(self, step_fn, base_lr: float) -> None:
        """Call `step_fn(generator) -> loss` until done, logging and checkpointing as it goes."""
        log_path = Path(self.cfg.out_dir) / "losses.csv"
        new_log = not log_path.exists()
        with open(log_path, "a", newline="") as log_file:
            log = csv.writer(log_file)
            if new_log:
                log.writerow(["stage", "step", "loss", "lr", "seconds"])
            bar = tqdm(range(self.start, self.steps), desc=self.name, initial=self.start, total=self.steps)
            started = time.time()
            for step in bar:
                for group in self.optimizer.param_groups:
                    group["lr"] = cosine_lr(step, self.steps, base_lr) * group.get("lr_scale", 1.0)
                loss = step_fn(self.generator)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                if step % 20 == 0 or step == self.steps - 1:
                    log.writerow([self.name, step, f"{loss.item():.5f}", f"{self.optimizer.param_groups[0]['lr']:.2e}",
                                  f"{time.time() - started:.1f}"])
                    bar.set_postfix(loss=f"{loss.item():.4f}")
                if (step + 1) % self.cfg.checkpoint_every == 0 or step == self.steps - 1:
                    log_file.flush()
                    self.save(step + 1)


def sample_batch(n: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, n, (batch_size,), generator=generator)


def attribute_labels(scenes) -> torch.Tensor:
    """(N, 4) class indices: colour, shape, background, style (0 = none)."""
    colours, styles = sorted(PALETTE), (None, *STYLES)
    return torch.tensor([[colours.index(s.color), SHAPES.index(s.shape), colours.index(s.background),
                          styles.index(s.style)] for s in scenes])


def train_text_encoder(cfg: TrainConfig, text_encoder, tokenizer) -> None:
    """Stage 2: teach the pooled output to name each attribute (a linear head per attribute)."""
    scenes = sample_scenes(4000, seed=cfg.seed + 1)
    for k, style in enumerate(STYLES):  # 1,000 captions per style word
        scenes += sample_scenes(1000, seed=cfg.seed + 2 + 10 * k, style=style)
    ids = tokenizer([s.caption for s in scenes], padding="max_length", truncation=True, return_tensors="pt").input_ids
    labels = attribute_labels(scenes)
    sizes = (len(PALETTE), len(SHAPES), len(PALETTE), 1 + len(STYLES))
    heads = torch.nn.ModuleList(torch.nn.Linear(text_encoder.config.hidden_size, k) for k in sizes).to(text_encoder.device)
    ids, labels = ids.to(text_encoder.device), labels.to(text_encoder.device)
    optimizer = torch.optim.AdamW(list(text_encoder.parameters()) + list(heads.parameters()), lr=cfg.lr)

    def step(generator):
        idx = sample_batch(len(scenes), 64, generator)
        pooled = text_encoder(ids[idx]).pooler_output
        return sum(F.cross_entropy(head(pooled), labels[idx, k]) for k, head in enumerate(heads))

    Stage("text_encoder", cfg, cfg.text_steps, {"text_encoder": text_encoder, "heads": heads}, optimizer,
          cfg.seed + 2).run(step, cfg.lr)


def train_vae(cfg: TrainConfig, vae, images: torch.Tensor) -> None:
    """Stage 3: reconstruction (MSE) with a tiny KL term, as in SD's autoencoder but without a GAN."""
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.lr)

    def step(generator):
        x = to_model_range(images[sample_batch(len(images), cfg.vae_batch_size, generator)]).to(vae.device)
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator).to(vae.device)
        reconstruction = vae.decode(z).sample
        return F.mse_loss(reconstruction, x) + cfg.kl_weight * posterior.kl().mean()

    Stage("vae", cfg, cfg.vae_steps, {"vae": vae}, optimizer, cfg.seed + 3).run(step, cfg.lr)


@torch.no_grad()
def latent_means(vae, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Posterior means of every image, scaled by the VAE's scaling_factor."""
    latents = [vae.encode(to_model_range(images[i:i + batch]).to(vae.device)).latent_dist.mean
               for i in range(0, len(images), batch)]
    return torch.cat(latents) * vae.config.scaling_factor


def controlnet_predictor(unet, controlnet):
    """`predict(x, t, context, control)` for `diffusion_loss`: the toy UNet's noise prediction with `controlnet`'s
    residuals added (the toy is SD1.5-shaped: the text is all its UNet and ControlNet read)."""
    def predict(x, t, context, control):
        condition = {"encoder_hidden_states": context}
        return predict_noise(unet, x, t, control_residuals(controlnet, x, t, control, condition), condition)
    return predict


def diffusion_loss(cfg: TrainConfig, scheduler, predict, latents, generator, **inputs) -> torch.Tensor:
    """Epsilon-prediction loss at random timesteps, min-SNR weighted."""
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=generator).to(latents.device)
    noisy = scheduler.add_noise(latents, noise, t)
    return noise_loss(predict(noisy, t, **inputs), noise, scheduler, t, cfg.min_snr_gamma)  # LoRA training's too


def drop_caption_tokens(ids: torch.Tensor, empty: torch.Tensor, rate: float, generator) -> torch.Tensor:
    """Replace a fraction `rate` of the token rows with the empty caption's tokens."""
    drop = (torch.rand(len(ids), generator=generator) < rate).to(ids.device)
    return torch.where(drop[:, None], empty[None, :], ids)


def train_unet(cfg, unet, text_encoder, scheduler, latents, ids, empty) -> tuple:
    """Stage 4: the UNet learns to denoise; returns EMA copies of the UNet and text encoder."""
    ema = {"unet": copy.deepcopy(unet).requires_grad_(False),
           "text_encoder": copy.deepcopy(text_encoder).requires_grad_(False)}
    optimizer = torch.optim.AdamW([{"params": unet.parameters()},
                                   {"params": text_encoder.parameters(), "lr_scale": cfg.text_lr_scale}], lr=cfg.lr)
    trained = [*unet.parameters(), *text_encoder.parameters()]
    averaged = [*ema["unet"].parameters(), *ema["text_encoder"].parameters()]

    def step(generator):
        idx = sample_batch(len(latents), cfg.batch_size, generator)
        tokens = drop_caption_tokens(ids[idx], empty, cfg.caption_dropout, generator)
        context = text_encoder(tokens)[0]
        loss = diffusion_loss(cfg, scheduler, lambda x, t: unet(x, t, context).sample, latents[idx], generator)
        with torch.no_grad():  # the EMA update of the previous step's weights
            torch._foreach_lerp_(averaged, [p.detach() for p in trained], 1 - cfg.ema_decay)
        return loss

    modules = {"unet": unet, "text_encoder": text_encoder, "ema_unet": ema["unet"], "ema_text": ema["text_encoder"]}
    Stage("unet", cfg, cfg.unet_steps, modules, optimizer, cfg.seed + 4).run(step, cfg.lr)
    return ema["unet"], ema["text_encoder"]


def train_controlnet(cfg, controlnet, unet, text_encoder, scheduler, latents, controls, ids, empty,
                     name: str = "controlnet") -> None:
    """Stage 5: only the ControlNet learns; UNet and text encoder stay frozen.

    `controls` are (N, 1, H, W) uint8 maps, white on black: Canny edges here, silhouettes
    for the mask ControlNet (`workbench.toy.train_mask`).
    """
    unet.requires_grad_(False)
    text_encoder.requires_grad_(False)
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=cfg.controlnet_lr)

    predict = controlnet_predictor(unet, controlnet)

    def step(generator):
        idx = sample_batch(len(latents), cfg.batch_size, generator)
        with torch.no_grad():
            context = text_encoder(drop_caption_tokens(ids[idx], empty, cfg.controlnet_caption_dropout, generator))[0]
        control = controls[idx].to(latents.device).float().div(255).expand(-1, 3, -1, -1)  # (B, 3, H, W) in [0, 1]
        return diffusion_loss(cfg, scheduler, predict, latents[idx], generator, context=context, control=control)

    Stage(name, cfg, cfg.controlnet_steps, {"controlnet": controlnet}, optimizer, cfg.seed + 5).run(
        step, cfg.controlnet_lr)


def finetune_decoder(cfg: TrainConfig, vae, images: torch.Tensor) -> None:
    """Stage 6: the decoder learns to draw styled scenes too; the frozen encoder keeps every latent unchanged.

    The VAE of stage 3 only ever saw flat-coloured shapes, and blurs stripes away, so a LoRA
    could not show a striped style through it. SD's own VAE was fine-tuned the same way
    (decoder only, encoder frozen) without retraining its UNet.
    """
    vae.requires_grad_(False)
    trained = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    for p in trained:
        p.requires_grad_(True)
    with torch.no_grad():  # unscaled posterior means: what vae.decode receives at inference
        latents = torch.cat([vae.encode(to_model_range(images[i:i + 256]).to(vae.device)).latent_dist.mean
                             for i in range(0, len(images), 256)])
    optimizer = torch.optim.AdamW(trained, lr=cfg.lr / 2)

    def step(generator):
        idx = sample_batch(len(images), cfg.vae_batch_size, generator)
        target = to_model_range(images[idx]).to(vae.device)
        return F.mse_loss(vae.decode(latents[idx.to(latents.device)]).sample, target)

    Stage("vae_decoder", cfg, cfg.decoder_steps, {"vae": vae}, optimizer, cfg.seed + 6).run(step, cfg.lr / 2)
    vae.requires_grad_(False)


def train_toy(cfg: TrainConfig) -> Path:
    """Run every stage (resuming where checkpoints exist) and write the pipeline folder."""
    torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    model = TOY_MODEL
    print(f"rendering {cfg.n_images} scenes at {model.image_size} px; training on {device} ...")
    data = make_dataset(cfg.n_images, seed=cfg.seed, size=model.image_size)

    tokenizer = build_tokenizer(caption_words(), max_length=model.max_length)          # stage 1
    torch.manual_seed(cfg.seed)
    text_encoder = build_text_encoder(model, tokenizer).to(device)
    train_text_encoder(cfg, text_encoder, tokenizer)                                     # stage 2
    torch.manual_seed(cfg.seed)
    vae = build_vae(model).to(device)
    train_vae(cfg, vae, data.images)                                                      # stage 3
    vae.eval()
    with torch.no_grad():  # unscaled posterior means: latent_means would apply the default 0.18215
        raw = vae.encode(to_model_range(data.images[:1024]).to(device)).latent_dist.mean
    vae.register_to_config(scaling_factor=float(1.0 / raw.std()))  # SD convention: unit-variance latents
    latents = latent_means(vae, data.images)
    ids = tokenizer(data.captions, padding="max_length", truncation=True, return_tensors="pt").input_ids.to(device)
    empty = tokenizer([""], padding="max_length", return_tensors="pt").input_ids[0].to(device)
    scheduler = build_scheduler()
    torch.manual_seed(cfg.seed)
    unet = build_unet(model).to(device)
    unet, text_encoder = train_unet(cfg, unet, text_encoder, scheduler, latents, ids, empty)  # stage 4
    controlnet = build_controlnet(model, unet).to(device)
    train_controlnet(cfg, controlnet, unet, text_encoder, scheduler, latents, data.controls, ids, empty)  # stage 5
    styled = [make_dataset(cfg.n_style_images, seed=cfg.seed + 6 + 10 * k, size=model.image_size, style=style).images
              for k, style in enumerate(STYLES)]
    finetune_decoder(cfg, vae, torch.cat([data.images, *styled]))                       # stage 6

    pipe = assemble_pipeline(unet, controlnet, vae, text_encoder, tokenizer, scheduler).to("cpu")
    folder = out / "pipeline"
    pipe.save_pretrained(folder, safe_serialization=True)
    print(f"pipeline written to {folder}")
    return folder


def export_fp16(folder: Path, target: Path, part: bool = False) -> None:
    """Copy a saved folder into the package with weights halved to fp16 (keeps the toy under 30 MB): the whole
    pipeline, or (`part`) one ControlNet, as the mask ControlNet ships."""
    model = (controlnet_class() if part else pipeline_class()).from_pretrained(folder, local_files_only=True)
    if target.exists():
        shutil.rmtree(target)
    model.to(torch.float16).save_pretrained(target, safe_serialization=True)
    print(f"exported fp16 weights to {target}")


def parse_args(argv=None) -> tuple[TrainConfig, str | None]:
    """Command-line flags from TrainConfig's fields (--unet-steps 6000); unknown flags are an error."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for field in dataclasses.fields(TrainConfig):
        parser.add_argument("--" + field.name.replace("_", "-"), type=type(field.default), default=field.default)
    parser.add_argument("--export", default=None, help="also copy the result (fp16) into this folder, "
                        "e.g. workbench/assets/toy")
    args = vars(parser.parse_args(argv))
    export = args.pop("export")
    return TrainConfig(**args), export


def main(argv=None) -> None:
    cfg, export = parse_args(argv)
    folder = train_toy(cfg)
    if export:
        export_fp16(folder, Path(export))


if __name__ == "__main__":
    main()

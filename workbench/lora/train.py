"""Train LoRA adapters on the UNet's attention projections, and save them with their settings.

LoRA replaces a frozen weight W by  W' = W + (alpha / r) * B @ A,  where A is (r, in),
B is (out, r), and only A and B are trained. In SD's UNet the attention projections are
`to_q`, `to_k`, `to_v` and `to_out.0` (not `q_proj`/`v_proj`, which are CLIP's names).

Alpha policy: alpha defaults to r, so alpha / r = 1 at every rank and a rank sweep compares
ranks at the same scale (kohya's default alpha = 1 would scale a rank-128 adapter by 1/128).
`use_rslora=True` scales by alpha / sqrt(r) instead (Kalajdzievski 2023).
"""

from __future__ import annotations

import csv
import inspect
import warnings
from pathlib import Path
from typing import Callable

import torch
from peft import LoraConfig
from tqdm.auto import tqdm

from ..families import denoiser, family_of
from ..models.checkpoints import load_checkpoint, save_checkpoint
from ..models.fingerprint import file_sha256, module_fingerprint
from .adapters import adapter_sources, load_lora, loading_quietly, lora_disabled, peft_notes_quiet, unload_adapter
from .convert import convert_lora
from .files import cache_key, save_lora
from .prepare import (check_options, data_fingerprint, drop_captions, noise_loss, select_rows, text_for_step,
                      training_data, training_target, warmup_factor)

TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "out_proj"]  # a text encoder's attention, as diffusers' scripts
# Enough for the toy model's outlined style to show at weight 1 (about 30 s a rank on 2 CPU
# cores); 600 steps look no better (benchmarks/RESULTS.md, lora_bench).
DEFAULT_STEPS = 300


def smallest_target_dim(unet) -> int:
    """The smallest in/out size among the layers LoRA targets: the largest rank that makes sense."""
    layers = [getattr(m, "base_layer", m) for name, m in unet.named_modules()
              if any(name.endswith("." + t) for t in TARGET_MODULES)]  # peft wraps adapted layers
    return min(min(m.in_features, m.out_features) for m in layers if isinstance(m, torch.nn.Linear))


def check_rank(unet, rank) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise ValueError(f"LoRA `rank` must be a positive integer, got {rank!r}")
    limit = smallest_target_dim(unet)
    if rank > limit:
        raise ValueError(f"LoRA `rank` {rank} is larger than the smallest targeted layer ({limit} features); "
                         f"use rank <= {limit}")


class TrainingCheckpoint:
    """A LoRA training run's resumable state in one file, used only by a run with the same settings."""

    def __init__(self, path: Path, settings: dict):
        self.path, self.settings = path, settings

    def save(self, step: int, losses: list, trainable: list, optimizer, generator) -> None:
        state = {"settings": self.settings, "step": step, "losses": losses,
                 "weights": [p.detach().clone() for p in trainable], "optimizer": optimizer.state_dict(),
                 "generator": generator.get_state()}
        save_checkpoint(state, self.path)

    def restore(self, trainable: list, optimizer, generator) -> tuple[int, list]:
        """Load the checkpoint into the run if it matches; return (first step, losses so far)."""
        if not self.path.exists():
            return 0, []
        state = load_checkpoint(self.path)
        if state["settings"] != self.settings:
            warnings.warn(f"ignoring {self.path}: it was saved by a run with other settings", stacklevel=3)
            return 0, []
        with torch.no_grad():
            for p, saved in zip(trainable, state["weights"]):
                p.copy_(saved)
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        return state["step"], state["losses"]

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def train_lora(pipe, dataset, rank: int, alpha: float | None = None, steps: int = DEFAULT_STEPS, lr: float = 1e-3,
               batch_size: int = 8, seed: int = 0, use_rslora: bool = False, out_dir: str | Path = "runs/lora",
               adapter_name: str | None = None, callback: Callable[[int, float], None] | None = None,
               load: bool = True, checkpoint_every: int = 50, caption_dropout: float = 0.0,
               snr_gamma: float | None = None, gradient_accumulation: int = 1, gradient_checkpointing: bool = False,
               mixed_precision: str = "no", format: str = "diffusers", max_grad_norm: float | None = None,
               noise_offset: float = 0.0, lr_warmup_steps: int = 0, optimizer: str = "adamw",
               random_flip: bool = False, train_text_encoder: bool = False) -> Path:
    """Train a LoRA adapter on the UNet with the noise-prediction loss; save it; return the file.

    Args:
        pipe: the pipeline whose UNet is adapted (its weights stay frozen).
        dataset: a ToyDataset, (images, captions) with images as a uint8 tensor or PIL list, or a folder of
            captioned images (`image_folder`), whose latents are encoded in chunks and kept in fp16 when large.
        rank: r, the inner size of B @ A. alpha: defaults to r (see the module docstring).
        steps, lr, batch_size, seed: training settings; the same seed gives the same adapter.
        out_dir: where `<adapter_name>.safetensors` and `<adapter_name>.losses.csv` go.
        format: "diffusers" (this package's layout), or "kohya", the layout A1111 and ComfyUI load (`convert.py`).
        callback: called as callback(step, loss) after each step.
        load: load the result into `pipe` as adapter `adapter_name` (default f"rank{rank}").
        checkpoint_every: save the adapter, optimiser and random state this often to
            `<adapter_name>.checkpoint.pt`; an interrupted run with the same settings resumes
            from it and ends with the same adapter as an uninterrupted one.
        caption_dropout: the share of samples trained with an empty caption (the prompt-free half of
            classifier-free guidance; this project's rank study found it keeps colours).
        snr_gamma: weight each sample's loss by min(SNR, gamma) / SNR (min-SNR, Hang et al. 2023; 5 is
            the paper's); None trains with the plain loss.
        gradient_accumulation: micro-batches of `batch_size` per optimizer step, for large images.
        gradient_checkpointing: recompute the UNet's activations in the backward pass (less memory).
        mixed_precision: "no", or "fp16"/"bf16" autocast on CUDA (fp16 with a gradient scaler). On a half-precision
            UNet the autocast dtype is the UNet's own (an SDXL loaded in bf16 is not autocast to fp16).
        max_grad_norm: clip the gradients' norm to this (diffusers' scripts: 1.0; the real models' profiles set it).
        noise_offset: add this much noise constant over each channel (Guttenberg 2023; 0.05-0.1), so the model can
            learn darker and brighter images than the noise schedule lets it.
        lr_warmup_steps: raise the learning rate linearly over this many steps first.
        optimizer: "adamw", or "adamw8bit" (bitsandbytes, CUDA; see prepare.OPTIMIZERS for when it pays).
        random_flip: train half the samples, drawn each step, on the mirrored image (diffusers' `--random_flip`;
            both orientations are encoded once). A random crop is the dataset's: `image_folder(..., crop="random")`.
        train_text_encoder: also adapt every text encoder's attention (SD1.5's one, SDXL's two) at the same rank, as
            `--train_text_encoder` does; the captions are encoded afresh each step, and the file holds their layers.

    The target is the noise, or v for a v-prediction model, as the pipeline's scheduler config says (a single file
    loaded with `prediction_type="v_prediction"` carries it). On a GPU the ControlNets wait on the CPU meanwhile.
    """
    unet, device = denoiser(pipe), pipe.device
    check_rank(unet, rank)
    options = check_options(device, caption_dropout, snr_gamma, gradient_accumulation, gradient_checkpointing,
                            mixed_precision, max_grad_norm, noise_offset, lr_warmup_steps, optimizer, random_flip,
                            train_text_encoder)
    alpha = float(rank if alpha is None else alpha)
    adapter_name = adapter_name or f"rank{rank}"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    data = training_data(pipe, dataset, caption_dropout > 0, out / f"{adapter_name}.latents", flip=random_flip)
    context, extra = data.context, data.extra
    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=TARGET_MODULES,
                        use_rslora=use_rslora)
    training_name = f"{adapter_name}-training"
    with peft_notes_quiet():  # peft warns that a second adapter joins the first: that is the plan
        unet.add_adapter(config, adapter_name=training_name)
    unet.set_adapter(training_name)
    disabled = lora_disabled(unet)
    if disabled:  # a sweep's disable_lora() (an adapter-free row) would keep the new adapter out of the forward
        unet.enable_adapters()
    unet.requires_grad_(False)
    family = family_of(pipe)
    encoders = [getattr(pipe, name) for name in family.TEXT_ENCODERS] if train_text_encoder else []
    text_config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=TEXT_TARGET_MODULES,
                             use_rslora=use_rslora)
    for encoder in encoders:
        add_text_adapter(encoder, text_config, training_name)
    trainable = [p for model in (unet, *encoders) for n, p in model.named_parameters() if training_name in n]
    if encoders:  # each step encodes its captions: their token ids, and the empty caption's for dropout
        tokens, empty_tokens = family.tokenize(pipe, data.captions), family.tokenize(pipe, [""])
    for p in trainable:
        p.requires_grad_(True)
        p.data = p.data.float()  # LoRA weights train in fp32 even on a half-precision UNet
    optimizer = make_optimizer(optimizer, trainable, lr)
    generator = torch.Generator().manual_seed(seed)
    scheduler = noise_scheduler(pipe)
    if scheduler.config.prediction_type != "epsilon":
        options["prediction_type"] = scheduler.config.prediction_type  # recorded in the file, and in the cache key
    data_hash, base_fingerprint = data.data_hash, module_fingerprint(unet)  # LoRA excluded
    settings = dict(rank=rank, alpha=alpha, use_rslora=use_rslora, steps=steps, lr=lr, batch_size=batch_size, seed=seed,
                    data=data_hash, base=base_fingerprint, **options)  # options only where not the default
    checkpoint = TrainingCheckpoint(out / f"{adapter_name}.checkpoint.pt", settings=settings)
    checkpointing = getattr(unet, "is_gradient_checkpointing", False)
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    precision = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision)
    if precision is not None and unet.dtype in (torch.float16, torch.bfloat16):
        precision = unet.dtype  # autocast in the weights' own dtype: bf16 weights are not run in fp16
    scaler = torch.amp.GradScaler("cuda", enabled=precision == torch.float16)
    parked = park_controlnets(pipe)  # the ControlNets are not trained: off the GPU meanwhile
    try:
        start, losses = checkpoint.restore(trainable, optimizer, generator)  # a refused checkpoint unwinds too
        warmup = torch.optim.lr_scheduler.LambdaLR(  # counted from the resumed step: the same rates as one run
            optimizer, lambda done, start=start: warmup_factor(start + done, lr_warmup_steps))
        for step in tqdm(range(start, steps), desc=f"LoRA {adapter_name}", leave=False, initial=start, total=steps,
                         disable=callback is not None):
            optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for _ in range(gradient_accumulation):
                idx = data.draw_rows(batch_size, generator)
                if data.flipped:  # half the samples, drawn afresh each step, read the mirrored image's row
                    idx = idx + data.flipped * (torch.rand(batch_size, generator=generator) < 0.5).long()
                sample = data.batch_latents(idx).to(device, unet.dtype)
                noise = torch.randn(sample.shape, generator=generator).to(device, sample.dtype)
                if noise_offset:  # a per-channel constant: lets the model shift an image's overall brightness
                    noise = noise + noise_offset * torch.randn(sample.shape[:2] + (1, 1), generator=generator).to(
                        device, sample.dtype)
                t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=generator).to(device)
                noisy = scheduler.add_noise(sample, noise, t)
                with torch.autocast("cuda", dtype=precision, enabled=precision is not None):
                    if encoders:
                        text, keywords = text_for_step(pipe, tokens, empty_tokens, data, idx, caption_dropout,
                                                       generator)
                    else:
                        text, keywords = context[idx], select_rows(extra, idx)
                        if caption_dropout:
                            text, keywords = drop_captions(text, keywords, data.empty, idx, caption_dropout, generator)
                    condition = {"encoder_hidden_states": text.to(device), **keywords}
                    prediction = family.predict_noise(unet, noisy, t, None, condition).float()
                target = training_target(scheduler, sample.float(), noise.float(), t)
                loss = noise_loss(prediction, target, scheduler, t, snr_gamma) / gradient_accumulation
                scaler.scale(loss).backward()
                loss_sum += loss.item()
            if max_grad_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            warmup.step()
            losses.append(loss_sum)
            if (step + 1) % checkpoint_every == 0 and step + 1 < steps:
                checkpoint.save(step + 1, losses, trainable, optimizer, generator)
            if callback:
                callback(step, loss.item())
    except BaseException:
        unload_adapter(pipe, training_name)  # an interrupted run leaves the pipeline as it found it
        switch_off_again(unet, encoders, disabled)
        raise
    finally:
        if gradient_checkpointing and not checkpointing:
            unet.disable_gradient_checkpointing()
        data.close()
        for net in parked:
            net.to(device)
    unet.requires_grad_(False)
    path = out / f"{adapter_name}.safetensors"
    metadata = {"rank": rank, "alpha": alpha, "use_rslora": use_rslora, "steps": steps, "lr": lr, "seed": seed,
                "batch_size": batch_size, "dataset_hash": data_hash, "base_fingerprint": base_fingerprint, **options}
    save_lora(pipe, training_name, config, path, metadata, text_config if encoders else None)
    if format == "kohya":  # the same update in kohya's names, the training record kept in its header
        convert_lora(path, path, format="kohya", pipe=pipe)
    unload_adapter(pipe, training_name)
    switch_off_again(unet, encoders, disabled)
    checkpoint.remove()
    with open(out / f"{adapter_name}.losses.csv", "w", newline="") as f:
        csv.writer(f).writerows([("step", "loss"), *enumerate(losses)])
    if load:
        with loading_quietly():
            pipe.load_lora_weights(str(path), adapter_name=adapter_name)
        adapter_sources(pipe)[adapter_name] = file_sha256(path)
    return path


def add_text_adapter(encoder, config, name: str) -> None:
    """A LoRA adapter on a text encoder, active, switched on and alone in training (peft's own calls: transformers'
    `add_adapter` asks for a newer peft than diffusers does)."""
    from peft import inject_adapter_in_model
    from peft.tuners.tuners_utils import BaseTunerLayer
    encoder._hf_peft_config_loaded = True  # what transformers' add_adapter marks, so diffusers sees the adapter
    with peft_notes_quiet():
        inject_adapter_in_model(config, encoder, adapter_name=name)
    for layer in encoder.modules():
        if isinstance(layer, BaseTunerLayer):
            layer.set_adapter(name)
            layer.enable_adapters(True)  # a sweep's disable_lora() would keep the new adapter out of the forward
    encoder.requires_grad_(False)


def switch_off_again(unet, encoders: list, disabled: bool) -> None:
    """After training: the adapters a sweep had switched off (disable_lora) are off again."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    if not disabled:
        return
    if getattr(unet, "peft_config", None):
        unet.disable_adapters()
    for layer in (layer for encoder in encoders for layer in encoder.modules() if isinstance(layer, BaseTunerLayer)):
        layer.enable_adapters(False)


def train_lora_ranks(pipe, dataset, ranks=(1, 2, 4, 8, 16), alpha: float | None = None, steps: int = DEFAULT_STEPS,
                     lr: float = 1e-3, seed: int = 0, cache_dir: str | Path = "runs/lora-cache",
                     callback: Callable[[str, int, float], None] | None = None, **options) -> dict:
    """Train one adapter per rank (cached), load each as `rank<r>`; return {name: file}.

    `dataset` is anything `train_lora` takes (an image folder too); `options` are more of its
    keywords (batch_size, mixed_precision, ...). The cache key (`files.cache_key`) hashes the
    base model, the data and every setting, so a re-run with the same settings loads the files
    instead of training again.
    """
    data = data_fingerprint(dataset)
    options = key_options(options)
    files = {}
    for rank in ranks:
        name = f"rank{rank}"
        rank_alpha = float(rank if alpha is None else alpha)
        key = cache_key(denoiser(pipe), data, rank, rank_alpha, False, steps, lr, seed, options)
        path = Path(cache_dir) / key / f"{name}.safetensors"
        folder = path.parent
        if not path.exists():
            train_lora(pipe, dataset, rank, alpha=alpha, steps=steps, lr=lr, seed=seed, out_dir=folder,
                       adapter_name=name, load=False,
                       callback=(lambda step, loss, n=name: callback(n, step, loss)) if callback else None, **options)
        load_lora(pipe, path, name, replace=True)
        files[name] = path
    return files


def make_optimizer(name: str, parameters: list, lr: float):
    """AdamW, or bitsandbytes' 8-bit AdamW where it is installed (a one-line error where it is not)."""
    if name == "adamw8bit":
        try:
            import bitsandbytes
        except ImportError:
            raise ValueError("`optimizer` 'adamw8bit' needs bitsandbytes (pip install bitsandbytes, on CUDA); "
                             "use 'adamw'") from None
        return bitsandbytes.optim.AdamW8bit(parameters, lr=lr)
    return torch.optim.AdamW(parameters, lr=lr)


def park_controlnets(pipe) -> list:
    """Move the pipeline's ControlNets to the CPU while a LoRA trains on a GPU (they are not part of the loss);
    return them, to move back. Nothing moves on a CPU."""
    if pipe.device.type == "cpu" or getattr(pipe, "controlnet", None) is None:
        return []
    nets = list(getattr(pipe.controlnet, "nets", [pipe.controlnet]))
    for net in nets:
        net.to("cpu")
    return nets


def noise_scheduler(pipe):
    """The forward process that training adds noise with: DDPM on the pipeline's betas, as diffusers' training
    scripts use it, whatever sampler the pipeline draws with (Euler's and DPM++'s `add_noise` only know the
    timesteps of their last `set_timesteps`). On DDIM's or PNDM's betas it adds exactly the same noise."""
    from diffusers import DDPMScheduler
    accepted = inspect.signature(DDPMScheduler.__init__).parameters
    return DDPMScheduler(**{name: value for name, value in pipe.scheduler.config.items() if name in accepted})


def key_options(options: dict | None) -> dict:
    """The `train_lora` keywords that are not at their defaults: only those join a cache key (older keys stay)."""
    defaults = {name: p.default for name, p in inspect.signature(train_lora).parameters.items()}
    return {name: value for name, value in (options or {}).items() if value != defaults.get(name)}


def random_lora(pipe, rank: int, path: str | Path, seed: int = 0, std: float = 0.01) -> Path:
    """Save an adapter with random A and B (no training): for speed benchmarks on any base."""
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=float(rank), init_lora_weights=False, target_modules=TARGET_MODULES)
    name = f"random-r{rank}-{seed}"
    with peft_notes_quiet():
        denoiser(pipe).add_adapter(config, adapter_name=name)
    with torch.no_grad():
        for param_name, param in denoiser(pipe).named_parameters():
            if name in param_name:
                param.normal_(0, std)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_lora(pipe, name, config, path, {"rank": rank, "alpha": float(rank), "random": True, "seed": seed})
    unload_adapter(pipe, name)  # unwrapped again when it was the only one
    return path

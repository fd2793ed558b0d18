"""What LoRA training reads, computed once before the first step: latents, text embeddings, the loss.

The frozen parts (VAE encoder, text encoders) run once over the data: latents are encoded in
chunks (fewer images a chunk as they grow), kept in fp32 while small, in fp16 past
`HALF_BYTES`, and in an fp16 file on disk past `DISK_BYTES`, so a folder of 1024 px images does
not have to fit in memory as floats. A toy dataset takes exactly the path it always took.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..families import family_of
from .files import dataset_hash
from .folder import ImageFolder, covering_size

HALF_BYTES = 256 * 2**20   # latents larger than this (as fp32) are kept in fp16
DISK_BYTES = 2 * 2**30     # and larger than this (as fp16), in a file on disk
CHUNK_PIXELS = 64 * 64 * 64  # images per VAE call: 64 at 64 px, 1 at 512 px and above
PRECISIONS = ("no", "fp16", "bf16")
# "adamw8bit" keeps Adam's two moments in 8 bits (bitsandbytes, CUDA only). For LoRA it saves little: an SD1.5
# rank-4 adapter has 0.8 M parameters, whose fp32 moments are 6.4 MB; it pays for full fine-tuning, not here.
OPTIMIZERS = ("adamw", "adamw8bit")


def training_pairs(dataset) -> tuple[torch.Tensor, list[str]]:
    """(images as (N, 3, H, W) floats in [-1, 1], captions) from a ToyDataset or (images, captions)."""
    if hasattr(dataset, "images") and hasattr(dataset, "captions"):
        images, captions = dataset.images, dataset.captions
    elif isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        images, captions = dataset
    else:
        raise ValueError("dataset must be a ToyDataset or a pair (images, captions)")
    if len(images) == 0:
        raise ValueError("dataset is empty: give at least one (image, caption) pair")
    if len(images) != len(captions):
        raise ValueError(f"dataset has {len(images)} images but {len(captions)} captions; they must pair up")
    if not isinstance(images, torch.Tensor):
        import numpy as np
        from ..models.control import load_image
        images = torch.stack([torch.from_numpy(np.asarray(load_image(i)).copy()).permute(2, 0, 1) for i in images])
    images = images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float()
    return images, list(captions)


def data_fingerprint(dataset) -> str:
    """A hash of any training data `train_lora` takes: an image folder's own, else the images' bytes and captions."""
    if hasattr(dataset, "fingerprint"):
        return dataset.fingerprint()
    return dataset_hash(*training_pairs(dataset))


def check_options(device, caption_dropout, snr_gamma, gradient_accumulation, gradient_checkpointing,
                  mixed_precision, max_grad_norm=None, noise_offset=0.0, lr_warmup_steps=0, optimizer="adamw",
                  random_flip=False, train_text_encoder=False) -> dict:
    """Refuse an impossible training option, naming it; return the ones not at their default (for the record)."""
    if not (isinstance(caption_dropout, (int, float)) and 0 <= caption_dropout < 1):
        raise ValueError(f"`caption_dropout` is a share of samples in [0, 1), got {caption_dropout!r}")
    if snr_gamma is not None and not (isinstance(snr_gamma, (int, float)) and snr_gamma > 0):
        raise ValueError(f"`snr_gamma` is a positive number (5 in the min-SNR paper) or None, got {snr_gamma!r}")
    if isinstance(gradient_accumulation, bool) or not isinstance(gradient_accumulation, int) or gradient_accumulation < 1:
        raise ValueError(f"`gradient_accumulation` is a whole number >= 1, got {gradient_accumulation!r}")
    if mixed_precision not in PRECISIONS:
        raise ValueError(f"`mixed_precision` is one of {list(PRECISIONS)}, got {mixed_precision!r}")
    if mixed_precision != "no" and torch.device(device).type != "cuda":
        raise ValueError(f"`mixed_precision` {mixed_precision!r} is for CUDA; on {device} train with 'no'")
    if max_grad_norm is not None and not (isinstance(max_grad_norm, (int, float)) and max_grad_norm > 0):
        raise ValueError(f"`max_grad_norm` is a positive number (1.0 in diffusers' scripts) or None, got {max_grad_norm!r}")
    if not (isinstance(noise_offset, (int, float)) and 0 <= noise_offset < 1):
        raise ValueError(f"`noise_offset` is in [0, 1) (0.05-0.1 is usual), got {noise_offset!r}")
    if isinstance(lr_warmup_steps, bool) or not isinstance(lr_warmup_steps, int) or lr_warmup_steps < 0:
        raise ValueError(f"`lr_warmup_steps` is a whole number >= 0, got {lr_warmup_steps!r}")
    for name, value in (("random_flip", random_flip), ("train_text_encoder", train_text_encoder)):
        if not isinstance(value, bool):
            raise ValueError(f"`{name}` is True or False, got {value!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"`optimizer` is one of {list(OPTIMIZERS)}, got {optimizer!r}")
    given = dict(caption_dropout=caption_dropout, snr_gamma=snr_gamma, gradient_accumulation=gradient_accumulation,
                 gradient_checkpointing=gradient_checkpointing, mixed_precision=mixed_precision,
                 max_grad_norm=max_grad_norm, noise_offset=noise_offset, lr_warmup_steps=lr_warmup_steps,
                 optimizer=optimizer, random_flip=random_flip, train_text_encoder=train_text_encoder)
    defaults = dict(caption_dropout=0.0, snr_gamma=None, gradient_accumulation=1, gradient_checkpointing=False,
                    mixed_precision="no", max_grad_norm=None, noise_offset=0.0, lr_warmup_steps=0, optimizer="adamw",
                    random_flip=False, train_text_encoder=False)
    return {name: value for name, value in given.items() if value != defaults[name]}


@dataclass
class TrainingData:
    """Latents and text conditioning, one row per distinct image; `rows` maps a sample to its row (repeats)."""
    latents: torch.Tensor
    rows: torch.Tensor
    context: torch.Tensor
    extra: dict
    data_hash: str
    empty: tuple | None = None      # (context, extra) of the empty caption per row, for caption dropout
    files: list = field(default_factory=list)
    flipped: int = 0                # with random flip: the row where the mirrored images' copies start (else 0)
    captions: list = field(default_factory=list)  # per row: what a text encoder being trained reads each step
    sizes: list | None = None       # per row, SDXL's size ids (original, crop, target); None: the trained size
    bucket_of: torch.Tensor | None = None  # per row, its aspect-ratio bucket (then `latents` is a list of shapes)

    def batch_latents(self, idx: torch.Tensor) -> torch.Tensor:
        """The latents of rows `idx` as one tensor (with buckets, rows of one bucket share a shape)."""
        return self.latents[idx] if torch.is_tensor(self.latents) else torch.stack([self.latents[i] for i in idx.tolist()])

    def draw_rows(self, batch_size: int, generator) -> torch.Tensor:
        """A batch's rows: samples drawn uniformly (repeats counted); with buckets, the first sample's bucket gives the
        rest, so each bucket is drawn as often as it holds samples, as kohya's bucketed batches are."""
        idx = self.rows[torch.randint(0, len(self.rows), (1 if self.bucket_of is not None else batch_size,),
                                      generator=generator)]
        if self.bucket_of is None:
            return idx
        members = self.rows[self.bucket_of[self.rows] == self.bucket_of[idx[0]]]
        return members[torch.randint(0, len(members), (batch_size,), generator=generator)]

    def close(self) -> None:
        """Remove the latents' file on disk, if there is one."""
        for path in self.files:
            Path(path).unlink(missing_ok=True)


def training_data(pipe, dataset, with_empty: bool, spill: Path, flip: bool = False) -> TrainingData:
    """Encode the dataset once: latents (chunked), text embeddings, and the empty caption's where dropout needs it.

    With `flip`, each image is encoded mirrored too (rows N..2N-1, `flipped` = N), as kohya caches both for its
    flip augmentation: latents are encoded once, so a flip drawn per step reads the mirrored copy. SDXL's size ids
    of a mirrored row put the crop's left edge where it falls in the mirrored image."""
    bucket_of = None
    with torch.no_grad():
        if isinstance(dataset, ImageFolder):
            first = {}  # each image once: the first sample that reads it
            for sample, entry in enumerate(dataset.order):
                first.setdefault(entry, sample)
            captions, sizes = [], []

            def pixels():  # read one image at a time; its caption and sizes are noted as it passes
                for mirrored in (False, True) if flip else (False,):
                    for i in range(len(dataset.entries)):
                        item = dataset[first[i]]
                        top, left = item["crop_top_left"]
                        left = mirrored_left(item["original_size"], left, item["target_size"]) if mirrored else left
                        captions.append(item["caption"])
                        sizes.append((*item["original_size"], top, left, *item["target_size"]))
                        yield item["pixels"].flip(-1) if mirrored else item["pixels"]

            count = len(dataset.entries) * (2 if flip else 1)
            if dataset.buckets:  # shapes differ: one latent tensor per image, and each row's bucket
                latents, files = [encode_latents(pipe, iter([image]), 1, image.shape[1:], spill)[0][0]
                                  for image in pixels()], []
                shapes = sorted({tuple(latent.shape) for latent in latents})
                bucket_of = torch.tensor([shapes.index(tuple(latent.shape)) for latent in latents])
            else:
                latents, files = encode_latents(pipe, pixels(), count, dataset.resolution, spill)
            rows, data_hash = torch.tensor(dataset.order), dataset.fingerprint()
        else:
            images, captions = training_pairs(dataset)
            sizes, files = None, []
            data_hash = dataset_hash(images, captions)
            if flip:
                images, captions = torch.cat([images, images.flip(-1)]), captions + captions
            # The posterior's mean, not a sample (diffusers' scripts sample each step): latents are encoded once
            # and reused every step, so a sample would fix one draw of the posterior's noise for the whole run;
            # the mean keeps a cached run exact. A trained VAE's posterior is narrow (SD's was trained with a KL
            # weight of 1e-6), so the two differ little; not measured here (no trained SD VAE offline).
            latents = torch.cat([pipe.vae.encode(images[i:i + 64].to(pipe.device, pipe.vae.dtype)).latent_dist.mean
                                 for i in range(0, len(images), 64)]) * pipe.vae.config.scaling_factor
            rows = torch.arange(len(latents) // (2 if flip else 1))
        context, extra = text_conditioning(pipe, captions, image_sizes=sizes)
        empty = text_conditioning(pipe, [""] * len(captions), image_sizes=sizes) if with_empty else None
    return TrainingData(latents, rows, context, extra, data_hash, empty, files, len(latents) // 2 if flip else 0,
                        captions, sizes, bucket_of)


def mirrored_left(original_size: tuple[int, int], left: int, target_size: tuple[int, int]) -> int:
    """Where a crop's left edge falls once the resized image is mirrored (`folder.cover_crop`'s sizes)."""
    (height, width), (target_height, target_width) = original_size, target_size
    resized_width, _ = covering_size((width, height), (target_width, target_height))
    return resized_width - target_width - left


def encode_latents(pipe, pixels, count: int, resolution, spill: Path) -> tuple[torch.Tensor, list]:
    """VAE latents of `count` uint8 images, in chunks; fp16 when large, in a file on disk when larger. `resolution`
    is a square's side, or (height, width)."""
    vae = pipe.vae
    height, width = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    chunk = max(1, CHUNK_PIXELS // (height * width))
    shape = (count, vae.config.latent_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    half = 4 * np.prod(shape) > HALF_BYTES
    on_disk = 2 * np.prod(shape) > DISK_BYTES
    if on_disk:
        store = torch.from_numpy(np.lib.format.open_memmap(spill.with_suffix(".npy"), "w+", np.float16, shape))
    else:
        store = torch.empty(shape, dtype=torch.float16 if half else torch.float32)
    batch, start = [], 0
    for image in pixels:
        batch.append(image)
        if len(batch) == chunk or start + len(batch) == count:
            images = torch.stack(batch).to(pipe.device, vae.dtype) / 127.5 - 1.0
            store[start:start + len(batch)] = (vae.encode(images).latent_dist.mean  # the mean: see training_data
                                               * vae.config.scaling_factor).cpu()
            start, batch = start + len(batch), []
    return store, [spill.with_suffix(".npy")] if on_disk else []


def drop_captions(context, keywords: dict, empty: tuple, idx, rate: float, generator) -> tuple:
    """Swap a share `rate` of the batch's text conditioning for the empty caption's (same rows' sizes)."""
    drop = torch.rand(len(idx), generator=generator) < rate
    mask = drop.view(-1, *([1] * (context.dim() - 1)))
    empty_context, empty_extra = empty
    return torch.where(mask, empty_context[idx], context), swap_rows(keywords, select_rows(empty_extra, idx), drop)


def swap_rows(keywords: dict, other: dict, drop: torch.Tensor) -> dict:
    """In nested keyword dicts of tensors, take `other`'s rows where `drop` is set."""
    swapped = {}
    for key, value in keywords.items():
        if isinstance(value, dict):
            swapped[key] = swap_rows(value, other[key], drop)
        else:
            swapped[key] = torch.where(drop.view(-1, *([1] * (value.dim() - 1))).to(value.device), other[key], value)
    return swapped


def text_for_step(pipe, tokens: list, empty: list, data, idx, rate: float, generator) -> tuple:
    """The batch's text conditioning computed afresh (a text encoder is being trained, so it cannot be cached): each
    encoder's token ids of rows `idx`, a share `rate` swapped for the empty caption's, through the family's encoders."""
    batch = [ids[idx] for ids in tokens]
    if rate:
        drop = (torch.rand(len(idx), generator=generator) < rate)[:, None]
        batch = [torch.where(drop, blank.expand_as(ids), ids) for ids, blank in zip(batch, empty)]
    sizes = None if data.sizes is None else [data.sizes[i] for i in idx.tolist()]
    return family_of(pipe).text_context(pipe, batch, image_sizes=sizes)


def training_target(scheduler, sample, noise, t):
    """What the UNet learns to predict: the noise (epsilon models), or v = sqrt(a) * noise - sqrt(1 - a) * x0
    (v-prediction models, Salimans & Ho 2022), as the scheduler's `prediction_type` says."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(sample, noise, t)
    raise ValueError(f"training a LoRA for prediction_type {kind!r} is not supported; epsilon and v_prediction are")


def noise_loss(prediction, target, scheduler, t, snr_gamma: float | None):
    """The MSE to the training target; with `snr_gamma`, each sample weighted by min(SNR, gamma) / SNR (Hang et al.
    2023), or by min(SNR, gamma) / (SNR + 1) for a v-prediction model, as diffusers' training scripts weigh it."""
    if snr_gamma is None:
        return F.mse_loss(prediction, target)
    alphas = scheduler.alphas_cumprod.to(t.device)[t]
    snr = alphas / (1 - alphas)
    weight = torch.clamp(snr, max=snr_gamma) / (snr + 1 if scheduler.config.prediction_type == "v_prediction" else snr)
    return (weight * F.mse_loss(prediction, target, reduction="none").mean(dim=(1, 2, 3))).mean()


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The learning rate's share at `step` with a linear warm-up over `warmup_steps` (1 after it; diffusers' scripts'
    `constant_with_warmup`)."""
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)


def text_conditioning(pipe, captions: list[str], chunk: int = 64, image_sizes: list | None = None) -> tuple:
    """Text embeddings of every caption, and the family's extra UNet keywords (SDXL: pooled text, size ids).

    `image_sizes`, one (original height, width, crop top, left, target height, width) per caption,
    are the sizes a family that conditions on them (SDXL) is given; None means the trained size.
    """
    family = family_of(pipe)
    tokens = family.tokenize(pipe, captions)
    parts = [family.text_context(pipe, [t[i:i + chunk] for t in tokens],
                                 image_sizes=None if image_sizes is None else image_sizes[i:i + chunk])
             for i in range(0, len(captions), chunk)]
    return torch.cat([context for context, _ in parts]), concatenate_keywords([extra for _, extra in parts])


def concatenate_keywords(parts: list[dict]) -> dict:
    """Chunks of nested keyword dicts of tensors, joined along the batch dimension."""
    if not parts or not parts[0]:
        return {}
    return {key: concatenate_keywords([p[key] for p in parts]) if isinstance(parts[0][key], dict)
            else torch.cat([p[key] for p in parts]) for key in parts[0]}


def select_rows(keywords: dict, idx: torch.Tensor) -> dict:
    """The rows `idx` of every tensor in a nested keyword dict."""
    return {key: select_rows(value, idx) if isinstance(value, dict) else value[idx] for key, value in keywords.items()}



"""Will a batch fit in the CPU's memory? A size estimate from the model's configs, against free memory.

On a GPU the sweep measures one image with a probe (`speed.image_memory`). On the CPU
there is no allocator to ask, and a process that outgrows the machine is killed by the
kernel, taking other users' kernels on a shared JupyterHub with it. So before each batch the
sweep compares an estimate with the memory that is free, lowers the batch to what fits,
and refuses an image that cannot fit at all, with a message, instead of letting it grow.

The estimate counts feature maps, per image, in the model's dtype:
  denoising   2 rows (classifier-free guidance) x STEP_MAPS maps per level x channels x latent
              pixels, summed over the UNet's levels (UNet and ControlNet together; the
              transformer's GEGLU feed-forward alone is 8 maps wide)
  VAE decode  DECODE_MAPS full-resolution maps of the decoder's last block, x 4/3 for the
              coarser levels
The two constants were measured on SD1.5's architecture (random weights, fp32, CPU, one image,
peak RSS of a fresh process): a denoising step took 0.55 GiB at 512 px (estimate 0.57), the
decode 1.01 GiB at 512 px and 3.77 GiB at 1024 px (estimates 1.17 and 4.67).
Attention adds nothing with SDPA (flash attention on CPUs too: scores are never stored whole);
without it, the score matrix at the finest attention level is added: rows x heads x tokens^2.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..families import denoiser

HEADROOM = 0.8    # use at most this share of the free memory (CPU here, GPU in `speed.auto_batch_size`)
STEP_MAPS = 32    # maps alive per UNet level in a denoising step, UNet and ControlNet together (measured)
DECODE_MAPS = 7   # full-resolution maps alive in the VAE decoder's last block (measured)


def available_memory() -> int | None:
    """Bytes this process may still allocate: MemAvailable, or a lower cgroup v2 limit; None if unknown."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return None  # not Linux: no estimate, no check
    match = re.search(r"MemAvailable:\s+(\d+) kB", meminfo)
    if match is None:
        return None  # kernels before 3.14 do not report it
    free = int(match.group(1)) * 1024
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            free = min(free, int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(free, 0)


def uses_sdpa(model) -> bool:
    """True if every attention layer of `model` uses scaled_dot_product_attention."""
    from diffusers.models.attention_processor import AttnProcessor2_0
    return all(isinstance(p, AttnProcessor2_0) for p in model.attn_processors.values())


def step_bytes(block_out_channels, latent_pixels: int, value_bytes: int) -> int:
    """Feature maps of one denoising step for one image (2 CFG rows) of a UNet with these levels' channels, UNet and
    ControlNet together: the formula, on a config (a memory plan) or a loaded UNet (`denoising_bytes`)."""
    per_row = sum(STEP_MAPS * channels * latent_pixels // 4 ** level for level, channels in enumerate(block_out_channels))
    return 2 * per_row * value_bytes


def denoising_bytes(unet, latent_pixels: int, value_bytes: int) -> int:
    """Feature maps of one denoising step for one image (2 CFG rows), UNet and ControlNet together."""
    return step_bytes(unet.config.block_out_channels, latent_pixels, value_bytes)


def attention_bytes(unet, latent_pixels: int, value_bytes: int) -> int:
    """The attention score matrix at the finest attention level, when it is stored whole (no SDPA)."""
    if uses_sdpa(unet):
        return 0
    levels = [i for i, kind in enumerate(unet.config.down_block_types) if "Attn" in kind]
    if not levels:
        return 0
    tokens = latent_pixels // 4 ** levels[0]
    head_dim = unet.config.attention_head_dim
    heads = head_dim if isinstance(head_dim, int) else max(head_dim)  # SD1.5 names heads "head dim"
    return 2 * 2 * heads * tokens ** 2 * value_bytes


def decoder_bytes(first_channels: int, pixels: int, value_bytes: int) -> int:
    """The VAE decoder's full-resolution maps for one image (of `first_channels` each), plus a third for the coarser
    levels: the formula, on a config or a loaded VAE (`decode_bytes`)."""
    return DECODE_MAPS * first_channels * pixels * value_bytes * 4 // 3


def decode_bytes(vae, pixels: int, value_bytes: int) -> int:
    """The VAE decoder's full-resolution maps for one image, plus a third for the coarser levels."""
    return decoder_bytes(vae.config.block_out_channels[0], pixels, value_bytes)


def estimate_image_bytes(pipe, width: int, height: int) -> int:
    """An upper bound on the memory one more image in a batch needs, in bytes."""
    value_bytes = torch.finfo(denoiser(pipe).dtype).bits // 8
    latent_pixels = (width // pipe.vae_scale_factor) * (height // pipe.vae_scale_factor)
    step = denoising_bytes(denoiser(pipe), latent_pixels, value_bytes) + attention_bytes(denoiser(pipe), latent_pixels,
                                                                                   value_bytes)
    return max(step, decode_bytes(pipe.vae, width * height, value_bytes))


def fit_batch(pipe, width: int, height: int, wanted: int, log=print) -> int:
    """The batch size that fits in free CPU memory, at most `wanted`; raise MemoryError if not one image does."""
    free = available_memory()
    if free is None:
        return wanted
    per_image = estimate_image_bytes(pipe, width, height)
    fits = int(free * HEADROOM // per_image)
    if fits < 1:
        raise MemoryError(f"one {width}x{height} image needs about {per_image / 2**30:.1f} GiB here and "
                          f"{free / 2**30:.1f} GiB is free: nothing was generated. Use a smaller `resolution` "
                          "(or control image), close other programs, or run on a GPU")
    if fits < wanted:
        log(f"{wanted} images of {width}x{height} need about {wanted * per_image / 2**30:.1f} GiB and "
            f"{free / 2**30:.1f} GiB is free: batches of {fits} instead")
    return min(wanted, fits)

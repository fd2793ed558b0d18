"""GPU settings for fast sweeps. `load_pipeline` applies them on CUDA; each is one function here.

  precision      bf16 where the GPU has it (fp32's range: the VAE cannot overflow), else fp16
                 (`devices.pick_dtype`); half precision on the CPU is refused with a warning.
  attention      SDPA (`torch.nn.functional.scaled_dot_product_attention`: flash and
                 memory-efficient kernels), diffusers' default on torch 2; `use_sdpa` checks it.
  memory layout  channels_last for the UNet and ControlNet: tensor-core convolutions want NHWC.
  VAE decode     in fp32 when the pipeline runs in fp16, because the SD1.5 VAE decoder
                 overflows to NaN (black images) in fp16 (`upcast_vae`).
  torch.compile  optional (`load_pipeline(..., compile=True)`): the first batch of each new
                 shape pays the compilation, which the sweep reports as warm-up.
  batch size     from free GPU memory, measured by a probe (`auto_batch_size`); an
                 out-of-memory error still halves the batch and the sweep goes on.
"""

from __future__ import annotations

import torch

from ..families import denoiser, family_of, unit_controlnets
from .scales import keep_scale_hooks
from .memory import HEADROOM

CPU_BATCH = 16          # on the CPU memory is plentiful and batching past this gains nothing


def use_sdpa(pipe) -> None:
    """Make every attention layer of the UNet and ControlNet use SDPA (a no-op when they do)."""
    from diffusers.models.attention_processor import AttnProcessor2_0
    for model in (denoiser(pipe), *unit_controlnets(pipe.controlnet)):
        if any(not isinstance(p, AttnProcessor2_0) for p in model.attn_processors.values()):
            model.set_attn_processor(AttnProcessor2_0())


def use_channels_last(pipe) -> None:
    """Store the UNet's and ControlNet's conv weights in NHWC (channels_last) order."""
    for model in (denoiser(pipe), pipe.controlnet):
        model.to(memory_format=torch.channels_last)


def upcast_vae(pipe) -> None:
    """Run the VAE in fp32 inside an fp16 pipeline: latents are cast up as they enter the decoder.

    diffusers' SD ControlNet pipeline decodes with `vae.decode(latents)` in the latents' dtype;
    a pre-hook on the decoder's first layer casts them to the VAE's fp32.
    """
    vae = pipe.vae
    if vae.dtype == torch.float32:
        return
    vae.to(torch.float32)
    first = vae.post_quant_conv if getattr(vae, "post_quant_conv", None) is not None else vae.decoder

    def to_fp32(module, args):
        return tuple(a.float() if torch.is_tensor(a) else a for a in args)

    first.register_forward_pre_hook(to_fp32)


def compile_pipeline(pipe, backend: str = "inductor") -> None:
    """torch.compile the UNet and ControlNet in place (`Module.compile`, so LoRA and configs keep working).

    Compilation happens on the first call, and again on a new input shape (batch size, resolution). The per-image
    ControlNet scales keep one hook (`scales.keep_scale_hooks`), and a sweep's adapters and weights take turns in
    one LoRA slot (`lora/hotswap.py`), so neither compiles again. `backend="eager"` traces without generating code
    (tests count its compiles).
    """
    keep_scale_hooks(pipe.controlnet)
    denoiser(pipe).compile(backend=backend)
    pipe.controlnet.compile(backend=backend)


def is_compiled(pipe) -> bool:
    """True if `compile_pipeline` was applied to this pipeline's UNet."""
    return getattr(denoiser(pipe), "_compiled_call_impl", None) is not None


def optimize_for_gpu(pipe, compile: bool = False) -> None:
    """Apply the settings above to a pipeline already on a CUDA device."""
    use_sdpa(pipe)
    use_channels_last(pipe)
    if denoiser(pipe).dtype == torch.float16:
        upcast_vae(pipe)
    if compile:
        compile_pipeline(pipe)


def denoising_step(pipe, size: int, images: int):
    """One ControlNet + UNet step on stand-in inputs for `images` images (2x rows: both CFG halves).

    Returns (step, latents): call `step()` to run it. Its cost depends on the shapes, not the
    values, so the memory probe and the benchmarks' FLOP count share it.
    """
    unet = denoiser(pipe)
    device, dtype, rows = pipe.device, unet.dtype, 2 * images
    latent = size // pipe.vae_scale_factor
    sample = torch.randn(rows, unet.config.in_channels, latent, latent, device=device, dtype=dtype)
    context = torch.zeros(rows, pipe.tokenizer.model_max_length, unet.config.cross_attention_dim,
                          device=device, dtype=dtype)
    control = torch.zeros(rows, 3, size, size, device=device, dtype=dtype)
    t = torch.full((rows,), 500, device=device)

    family = family_of(pipe)
    condition = {"encoder_hidden_states": context, **family.unet_conditioning(pipe, context, rows)}  # SDXL: its extras
    units = len(unit_controlnets(pipe.controlnet))  # several ControlNets take a list of controls and scales
    image, scale = (control, 1.0) if units == 1 else ([control] * units, [1.0] * units)

    @torch.no_grad()
    def step():
        residuals = family.control_residuals(pipe.controlnet, sample, t, image, condition, scale=scale)
        family.predict_noise(unet, sample, t, residuals, condition)

    return step, sample


@torch.no_grad()
def image_memory(pipe, size: int) -> int:
    """Peak GPU bytes one image adds: the larger of a denoising step (both CFG halves) and its VAE decode.

    Measured for 2 images and halved.
    """
    device = pipe.device
    step, latents = denoising_step(pipe, size, images=2)

    def decode():
        pipe.vae.decode(latents[:2] / pipe.vae.config.scaling_factor)

    peaks = []
    for work in (step, decode):
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        work()
        torch.cuda.synchronize(device)
        peaks.append(torch.cuda.max_memory_allocated(device) - before)
    return max(peaks) // 2


def auto_batch_size(pipe, size: int, limit: int = 64) -> int:
    """The most images per pipeline call that fit in free memory (at most `limit`, at least 1).

    On the CPU (and MPS) it is CPU_BATCH: memory is rarely the limit there.
    """
    if pipe.device.type != "cuda":
        return min(limit, CPU_BATCH)
    free, _ = torch.cuda.mem_get_info(pipe.device)
    per_image = max(1, image_memory(pipe, size))
    return max(1, min(limit, int(free * HEADROOM // per_image)))

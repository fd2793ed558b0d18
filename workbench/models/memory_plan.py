"""Memory plans: how a model and its ControlNets fit a GPU, chosen from the card's compute capability and total
memory. No torch here: the plan is arithmetic on published parameter counts and configs.

    memory_plan(sdxl, controlnets=2, resolution=1024, capability=(7, 5), memory_gb=8)
    -> fp16, offload "model", VAE tiling, batches of 1         (a T4-class 8 GB card)

- dtype: bf16 where the compute capability is 8.0 or more (Ampere and later), else fp16 (`devices.cuda_half_dtype`).
- weights: each part's parameters (the family's PARAMETERS_M) x 2 bytes. Where they and one image's activations do
  not fit, `offload="model"` keeps one model on the GPU at a time (diffusers' `enable_model_cpu_offload`); where
  not even the largest part fits, `"sequential"` streams layer by layer (much slower).
- activations: `memory.py`'s per-image estimate (feature maps of a denoising step; the VAE decoder's last block),
  measured on the CPU at small sizes and scaled: an estimate until a GPU measures it.
- VAE slicing decodes a batch one image at a time (the same images); tiling decodes one image in tiles (not
  exact: seams are blended), only where one image's decode does not fit.
The card's total memory is the basis, not its free memory, which changes with whatever is already loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from .memory import decoder_bytes, step_bytes

RESERVE_GB = 1.0   # the CUDA context, cuDNN workspaces and the allocator's slack
MAX_BATCH = 8      # a sweep batches at most this many images however large the card
GB = 2 ** 30


@dataclass(frozen=True)
class MemoryPlan:
    """How a pipeline is placed on one card, and the estimates the choice was made from (GB)."""
    dtype: str                 # "bf16", "fp16" ("fp32" on a CPU)
    offload: str | None        # None, "model" or "sequential"
    vae_slicing: bool
    vae_tiling: bool
    max_batch: int
    weights_gb: float          # every part's weights in the plan's dtype
    step_gb: float             # one image's denoising activations
    decode_gb: float           # one image's VAE decode

    def __str__(self) -> str:
        where = {None: "all on the GPU", "model": "one model at a time on the GPU (model offload)",
                 "sequential": "layer by layer (sequential offload, slow)"}[self.offload]
        return (f"{self.dtype}, {where}, batches of up to {self.max_batch}"
                + (", VAE slicing" if self.vae_slicing else "") + (", VAE tiling" if self.vae_tiling else "")
                + f" (weights {self.weights_gb:.1f} GB, per image {self.step_gb:.2f} GB + decode "
                  f"{self.decode_gb:.2f} GB: estimates)")


def half_dtype(capability: tuple[int, int]) -> str:
    """bf16 from compute capability 8.0 (native there), fp16 before (where bf16 is emulated and slow)."""
    return "bf16" if tuple(capability) >= (8, 0) else "fp16"


def activation_gb(family, resolution: int, value_bytes: int = 2) -> tuple[float, float]:
    """(denoising step, VAE decode) of one image at `resolution`, from the family's configs (`memory.py`'s model)."""
    unet, vae = family.load_config("unet"), family.load_config("vae")
    step = step_bytes(unet["block_out_channels"], (resolution // 8) ** 2, value_bytes)
    decode = decoder_bytes(vae["block_out_channels"][0], resolution ** 2, value_bytes)
    return step / GB, decode / GB


def memory_plan(family, controlnets: int, resolution: int, capability: tuple[int, int],
                memory_gb: float) -> MemoryPlan:
    """The plan for `family` with `controlnets` ControlNets at `resolution` px on a card of `memory_gb` GB."""
    parts = dict(family.PARAMETERS_M)
    net = parts.pop("controlnet")
    weights = (sum(parts.values()) + controlnets * net) * 2 * 1e6 / GB
    largest = max([*parts.values(), net]) * 2 * 1e6 / GB
    step, decode = activation_gb(family, resolution)
    usable = memory_gb - RESERVE_GB
    if weights + step <= usable:
        offload, resident = None, weights
    elif largest + step <= usable:
        offload, resident = "model", largest
    else:
        offload, resident = "sequential", 0.0
    left = max(usable - resident, 0.0)
    tiling = decode > left
    batch = max(1, min(MAX_BATCH, int(left // step) if step else MAX_BATCH))
    slicing = batch > 1 and batch * decode > left
    return MemoryPlan(half_dtype(capability), offload, slicing, tiling, batch, round(weights, 2), round(step, 3),
                      round(decode, 3))


def plan_table(families: dict, cards_gb=(8, 12, 24, 80), capability=(8, 6)) -> str:
    """A markdown table of the plan each card gets for each (label -> (family, ControlNets, resolution))."""
    lines = ["| model | " + " | ".join(f"{gb} GB" for gb in cards_gb) + " |", "|---" * (len(cards_gb) + 1) + "|"]
    for label, (family, nets, size) in families.items():
        cells = []
        for gb in cards_gb:
            plan = memory_plan(family, nets, size, capability, gb)
            cells.append({None: "on GPU", "model": "model offload", "sequential": "sequential offload"}[plan.offload]
                         + f", batch {plan.max_batch}" + (", slicing" if plan.vae_slicing else "")
                         + (", tiling" if plan.vae_tiling else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


"""Pick the device and dtype a pipeline runs on: cuda > mps > cpu, half precision on GPUs."""

from __future__ import annotations

import warnings

import torch

DTYPES = {
    "fp32": torch.float32, "float32": torch.float32,
    "fp16": torch.float16, "float16": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """Return `device` as a torch.device; "auto" means cuda, then mps, then cpu."""
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise ValueError(f"`device` must be a string such as 'auto', 'cpu' or 'cuda', got {device!r} ({type(device).__name__})")
    if device != "auto":
        try:
            return torch.device(device)
        except RuntimeError as err:
            raise ValueError(f"`device` {device!r} is not a torch device; use 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'") from err
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


BF16_CAPABILITY = (8, 0)  # Ampere (A100, RTX 30xx) and newer compute bf16 natively; Turing (T4) and Volta (V100) emulate it


def cuda_half_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU that computes it natively (compute capability 8.0+), else fp16.

    bf16 has fp32's range, so the SD1.5 VAE cannot overflow to NaN as in fp16; but on a T4 or V100
    (Colab's and Kaggle's free GPUs) it is emulated, and slow. `torch.cuda.is_bf16_supported()` says
    True there too, so the capability of the device asked for decides. In fp16, VAEs whose config
    says `force_upcast` (SDXL's) decode in fp32, by diffusers and by the engine's loop alike.
    """
    return torch.bfloat16 if torch.cuda.get_device_capability(device) >= BF16_CAPABILITY else torch.float16


def pick_dtype(dtype: str | torch.dtype = "auto", device: torch.device | None = None) -> torch.dtype:
    """Return the compute dtype: "auto" gives bf16 or fp16 on GPUs (`cuda_half_dtype`) and fp32 on the CPU.

    Half precision on the CPU is slow and poorly supported, so asking for it there
    warns and gives fp32.
    """
    device = device or pick_device("auto")
    if isinstance(dtype, str):
        if dtype == "auto":
            if device.type == "cuda":
                return cuda_half_dtype(device)
            return torch.float16 if device.type == "mps" else torch.float32
        if dtype not in DTYPES:
            raise ValueError(f"`dtype` must be 'auto' or one of {sorted(DTYPES)}, got {dtype!r}")
        dtype = DTYPES[dtype]
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"`dtype` must be a string or torch.dtype, got {dtype!r} ({type(dtype).__name__})")
    if device.type == "cpu" and dtype != torch.float32:
        warnings.warn(f"dtype {dtype} was asked for on the CPU, where half precision is slow and "
                      "unsupported by some kernels; using torch.float32 instead.", stacklevel=2)
        return torch.float32
    return dtype

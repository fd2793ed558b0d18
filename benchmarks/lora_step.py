"""One LoRA training step on SD1.5 and SDXL at their profile's size and settings: seconds and peak GPU memory.

    python benchmarks/lora_step.py [--append-results]   # on a GPU (make gpu-check runs it)
    python benchmarks/lora_step.py --smoke               # tiny and tiny-sdxl on the CPU, to check the code path

Speed and memory depend on the architecture, not the weights, so the models are built with
random weights from the published configs (`families/*.build_random`). Each step is what
`train_lora` does with the profile (`wb.profile(model, "cuda")`): a rank-8 adapter on the
attention projections, batch 1 at the profile's resolution, its mixed precision and gradient
checkpointing; the median of 3 steps after a warm-up one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from peft import LoraConfig

from workbench.families import sd15, sdxl
from workbench.lora import TARGET_MODULES
from workbench.profiles import profile

RESULTS = Path(__file__).parent / "RESULTS.md"


def step_timing(pipe, model: str, device: str, resolution: int, mixed_precision: str, checkpointing: bool) -> dict:
    """Seconds per LoRA step (median of 3 after one) and the peak memory of a step, for batch 1 at `resolution`."""
    from workbench.families import family_of
    unet = pipe.unet
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=8, lora_alpha=8, init_lora_weights="gaussian", target_modules=TARGET_MODULES))
    trainable = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in trainable:
        p.requires_grad_(True)
        p.data = p.data.float()
    if checkpointing:
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    side = resolution // pipe.vae_scale_factor
    latents = torch.randn(1, unet.config.in_channels, side, side, device=device, dtype=unet.dtype)
    context = torch.randn(1, pipe.tokenizer.model_max_length, unet.config.cross_attention_dim, device=device,
                          dtype=unet.dtype)
    extra = family_of(pipe).unet_conditioning(pipe, context, 1)
    precision = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision)
    scaler = torch.amp.GradScaler("cuda", enabled=mixed_precision == "fp16")

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=precision, enabled=precision is not None):
            out = unet(latents, torch.tensor([500], device=device), context, **extra).sample.float()
        scaler.scale(torch.nn.functional.mse_loss(out, latents.float())).backward()
        scaler.step(optimizer)
        scaler.update()

    step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return {"model": model, "resolution": resolution, "mixed_precision": mixed_precision,
            "gradient_checkpointing": checkpointing, "seconds_per_step": statistics.median(seconds), "peak_gib": peak}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU: the code path, not the numbers")
    parser.add_argument("--append-results", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    rows = []
    if args.smoke:
        for family, name in ((sd15, "tiny"), (sdxl, "tiny-sdxl")):
            rows.append(step_timing(family.build_tiny(), name, "cpu", 32, "no", True))
    else:
        if not torch.cuda.is_available():
            print("lora_step: no CUDA device; use --smoke on a CPU")
            return 0
        for family, name in ((sd15, "sd15"), (sdxl, "sdxl")):
            p = profile(name, "cuda")
            dtype = torch.bfloat16 if p.mixed_precision == "bf16" else torch.float32  # weights fp32 under fp16 autocast
            pipe = family.build_random(dtype=dtype, device="cuda") if family is sdxl else \
                family.build_random(dtype=dtype).to("cuda")
            rows.append(step_timing(pipe, name, "cuda", p.resolution, p.mixed_precision, p.gradient_checkpointing))
            del pipe
            torch.cuda.empty_cache()
    lines = ["| model | px | mixed precision | gradient checkpointing | s / step (batch 1, r8) | peak GiB |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['resolution']} | {r['mixed_precision']} | {r['gradient_checkpointing']} | "
              f"{r['seconds_per_step']:.3f} | {r['peak_gib']:.1f} |" for r in rows]
    print("\n".join(lines))
    if args.append_results and not args.smoke:
        device = torch.cuda.get_device_name()
        with open(RESULTS, "a") as f:
            f.write(f"\n### LoRA training step at the profiles' settings ({device})\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

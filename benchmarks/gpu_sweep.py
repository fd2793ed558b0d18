"""Sweep throughput on a GPU: naive loops, the workbench engine, and the pipeline's own ceiling.

    python benchmarks/gpu_sweep.py            # full: SD1.5 architecture, 512 px, fp16, 96 images (a GPU)
    python benchmarks/gpu_sweep.py --arch sdxl  # the same at 1024 px on the SDXL architecture (a GPU)
    python benchmarks/gpu_sweep.py --model toy  # the full sweep on the toy model (64 px): the CPU's figures
    python benchmarks/gpu_sweep.py --smoke    # the same code paths on the CPU with the toy model, tiny

Sweep: 4 conditioning scales x 3 LoRA weights x 2 rank adapters x 4 seeds, 20 steps.
  (a) naive:           one pipe(...) per image; per cell, unload and load_lora_weights again
  (b) naive resident:  one pipe(...) per image; adapters resident, set_adapters per cell
  (c) engine:          run_sweep (scales and seeds of a cell batched, adapters resident, batch size "auto")
  (d) ceiling:         the pipeline alone, one fixed configuration, at its best batch size
Weights are random when the real ones are not cached: speed depends on the architecture.
Prints JSON and a Markdown table; --append-results adds the table to RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import workbench as wb
from report import machine, publish
from workbench.lora import random_lora
from workbench.pipeline import trained_size
from workbench.speed import auto_batch_size, denoising_step
from workbench.control import control_for

CAPTION = "a yellow star on a blue background"
# Dense bf16/fp16 tensor-core peaks (datasheets), for the fraction-of-peak estimate.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn) -> float:
    synchronize()
    started = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - started


def step_flops(pipe, batch: int = 1) -> float:
    """FLOPs of one denoising step (ControlNet + UNet, both CFG halves) for `batch` images."""
    from torch.utils.flop_counter import FlopCounterMode
    step, _ = denoising_step(pipe, trained_size(pipe), batch)
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="toy model, CPU, 2 steps: checks the code paths only")
    parser.add_argument("--model", default=None, help="default: sd15 if cached, else SD1.5 with random weights")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet and ControlNet; "
                        "the warm-up (first call) is reported on its own")
    parser.add_argument("--arch", choices=["sd15", "sdxl"], default="sd15",
                        help="sdxl: SDXL base + Canny ControlNet at 1024 px (random weights unless cached)")
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gpu-sweep-"))
    if args.smoke:  # the code paths only: the toy model, or the tiny SDXL for --arch sdxl
        model = "tiny-sdxl" if args.arch == "sdxl" else "toy"
        pipe, steps = wb.load_pipeline(model, device="cpu"), 2
        scales, weights, seeds, ceiling_batches = [0.5, 1.0], [0.0, 1.0], [0], [1, 2]
    else:
        device, dtype = wb.pick_device("auto"), wb.pick_dtype("fp16", wb.pick_device("auto"))
        try:
            pipe = wb.load_pipeline(args.model or args.arch, device=str(device), dtype=dtype, compile=args.compile)
            model = args.model or args.arch
        except wb.ModelNotAvailableError:
            from workbench.speed import optimize_for_gpu
            if args.arch == "sdxl":
                from workbench.families.sdxl import build_random
                pipe, model = build_random(dtype=dtype, device=str(device)), "SDXL architecture, random weights"
            else:
                from workbench.families.sd15 import build_random as build_sd15_random
                pipe, model = build_sd15_random(dtype=dtype).to(device), "SD1.5 architecture, random weights"
            optimize_for_gpu(pipe, compile=args.compile)  # what load_pipeline does on CUDA
        steps, scales, weights, seeds, ceiling_batches = 20, [0.25, 0.5, 0.75, 1.0], [0.0, 0.5, 1.0], [0, 1, 2, 3], [1, 4, 8, 16]
    size = trained_size(pipe)
    adapters = {f"rank{r}": random_lora(pipe, r, work / f"rank{r}.safetensors") for r in (4, 16)}
    control = control_for(f"toy:{CAPTION}", size, 100, 200)
    n_images = len(scales) * len(weights) * len(adapters) * len(seeds)

    def call(batch_seeds, scale):
        return pipe([CAPTION] * len(batch_seeds), image=control, num_inference_steps=steps, guidance_scale=5.0,
                    controlnet_conditioning_scale=scale, output_type="np",
                    generator=[torch.Generator().manual_seed(s) for s in batch_seeds]).images

    def naive(resident: bool):
        if resident:
            for name, path in adapters.items():
                pipe.load_lora_weights(str(path), adapter_name=name)
        for name, path in adapters.items():
            for weight in weights:
                for scale in scales:
                    if not resident:
                        pipe.unload_lora_weights()
                        pipe.load_lora_weights(str(path), adapter_name=name)
                    pipe.set_adapters([name], adapter_weights=[weight])
                    for seed in seeds:
                        call([seed], scale)
        pipe.unload_lora_weights()

    results = {"model": model, "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
               "dtype": str(pipe.unet.dtype), "size": size, "steps": steps, "images": n_images,
               "compiled": args.compile}
    # Warm-up: kernels, allocator, cuDNN autotuning (and compilation) stay out of the timings.
    results["warmup_s"] = timed(lambda: call([0], 1.0))
    results["auto_batch"] = auto_batch_size(pipe, size)
    results["naive_s"] = timed(lambda: naive(resident=False))
    results["naive_resident_s"] = timed(lambda: naive(resident=True))
    spec = wb.SweepSpec(model=model, prompt=[CAPTION], control_image=f"toy:{CAPTION}", conditioning_scale=scales,
                        lora_weight=weights, adapter=list(adapters), adapters={k: str(v) for k, v in adapters.items()},
                        seed=seeds, steps=[steps], guidance=[5.0], metrics=False)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    results["engine_s"] = timed(lambda: wb.run_sweep(pipe, spec, work / "engine", log=lambda m: None,
                                                     max_batch=results["auto_batch"]))
    if torch.cuda.is_available():
        results["engine_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    pipe.unload_lora_weights()
    ceiling, peak_gib = {}, {}
    for b in ceiling_batches:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        ceiling[b] = b / timed(lambda b=b: call(list(range(b)), 1.0))
        if torch.cuda.is_available():
            peak_gib[b] = torch.cuda.max_memory_allocated() / 2**30
    if peak_gib:
        results["peak_gib_by_batch"] = peak_gib
    results["ceiling_images_per_s"], results["ceiling_batch"] = max(ceiling.values()), max(ceiling, key=ceiling.get)
    for key in ("naive", "naive_resident", "engine"):
        results[f"{key}_images_per_s"] = n_images / results[f"{key}_s"]
    results["engine_vs_naive"] = results["engine_images_per_s"] / results["naive_images_per_s"]
    results["engine_vs_ceiling"] = results["engine_images_per_s"] / results["ceiling_images_per_s"]
    flops_per_image = step_flops(pipe) * steps
    results["tflops_per_image"] = flops_per_image / 1e12
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in results["device"]), None)
    if peak:
        results["fraction_of_peak"] = results["engine_images_per_s"] * flops_per_image / (peak * 1e12)
    print(json.dumps(results, indent=2))
    lines = [f"### gpu_sweep{' (smoke, CPU: not a speed figure)' if args.smoke else ''}: {model}, {size} px, "
             f"{steps} steps, {results['dtype']}, {n_images} images, device {results['device']}", "", f"Machine: {machine()}.", "",
             "| path | images/s |", "|---|---|",
             f"| (a) naive, reload LoRA per cell | {results['naive_images_per_s']:.2f} |",
             f"| (b) naive, adapters resident | {results['naive_resident_images_per_s']:.2f} |",
             f"| (c) workbench engine | {results['engine_images_per_s']:.2f} |",
             f"| (d) ceiling, batch {results['ceiling_batch']} | {results['ceiling_images_per_s']:.2f} |", "",
             f"c/a = **{results['engine_vs_naive']:.2f}x** (target >= 3x), c/d = **{results['engine_vs_ceiling']:.2f}** "
             f"(target >= 0.8); {results['tflops_per_image'] * 1000:,.1f} GFLOP per image (UNet + ControlNet, CFG)."
             + (f" Peak memory {results['engine_peak_gib']:.1f} GiB (engine, batch {results['auto_batch']});"
                f" at batch 8: {peak_gib.get(8, float('nan')):.1f} GiB (target < 10)." if "engine_peak_gib" in results else "")
             + (f" {results['fraction_of_peak']:.0%} of the dense fp16 peak." if "fraction_of_peak" in results else "")
             + f" Warm-up call {results['warmup_s']:.1f} s{' (torch.compile)' if args.compile else ''};"
             f" auto batch size {results['auto_batch']}.", ""]
    publish(lines, args.append_results and not args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())

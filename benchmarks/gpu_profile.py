"""Where one sweep batch's time goes: text encoder, ControlNet, UNet, VAE decode, the rest, and the writer.

    python benchmarks/gpu_profile.py            # SD1.5 architecture, 512 px, fp16, batch 8, 20 steps (a GPU)
    python benchmarks/gpu_profile.py --toy      # the toy model (64 px, fp32 on the CPU), batch 8, 20 steps
    python benchmarks/gpu_profile.py --smoke    # the toy model on the CPU, 2 steps: checks the code path

Two views of the same batch:
  1. wall time per component: forward hooks synchronise the device around each module call, so
     every second is attributed (the synchronisation itself costs a little);
  2. torch.profiler without hooks: how busy the device was (kernel time / wall time); the
     remainder is CPU overhead the GPU waited on. The top kernels are listed.
The writer's share (PNG encoding, metrics, the row) is timed on the images the batch made;
in a sweep it runs on the writer thread, overlapped with the next batch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import workbench as wb
from report import machine, publish
from workbench.pipeline import trained_size
from workbench.results import ResultsLog
from workbench.spec import expand
from workbench.control import control_for
from workbench.sweep import write_batch

CAPTION = "a yellow star on a blue background"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_components(pipe, modules: dict) -> tuple[dict, callable]:
    """Add hooks that sum each module's wall time into the returned dict; returns (totals, remove)."""
    totals, handles, started = defaultdict(float), [], {}
    for name, module in modules.items():
        def before(module, args, name=name):
            synchronize(pipe.device)
            started[name] = time.perf_counter()

        def after(module, args, output, name=name):
            synchronize(pipe.device)
            totals[name] += time.perf_counter() - started[name]

        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    return totals, lambda: [h.remove() for h in handles]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="toy model, CPU, 2 steps, batch 2")
    parser.add_argument("--toy", action="store_true", help="the toy model instead of the SD1.5 architecture")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        pipe, model, steps, batch = wb.load_pipeline("toy", device="cpu"), "toy", 2, 2
    elif args.toy:
        pipe, model, steps, batch = wb.load_pipeline("toy"), "toy", 20, args.batch
    else:
        device = wb.pick_device("auto")
        dtype = wb.pick_dtype("fp16", device)
        from workbench.families.sd15 import build_random as build_sd15_random
        from workbench.speed import optimize_for_gpu
        pipe, model = build_sd15_random(dtype=dtype).to(device), "SD1.5 architecture, random weights"
        optimize_for_gpu(pipe)
        steps, batch = 20, args.batch
    size = trained_size(pipe)
    control = control_for(f"toy:{CAPTION}", size, 100, 200)

    def call():
        return pipe([CAPTION] * batch, image=control, num_inference_steps=steps, guidance_scale=5.0,
                    output_type="np", generator=[torch.Generator().manual_seed(s) for s in range(batch)]).images

    call()  # warm-up
    modules = {"text encoder": pipe.text_encoder, "ControlNet": pipe.controlnet, "UNet": pipe.unet,
               "VAE decode": pipe.vae.decoder}
    totals, remove = time_components(pipe, modules)
    synchronize(pipe.device)
    started = time.perf_counter()
    images = call()
    synchronize(pipe.device)
    wall = time.perf_counter() - started
    remove()

    # The writer's work on these images, as the sweep does it (on its thread, overlapped there).
    work = Path(tempfile.mkdtemp(prefix="gpu-profile-"))
    spec = wb.SweepSpec(model=model, prompt=[CAPTION], control_image=f"toy:{CAPTION}", seed=list(range(batch)),
                        steps=[steps], guidance=[5.0])
    trials = expand(spec, "profile")
    (work / "images").mkdir()
    with ResultsLog(work / "results.jsonl") as log:
        started = time.perf_counter()
        write_batch(log, work, spec, trials, list(images), [control], "", "", 0.0, {})
        writer_s = time.perf_counter() - started

    activities = [torch.profiler.ProfilerActivity.CPU]
    if pipe.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    synchronize(pipe.device)
    with torch.profiler.profile(activities=activities) as profiler:
        started = time.perf_counter()
        call()
        synchronize(pipe.device)
        profiled_wall = time.perf_counter() - started
    events = profiler.key_averages()
    device_s = sum(e.self_device_time_total for e in events) / 1e6 if pipe.device.type == "cuda" else None
    top = sorted(events, key=lambda e: e.self_device_time_total if device_s else e.self_cpu_time_total, reverse=True)[:8]

    parts = {name: totals[name] for name in modules}
    parts["scheduler, CPU overhead, postprocess"] = wall - sum(parts.values())
    result = {"model": model, "device": torch.cuda.get_device_name() if pipe.device.type == "cuda" else "cpu",
              "size": size, "steps": steps, "batch": batch, "wall_s": wall, "parts_s": parts, "writer_s": writer_s,
              "device_busy": device_s / profiled_wall if device_s else None,
              "top_ops": [(e.key, (e.self_device_time_total if device_s else e.self_cpu_time_total) / 1e6) for e in top]}
    print(json.dumps(result, indent=2))
    lines = [f"### gpu_profile{' (smoke, CPU: not a speed figure)' if args.smoke else ''}: {model}, {size} px, "
             f"{steps} steps, batch {batch}, device {result['device']}", "", f"Machine: {machine()}.", "",
             "| part | seconds | share |", "|---|---|---|"]
    lines += [f"| {name} | {seconds:.3f} | {seconds / wall:.0%} |" for name, seconds in parts.items()]
    lines += [f"| PNG + metrics + row (writer thread, overlapped) | {writer_s:.3f} | {writer_s / wall:.0%} of the batch |",
              ""]
    if device_s:
        lines += [f"GPU busy {result['device_busy']:.0%} of the un-hooked batch's wall time.", ""]
    lines += ["Top ops: " + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in result["top_ops"][:5]), ""]
    publish(lines, args.append_results and not args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())

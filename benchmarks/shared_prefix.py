"""Shared prefixes against separate calls: the same sweeps twice, side by side in one run.

    python benchmarks/shared_prefix.py [--models toy sd15-random] [--seeds 2] [--steps 20] [--device cpu]
                                       [--append-results]

Two sweeps, each drawn apart (`share_prefix=False`) and with shared prefixes:
  end        `control_guidance_end` 0.25, 0.5, 0.75, 1.0 (the issue's): drawn apart it costs 80 UNet
             sample-steps a seed at 20 steps; with `share_prefix` the engine's own loop
             (`workbench/engine/denoise.py`) computes the 50 distinct ones;
  schedules  `control_schedule` constant, linear, cosine, step@0.5, ramp@0.5: constant and step@0.5
             agree on the first half, the three that start at full scale on the first step, and
             ramp@0.5 (off at first) on nothing.
The table gives per model and sweep the sample-steps (one UNet call on one latent row, counted
by a hook on the UNet) and seconds of both runs, their ratios, and the largest pixel difference
between the two runs' images (float rounding only). Models: the toy (64 px) and SD1.5's
published architecture with random weights (`families.sd15.build_random`, the 860M-parameter
UNet, at --sd15-size px: random weights draw noise, but the work per step is the real model's).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from PIL import Image

import workbench as wb
from report import machine, publish

SWEEPS = {"end": {"control_guidance_end": [0.25, 0.5, 0.75, 1.0]},
          "schedules": {"control_schedule": ["constant", "linear", "cosine", "step@0.5", "ramp@0.5"]}}
CAPTION = "a red circle on a blue background"


def load(model: str, device: str):
    """A pipeline and the model name its specs use."""
    if model == "sd15-random":
        from workbench.families.sd15 import build_random
        return build_random(seed=0, device=device), "sd15"
    return wb.load_pipeline(model, device=device), model


def timed_sweep(pipe, model: str, axis: dict, folder: Path, share: bool, seeds: int, steps: int,
                size: int | None) -> tuple:
    """(seconds, UNet sample-steps, table) of one run of a sweep into a fresh folder, all of it one batch."""
    spec = {"model": model, "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": steps,
            "seed": list(range(seeds)), **axis, **({"resolution": size} if size else {})}
    trials = seeds * len(next(iter(axis.values())))
    rows = [0]
    counter = pipe.unet.register_forward_pre_hook(lambda m, inputs: rows.__setitem__(0, rows[0] + inputs[0].shape[0] // 2))
    started = time.perf_counter()
    try:
        table = wb.run_sweep(pipe, spec, folder, share_prefix=share, max_batch=trials, log=lambda m: None)
    finally:
        counter.remove()
    return time.perf_counter() - started, rows[0], table.sort_values("trial_id").reset_index(drop=True)


def largest_difference(folder_a: Path, a: list, folder_b: Path, b: list) -> float:
    """The largest difference in grey levels between two runs' images."""
    return max(float(np.abs(np.asarray(Image.open(folder_a / x), np.int16)
                            - np.asarray(Image.open(folder_b / y), np.int16)).max()) for x, y in zip(a, b))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["toy", "sd15-random"])
    parser.add_argument("--sweeps", nargs="+", default=list(SWEEPS), choices=list(SWEEPS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sd15-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()
    lines = [f"### shared_prefix: {', '.join(args.sweeps)} sweeps x {args.seeds} seeds, {args.steps} steps, "
             f"on {args.device}: separately (`share_prefix=False`) and shared, each sweep one batch", "",
             f"Machine: {machine()}. Both runs side by side in this run; sample-steps count one UNet call per "
             "latent row per step.", "",
             "| model | px | sweep | separate: sample-steps, s | shared: sample-steps, s | sample-steps ratio | "
             "time ratio | largest pixel difference |", "|---|---|---|---|---|---|---|---|"]
    for model in args.models:
        pipe, name = load(model, args.device)
        size = args.sd15_size if model == "sd15-random" else None
        px = size or wb.pipeline.trained_size(pipe)
        with tempfile.TemporaryDirectory() as work:
            work = Path(work)
            timed_sweep(pipe, name, SWEEPS["end"], work / "warm", True, 1, 2, size)  # first calls pay one-time costs
            for sweep in args.sweeps:
                alone_s, alone_steps, alone = timed_sweep(pipe, name, SWEEPS[sweep], work / f"{sweep}-alone", False,
                                                          args.seeds, args.steps, size)
                shared_s, shared_steps, shared = timed_sweep(pipe, name, SWEEPS[sweep], work / f"{sweep}-shared", True,
                                                             args.seeds, args.steps, size)
                difference = largest_difference(work / f"{sweep}-alone", list(alone.image_path),
                                                work / f"{sweep}-shared", list(shared.image_path))
                lines.append(f"| {model} | {px} | {sweep} | {alone_steps}, {alone_s:.1f} | {shared_steps}, "
                             f"{shared_s:.1f} | {shared_steps / alone_steps:.2f} | {shared_s / alone_s:.2f} | "
                             f"{difference:.0f}/255 |")
        del pipe
    lines.append("")
    publish(lines, args.append_results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

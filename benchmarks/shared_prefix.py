"""Shared prefixes against separate calls: the same sweep twice, side by side in one run.

    python benchmarks/shared_prefix.py [--models toy sd15-random] [--seeds 2] [--steps 20] [--append-results]

The sweep is the issue's: `control_guidance_end` 0.25, 0.5, 0.75, 1.0 at 20 steps, for each seed.
Drawn apart it costs 80 UNet sample-steps per seed; with `share_prefix` the engine's own loop
(`workbench/denoise.py`) computes the 50 distinct ones. The table gives, per model, the
sample-steps and the seconds of both runs and their ratios, and the largest pixel difference
between the two runs' images (float rounding only). Models: the toy (64 px) and SD1.5's
published architecture with random weights (`families.sd15.build_random`, 860M-parameter UNet,
at --sd15-size px; random weights draw noise, but the work per step is the real model's).
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

ENDS = [0.25, 0.5, 0.75, 1.0]
CAPTION = "a red circle on a blue background"


def load(model: str):
    """A pipeline and the model name its specs use."""
    if model == "sd15-random":
        from workbench.families.sd15 import build_random
        return build_random(seed=0), "sd15"
    return wb.load_pipeline(model, device="cpu"), model


def timed_sweep(pipe, model: str, folder: Path, share: bool, seeds: int, steps: int, size: int | None) -> tuple:
    """(seconds, UNet sample-steps, table) of one run of the end sweep into a fresh folder."""
    spec = {"model": model, "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": steps,
            "seed": list(range(seeds)), "control_guidance_end": ENDS}
    if size:
        spec["resolution"] = size
    rows = [0]
    counter = pipe.unet.register_forward_pre_hook(lambda module, inputs: rows.__setitem__(0, rows[0] + inputs[0].shape[0] // 2))
    started = time.perf_counter()
    try:
        table = wb.run_sweep(pipe, spec, folder, share_prefix=share, max_batch=len(ENDS) * seeds, log=lambda m: None)
    finally:
        counter.remove()
    return time.perf_counter() - started, rows[0], table.sort_values("trial_id").reset_index(drop=True)


def largest_difference(folder_a: Path, a: list, folder_b: Path, b: list) -> float:
    return max(float(np.abs(np.asarray(Image.open(folder_a / x), np.int16) - np.asarray(Image.open(folder_b / y), np.int16)).max())
               for x, y in zip(a, b))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["toy", "sd15-random"])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sd15-size", type=int, default=256)
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()
    lines = [f"### shared_prefix: control_guidance_end {ENDS} x {args.seeds} seeds, {args.steps} steps: separately, "
             f"one pipeline call per end value; shared, one batch of all {len(ENDS) * args.seeds} trials", "",
             f"Machine: {machine()}. Both runs side by side in this run; sample-steps count one UNet call per "
             "latent row per step.", "",
             "| model | px | separate: sample-steps, s | shared: sample-steps, s | sample-steps ratio | time ratio | "
             "largest pixel difference |", "|---|---|---|---|---|---|---|"]
    for model in args.models:
        pipe, name = load(model)
        size = args.sd15_size if model == "sd15-random" else None
        with tempfile.TemporaryDirectory() as work:
            work = Path(work)
            timed_sweep(pipe, name, work / "warm", True, 1, 2, size)  # first calls pay one-time costs
            alone_s, unshared_steps, alone = timed_sweep(pipe, name, work / "alone", False, args.seeds, args.steps, size)
            shared_s, shared_steps, shared = timed_sweep(pipe, name, work / "shared", True, args.seeds, args.steps,
                                                         size)
            difference = largest_difference(work / "alone", list(alone.image_path), work / "shared",
                                            list(shared.image_path))
        px = size or wb.pipeline.trained_size(pipe)
        lines.append(f"| {model} | {px} | {unshared_steps}, {alone_s:.1f} | {shared_steps}, {shared_s:.1f} | "
                     f"{shared_steps / unshared_steps:.2f} | {shared_s / alone_s:.2f} | {difference:.0f}/255 |")
        del pipe
    lines.append("")
    publish(lines, args.append_results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Two adapters at once, and fused: what a blend of two training seeds does, and what fusing saves.

    python benchmarks/blend_fuse.py [--rank 4] [--scenes 12] [--unconditional 128] [--append-results]

Uses the rank study's cached adapters (`python benchmarks/rank_study.py --steps 1200 --prior 256
--unconditional 128 --scenes 12`, trained if missing): the two rank-r adapters of training seeds 0 and 1. It draws each held-out
scene with each alone at weight 1, both at 0.5, and both at 1, and scores style and colours.
Then it times one blend with the low-rank branch and fused into the weights (`fuse_lora`),
side by side in this run, and checks that both give the same images.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import workbench as wb
from report import machine, publish
from workbench.blend import blend_table
from workbench.control import control_for
from workbench.lora import training_pairs
from workbench.lora.files import dataset_hash
from workbench.ranks import cached_adapter, held_out_captions
from workbench.toy.data import style_dataset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--unconditional", type=int, default=128, help="empty-caption scenes in the recipe")
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()
    pipe = wb.load_pipeline("toy", device="cpu")
    images, captions = training_pairs(style_dataset("outlined", prior=256, unconditional=args.unconditional))
    names = []
    for seed in (0, 1):
        name = f"r{args.rank}-s{seed}"
        path = cached_adapter(pipe, (images, captions), dataset_hash(images, captions), args.rank, float(args.rank),
                              False, 1200, 1e-3, seed, Path("runs/lora-cache"), name)
        wb.load_lora(pipe, path, adapter_name=name, replace=True)
        names.append(name)
    a, b = names
    blends = [{a: 1.0, b: 0.0}, {a: 0.0, b: 1.0}, {a: 0.5, b: 0.5}, {a: 1.0, b: 1.0}]
    scenes = held_out_captions(args.scenes, "outlined")
    sources = ["toy:" + c.replace(" in outlined style", "") for c in scenes]
    table, _ = blend_table(pipe, blends, scenes, sources, steps=20)
    scores = table.groupby("blend", sort=False)[["style_strength", "colour_fidelity"]].mean()
    caption = "a red circle on a blue background in outlined style"
    control = control_for("toy:a red circle on a blue background", 64)
    timing = wb.time_fusing(pipe, {a: 0.5, b: 0.5}, caption, control, seeds=[0, 1], steps=20, repeats=5)
    lines = [f"### blend_fuse: two rank-{args.rank} outlined adapters (training seeds 0 and 1; 1200 steps, 256 prior "
             f"and {args.unconditional} empty-caption scenes), {args.scenes} held-out scenes", "", f"Machine: {machine()}.", "",
             "| blend | style strength | colour fidelity |", "|---|---|---|"]
    lines += [f"| {blend} | {row.style_strength:.3f} | {row.colour_fidelity:.0%} |" for blend, row in scores.iterrows()]
    lines += ["", f"Fusing the 0.5 + 0.5 blend (toy, 20 steps, 2 images a call, median of 5 calls): "
              f"{timing.unfused_seconds:.3f} s per image with the LoRA branch, {timing.fused_seconds:.3f} s fused, "
              f"**{timing.speedup:.2f}x**; fuse {timing.fuse_seconds * 1000:.0f} ms, unfuse "
              f"{timing.unfuse_seconds * 1000:.0f} ms. Largest pixel difference, fused against unfused: "
              f"{timing.fused_difference:.0f}/255; the base before the fuse against after the unfuse: "
              f"{timing.restored_difference:.0f}/255.", ""]
    publish(lines, args.append_results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

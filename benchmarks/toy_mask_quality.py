"""The toy-mask ControlNet's measured section of the model card: shape IoU by scale, on held-out scenes.

    python benchmarks/toy_mask_quality.py [--n 40] [--run runs/toy-mask] [--write-card]

The control is each scene's silhouette (white on black); the score is the IoU of the
generated shape (pixels nearer the prompt's shape colour than its background colour) with
it, and of the generic `foreground_mask` the sweep's `<unit>.mask_iou` column uses. Training
time is read from the run's losses.csv. --write-card puts the Markdown between the card's
mask markers.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import workbench as wb
from report import machine
from workbench.pipeline import TOY_DIR
from workbench.toy.evaluate import measure_mask_control
from workbench.toy.world import sample_scenes

HELD_OUT_SEED = 987655  # training used seeds 100 (mask) and 0-5 (the base model)


def training_line(run: Path) -> str:
    """The mask ControlNet's training steps and time, from its losses.csv (if the run folder is here)."""
    path = run / "losses.csv"
    if not path.exists():
        return ""
    rows = [r for r in csv.DictReader(open(path)) if r["stage"] == "mask_controlnet"]
    return (f"Trained with `python -m workbench.toy.train_mask` ({int(rows[-1]['step']) + 1:,} steps, batch 32, "
            f"lr 5e-4, captions dropped 30%) in {float(rows[-1]['seconds']) / 60:.1f} min on 2 CPU cores "
            "(the stage's own clock), against the shipped base model, on 8,000 scenes it never saw.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--run", default="runs/toy-mask")
    parser.add_argument("--write-card", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    pipe = wb.load_pipeline("toy", controlnet="toy-mask", device="cpu")
    table = measure_mask_control(pipe, sample_scenes(args.n, seed=HELD_OUT_SEED))
    by_scale = table.groupby("scale")[["shape_iou", "foreground_iou"]].mean()
    lines = [f"Measured by `python benchmarks/toy_mask_quality.py --write-card` on {machine()}; "
             f"20 DDIM steps, guidance 5.0, {args.n} held-out scenes, seed 0.", "",
             "| mask scale | shape IoU | foreground IoU (the sweep's `mask_iou`) |", "|---|---|---|"]
    lines += [f"| {scale} | {row.shape_iou:.3f} | {row.foreground_iou:.3f} |" for scale, row in by_scale.iterrows()]
    gain = by_scale.shape_iou.get(1.0) - by_scale.shape_iou.get(0.0)
    lines += ["", f"IoU(1.0) - IoU(0.0) = {gain:+.3f}.", "", training_line(Path(args.run))]
    markdown = "\n".join(lines).rstrip()
    print(markdown)
    if args.write_card:
        card = TOY_DIR / "README.md"
        text = card.read_text()
        block = f"<!-- mask:start -->\n{markdown}\n<!-- mask:end -->"
        card.write_text(re.sub(r"<!-- mask:start -->.*<!-- mask:end -->", block, text, flags=re.S))
        print(f"updated {card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

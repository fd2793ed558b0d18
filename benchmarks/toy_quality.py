"""Quality bars of the embedded toy model: prompt fidelity, ControlNet controllability, speed.

    python benchmarks/toy_quality.py [--model toy] [--n-fidelity 200] [--n-control 40] [--write-card]

Scenes come from a seed the training data never used (held out). Prints Markdown and JSON;
--write-card puts the Markdown into the model card between its quality markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import workbench as wb
from workbench.pipeline import TOY_DIR
from workbench.toy.evaluate import count_parameters, measure_control, measure_fidelity, measure_speed
from workbench.toy.world import sample_scenes

HELD_OUT_SEED = 987654  # training used seeds 0-5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="toy")
    parser.add_argument("--n-fidelity", type=int, default=200)
    parser.add_argument("--n-control", type=int, default=40)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--write-card", action="store_true", help=f"update {TOY_DIR / 'README.md'}")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))

    pipe = wb.load_pipeline(args.model, device="cpu")
    started = time.time()
    fidelity = measure_fidelity(pipe, sample_scenes(args.n_fidelity, seed=HELD_OUT_SEED),
                                steps=args.steps, guidance=args.guidance)
    control = measure_control(pipe, sample_scenes(args.n_control, seed=HELD_OUT_SEED + 1),
                              steps=args.steps, guidance=args.guidance)
    seconds_batch8 = measure_speed(pipe, batch=8, steps=args.steps, guidance=args.guidance)
    by_scale = control.groupby("scale")[["precision", "recall", "f1", "shape_iou"]].mean()
    results = {
        "model": args.model, "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "steps": args.steps, "guidance": args.guidance,
        "fidelity_n": len(fidelity), "shape_colour_acc": fidelity.shape_ok.mean(),
        "background_colour_acc": fidelity.background_ok.mean(), "both_colours_acc": fidelity.both_ok.mean(),
        "f1_by_scale": by_scale.f1.round(3).to_dict(), "iou_at_1": float(by_scale.shape_iou.get(1.0, float("nan"))),
        "f1_gain_1_vs_0": float(by_scale.f1.get(1.0) - by_scale.f1.get(0.0)),
        "seconds_64px_20steps_batch8": seconds_batch8, "benchmark_minutes": (time.time() - started) / 60,
        "parameters": {name: count_parameters(getattr(pipe, name)) for name in ("unet", "controlnet", "vae", "text_encoder")},
    }
    markdown = to_markdown(results, by_scale, fidelity)
    print(markdown)
    print(json.dumps(results, indent=2, default=float))
    if args.write_card:
        card = TOY_DIR / "README.md"
        text = card.read_text()
        block = f"<!-- quality:start -->\n{markdown}\n<!-- quality:end -->"
        card.write_text(re.sub(r"<!-- quality:start -->.*<!-- quality:end -->", block, text, flags=re.S))
        from card_facts import update_readme
        update_readme()  # the README quotes the card's figures, never its own copies
        print(f"updated {card} and the README's sentence of its figures")
    return 0


def to_markdown(results: dict, by_scale, fidelity) -> str:
    """The figures as the model card shows them."""
    lines = [
        f"Measured by `python benchmarks/toy_quality.py --write-card` on {results['machine']}; "
        f"{results['steps']} DDIM steps, guidance {results['guidance']}, held-out scenes.",
        "",
        f"**Prompt fidelity** ({results['fidelity_n']} images, controlled at scale 1.0, nearest-palette colour of "
        "the shape's interior and of the background):",
        f"shape colour {results['shape_colour_acc']:.1%}, background colour {results['background_colour_acc']:.1%}, "
        f"both {results['both_colours_acc']:.1%} (bar: >= 80%).",
        "",
        "**ControlNet controllability** (Canny re-extracted with the same thresholds, 1-px tolerance):",
        "",
        "| scale | precision | recall | edge F1 | shape IoU |",
        "|---|---|---|---|---|",
    ]
    for scale, row in by_scale.iterrows():
        lines.append(f"| {scale} | {row.precision:.3f} | {row.recall:.3f} | {row.f1:.3f} | {row.shape_iou:.3f} |")
    lines += [
        "",
        f"F1(1.0) - F1(0.0) = {results['f1_gain_1_vs_0']:+.3f} (bar: >= +0.2). Shape IoU at scale 1.0: "
        f"{results['iou_at_1']:.3f}.",
        "",
        f"**Speed**: 64 px, 20 steps, batch 8, with CFG: {results['seconds_64px_20steps_batch8']:.2f} s (bar: < 5 s).",
        "",
        "Worst prompts (colour misses): " + (", ".join(
            f"{row.caption!r} -> {row.shape_colour} on {row.background_colour}"
            for row in fidelity[~fidelity.both_ok].head(5).itertuples()) or "none"),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

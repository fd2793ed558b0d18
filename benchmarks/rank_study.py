"""The toy's rank study: which rank does the outlined style need? (issue 18)

    python benchmarks/rank_study.py [--ranks 1 2 4 8 16] [--seeds 0 1 2] [--steps 300] [--alpha r]
                                    [--styled 256] [--prior 0] [--unconditional 0] [--scenes 6]
                                    [--figure docs/02_rank_study.png] [--append-results]

Trains one adapter per (rank, training seed) on `--styled` outlined-style toy images (cached
under runs/lora-cache), sweeps each on `--scenes` held-out scenes at weights 0 / 0.5 / 1 / 1.25,
and prints style strength and colour fidelity per rank at weight 1: the mean over training seeds, and the
lowest and highest seed's. `--prior N` adds N plain scenes with their own captions to the
training data (prior preservation, as DreamBooth does); `--unconditional N` adds N plain scenes
with empty captions, for the prompt-free half of classifier-free guidance.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import workbench as wb
from report import machine, publish
from workbench.curves import rank_curve
from workbench.toy.data import style_dataset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--alpha", default="r", help="'r', 'fixed', 'rslora' or a number")
    parser.add_argument("--style", default="outlined")
    parser.add_argument("--styled", type=int, default=256, help="styled scenes in the training data")
    parser.add_argument("--prior", type=int, default=0, help="plain scenes mixed into the training data")
    parser.add_argument("--unconditional", type=int, default=0, help="plain scenes with empty captions")
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--cache-dir", default="runs/lora-cache", help="where adapters are trained or found")
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()
    alpha = float(args.alpha) if args.alpha.replace(".", "", 1).isdigit() else args.alpha
    pipe = wb.load_pipeline("toy", device="cpu")
    started = time.perf_counter()
    styled = "" if args.styled == 256 else f"-styled{args.styled}"
    tag = (f"{args.style}-{args.steps}-{args.alpha}{styled}-prior{args.prior}-empty{args.unconditional}"
           f"-scenes{args.scenes}")
    run_dir = f"runs/rank-study/{tag}" + ("" if args.cache_dir == "runs/lora-cache" else "-other-cache")
    data = style_dataset(args.style, n=args.styled, prior=args.prior, unconditional=args.unconditional)
    study = wb.rank_study(pipe, data, ranks=args.ranks, seeds=args.seeds,
                          steps=args.steps, lr=args.lr, alpha=alpha, style=args.style, scenes=args.scenes,
                          run_dir=run_dir, cache_dir=args.cache_dir, reuse_shipped=False,
                          log=lambda m: print(m, flush=True))
    seconds = time.perf_counter() - started
    if args.figure:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        study.figure.savefig(args.figure, dpi=110, bbox_inches="tight")
    style, colour = rank_curve(study.table, "style_strength"), rank_curve(study.table, "colour_fidelity")
    iou = rank_curve(study.table, "shape_iou")
    base = study.table[study.table.lora_weight == 0]
    cut = study.ladder_table.groupby("lora_rank").style_strength.mean()
    lines = [f"### rank_study: toy, {args.style}, {args.steps} steps, lr {args.lr}, alpha policy {args.alpha}, "
             f"{args.styled} styled + {args.prior} prior + {args.unconditional} empty-caption scenes, "
             f"seeds {args.seeds}, {args.scenes} held-out scenes", "",
             f"Machine: {machine()}. Wall time {seconds / 60:.1f} min (adapters found in {args.cache_dir} count 0).",
             "", f"Weight 0 (the base model): style {base.style_strength.mean():.3f}, "
             f"colour fidelity {base.colour_fidelity.mean():.0%}.", "",
             "| rank | params | style at w=1: mean (seed min-max) | colour fidelity at w=1 | shape IoU | "
             f"{study.ladder_table.source.iloc[0]} cut to this rank: style |", "|---|---|---|---|---|---|"]
    for rank in style.index:
        s, c, i = style.loc[rank], colour.loc[rank], iou.loc[rank]
        lines.append(f"| {rank} | {study.parameters[rank]:,} | {s['mean']:.3f} ({s['min']:.3f}-{s['max']:.3f}) | "
                     f"{c['mean']:.0%} ({c['min']:.0%}-{c['max']:.0%}) | {i['mean']:.2f} | "
                     f"{cut.get(rank, float('nan')):.3f} |")
    lines.append("")
    publish(lines, args.append_results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

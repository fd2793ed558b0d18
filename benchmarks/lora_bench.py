"""LoRA on the toy model: training time per rank, style strength by weight, adapter switch cost.

    python benchmarks/lora_bench.py [--ranks 1 2 4 8 16] [--steps 300] [--style outlined] [--append-results]

Style: adapters learn "in outlined style" (a dark rim around each shape; or "in zebra style",
stripes, much slower) from 256 toy images the base model never saw. Strength is
`style_strength` (0 for a flat shape, about 1 as drawn), on held-out scenes controlled by
their plain edges, at LoRA weights 0, 0.5 and 1. A number is not a judge of a look (see the
scores' docstrings): the images go to outputs/lora_bench_<style>_rank<r>_<steps>steps.png,
to look at.
Switch cost: `set_adapters` between two resident adapters against unloading and
`load_lora_weights` again, the naive way.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

import workbench as wb
from report import machine, publish, save_sheet
from workbench.lora import DEFAULT_STEPS, lora_summary, train_lora
from workbench.toy.data import make_dataset
from workbench.toy.scores import style_strength
from workbench.toy.world import STYLES
from workbench.toy.world import render_scene, sample_scenes


def strength_by_weight(pipe, adapter: str, weights, scenes, steps: int = 20, sheet: Path | None = None) -> dict:
    """Mean style strength of held-out styled prompts at each LoRA weight.

    With `sheet`, also saves the images there to look at: a row per weight, the drawn style on top.
    """
    pipe.enable_lora()
    scores, rows = {}, [[render_scene(scene, 64) for scene in scenes]]
    for weight in weights:
        pipe.set_adapters([adapter], adapter_weights=[weight])
        values, images = [], []
        for scene in scenes:
            plain = render_scene(replace(scene, style=None), 64)
            control = wb.make_canny(plain, resolution=64)
            [image] = wb.generate(pipe, scene.caption, control, 0, steps=steps, guidance=5.0)
            values.append(style_strength(image, scene))
            images.append(image)
        scores[weight] = float(np.mean(values))
        rows.append(images)
    if sheet:
        save_sheet(rows, sheet)
    return scores


def switch_cost(pipe, paths: dict, repeats: int = 10) -> tuple[float, float]:
    """Median seconds of one adapter switch: set_adapters vs unload + load_lora_weights."""
    names = list(paths)
    resident, reload = [], []
    for i in range(repeats):
        name = names[i % 2]
        started = time.perf_counter()
        pipe.set_adapters([name], adapter_weights=[1.0])
        resident.append(time.perf_counter() - started)
    for i in range(repeats):
        name = names[i % 2]
        started = time.perf_counter()
        pipe.unload_lora_weights()
        pipe.load_lora_weights(str(paths[name]), adapter_name=name)
        pipe.set_adapters([name], adapter_weights=[1.0])
        reload.append(time.perf_counter() - started)
    return float(np.median(resident)), float(np.median(reload))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="toy")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--style", default="outlined", choices=STYLES)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n-eval", type=int, default=8)
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()
    if len(args.ranks) < 2:
        parser.error("--ranks needs at least two ranks: the switch cost is measured between two adapters")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    work = Path(tempfile.mkdtemp(prefix="lora-bench-"))
    pipe = wb.load_pipeline(args.model, device="cpu")
    data = make_dataset(256, seed=11, size=64, style=args.style)
    held_out = sample_scenes(args.n_eval, seed=12345, style=args.style)
    rows, paths = [], {}
    for rank in args.ranks:
        started = time.perf_counter()
        paths[f"rank{rank}"] = train_lora(pipe, data, rank=rank, steps=args.steps, lr=args.lr, out_dir=work,
                                          callback=lambda step, loss: None)
        seconds = time.perf_counter() - started
        sheet = Path("outputs") / f"lora_bench_{args.style}_rank{rank}_{args.steps}steps.png"
        strength = strength_by_weight(pipe, f"rank{rank}", (0.0, 0.5, 1.0), held_out, sheet=sheet)
        rows.append((rank, seconds, strength))
        print(f"rank {rank}: trained in {seconds:.1f} s, {args.style} strength by weight {strength}", flush=True)
    summary = lora_summary(pipe).set_index("adapter")
    resident, reload = switch_cost(pipe, {k: paths[k] for k in list(paths)[:2]})
    lines = [f"### lora_bench: {args.model}, {args.steps} steps, batch 8, lr {args.lr}, alpha = rank, "
             f"256 {args.style}-style images", "", f"Machine: {machine()}.", "",
             f"| rank | trainable params (% of UNet) | train seconds | {args.style} strength w=0 | w=0.5 | w=1 |",
             "|---|---|---|---|---|---|"]
    for rank, seconds, strength in rows:
        s = summary.loc[f"rank{rank}"]
        lines.append(f"| {rank} | {int(s.parameters):,} ({s.percent_of_unet:.2f}%) | {seconds:.1f} | "
                     f"{strength[0.0]:.3f} | {strength[0.5]:.3f} | {strength[1.0]:.3f} |")
    total = sum(seconds for _, seconds, _ in rows[:4])
    lines += ["", f"First {min(4, len(rows))} ranks trained in {total:.0f} s in all (target: a 4-rank sweep under 240 s; "
              "one rank's style visible within 60 s).",
              f"Adapter switch: set_adapters {resident * 1000:.1f} ms, unload + load_lora_weights "
              f"{reload * 1000:.1f} ms: **{reload / resident:.0f}x** (target >= 20x).", ""]
    publish(lines, args.append_results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

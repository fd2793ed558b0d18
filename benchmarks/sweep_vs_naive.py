"""The sweep engine against a hand-written diffusers loop, side by side in one process.

    python benchmarks/sweep_vs_naive.py [--model toy] [--steps 20] [--seeds 4]

Sweep: 3 conditioning scales x 3 LoRA weights x 2 adapters x N seeds. Both sides write
every image as a PNG; the engine also writes its results log (metrics off, as the loop
computes none).
  naive:  one pipe(...) call per image; per cell, unload and `load_lora_weights` again
  engine: `run_sweep`: adapters loaded once and switched with `set_adapters`, the seeds
          of a cell in one batched call, prompt embeddings computed once
Prints images/s for both and their ratio as Markdown; --append-results adds it to RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import workbench as wb
from report import machine, publish
from workbench.lora import train_lora
from workbench.pipeline import trained_size
from workbench.control import control_for
from workbench.toy.data import make_dataset

CAPTION = "a yellow star on a blue background"
SCALES, WEIGHTS = (0.0, 0.5, 1.0), (0.0, 0.5, 1.0)


def naive_loop(pipe, adapters: dict, control, seeds, steps: int, out: Path) -> int:
    """What people write by hand: reload the LoRA per cell, one call per image."""
    count = 0
    for name, path in adapters.items():
        for weight in WEIGHTS:
            for scale in SCALES:
                pipe.unload_lora_weights()
                pipe.load_lora_weights(str(path), adapter_name=name)
                pipe.set_adapters([name], adapter_weights=[weight])
                for seed in seeds:
                    image = pipe(CAPTION, image=control, num_inference_steps=steps, guidance_scale=5.0,
                                 controlnet_conditioning_scale=scale,
                                 generator=torch.Generator().manual_seed(seed)).images[0]
                    image.save(out / f"{name}-{weight}-{scale}-{seed}.png")
                    count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="toy")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--append-results", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    seeds = list(range(args.seeds))
    work = Path(tempfile.mkdtemp(prefix="sweep-bench-"))

    pipe = wb.load_pipeline(args.model, device="cpu")
    size = trained_size(pipe)
    data = make_dataset(32, seed=7, size=size, style="zebra")
    adapters = {f"rank{r}": train_lora(pipe, data, rank=r, steps=20, out_dir=work / "lora", load=False)
                for r in (4, 8)}  # untimed set-up: two small adapters
    control = control_for(f"toy:{CAPTION}", size, 100, 200)

    (work / "naive").mkdir()
    started = time.perf_counter()
    n_naive = naive_loop(pipe, adapters, control, seeds, args.steps, work / "naive")
    naive_seconds = time.perf_counter() - started
    pipe.unload_lora_weights()

    spec = wb.SweepSpec(model=args.model, prompt=[CAPTION], control_image=f"toy:{CAPTION}",
                        conditioning_scale=list(SCALES), lora_weight=list(WEIGHTS), adapter=list(adapters),
                        adapters={k: str(v) for k, v in adapters.items()}, seed=seeds, steps=[args.steps],
                        guidance=[5.0], metrics=False)
    started = time.perf_counter()
    table = wb.run_sweep(pipe, spec, work / "engine", log=lambda m: None)
    engine_seconds = time.perf_counter() - started
    assert len(table) == n_naive and (table.state == "COMPLETE").all()

    naive_rate, engine_rate = n_naive / naive_seconds, len(table) / engine_seconds
    lines = [f"### sweep_vs_naive: {args.model}, {size} px, {args.steps} steps, "
             f"{len(SCALES)} scales x {len(WEIGHTS)} weights x {len(adapters)} adapters x {len(seeds)} seeds "
             f"= {n_naive} images", "", f"Machine: {machine()}, device cpu.", "",
             "| path | seconds | images/s |", "|---|---|---|",
             f"| naive loop (reload LoRA per cell, 1 call per image) | {naive_seconds:.1f} | {naive_rate:.2f} |",
             f"| workbench engine | {engine_seconds:.1f} | {engine_rate:.2f} |", "",
             f"Ratio engine / naive: **{engine_rate / naive_rate:.2f}x** (target >= 2x).", ""]
    publish(lines, args.append_results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How often torch.compile recompiles during a sweep: 3 LoRA weights x 2 adapters x 2 ControlNet scales (issue #40, 4).

    python benchmarks/compile_recompiles.py [--append-results]

Compiles a fresh tiny model's UNet and ControlNet with `backend="eager"` (dynamo traces and guards as on a GPU,
without inductor's code generation, so it runs in seconds on a CPU) and counts, from torch._dynamo's counters, the
frames dynamo compiled over one sweep, two ways side by side:

    by name   each adapter loaded under its name and switched with `set_adapters`, a ControlNet scale hook registered
              for each call (how a compiled sweep ran before the slot)
    hotswap   the sweep's adapters take turns in one slot padded to the largest rank, weights written in place into
              its scale tensors (`lora/hotswap.py`), one scale hook kept (`models/scales.py`)

Two of the frames are the first compile of the two modules; the rest are recompiles. The images of the two ways are
compared too (they must agree).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from report import machine, publish


def count(spec: dict, folder: Path, hotswap: bool) -> tuple[int, float, np.ndarray]:
    """(frames compiled, seconds, images in row order) of `spec` on a freshly built and compiled tiny pipeline."""
    import time

    import torch._dynamo
    from torch._dynamo.utils import counters

    import workbench as wb
    from workbench.engine import sweep as sweep_module
    from workbench.families.sd15 import build_tiny_pipeline
    from workbench.lora import hotswap as hotswap_module
    from workbench.models import speed

    pipe = build_tiny_pipeline(seed=0)
    plan, keep = sweep_module.hotswap_plan, speed.keep_scale_hooks
    if not hotswap:  # the path before the slot: adapters by name, a hook per call
        sweep_module.hotswap_plan = lambda *args: (None, "")
        speed.keep_scale_hooks = lambda *args: None
    try:
        torch._dynamo.reset()
        counters.clear()
        speed.compile_pipeline(pipe, backend="eager")
        started = time.perf_counter()
        table = wb.run_sweep(pipe, spec, folder, log=lambda *_: None)
        seconds = time.perf_counter() - started
    finally:
        sweep_module.hotswap_plan, speed.keep_scale_hooks = plan, keep
    assert hotswap_module.SLOT in str(getattr(pipe.unet, "peft_config", {})) or not hotswap
    images = np.stack([np.asarray(Image.open(path)) for path in table.sort_values("index").image_path])
    return counters["frames"].get("ok", 0), seconds, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--append-results", action="store_true", help="also append the table to RESULTS.md")
    args = parser.parse_args()
    from workbench.families.sd15 import build_tiny_pipeline
    from workbench.lora.train import random_lora
    writer = build_tiny_pipeline(seed=0)
    lines = ["## torch.compile recompiles during a sweep, by name and by hotswap (`benchmarks/compile_recompiles.py`)",
             "", f"{machine()}; the tiny model compiled with `backend=\"eager\"`, two random LoRA files (ranks 2 "
             "and 4), one seed, 2 steps; frames compiled by `torch._dynamo.utils.counters` (2 are the two modules' "
             "first compile).", "",
             "| sweep | by name: frames (recompiles) | hotswap: frames (recompiles) | seconds, by name / hotswap "
             "| largest pixel difference |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as folder:
        adapters = {f"r{rank}": str(random_lora(writer, rank, Path(folder) / f"r{rank}.safetensors", seed=rank,
                                                std=0.05)) for rank in (2, 4)}
        base = {"model": "tiny", "prompt": "a red circle on a blue background", "steps": 2, "seed": [0],
                "control_image": "toy:a red circle on a blue background", "adapters": adapters, "metrics": False}
        sweeps = {"3 weights x 2 adapters x 2 scales (12 images)": {"adapter": list(adapters),
                                                                    "lora_weight": [0.0, 0.5, 1.0],
                                                                    "conditioning_scale": [0.5, 1.0]},
                  "3 weights, one adapter": {"adapter": ["r2"], "lora_weight": [0.0, 0.5, 1.0]},
                  "2 adapters, weight 1": {"adapter": list(adapters), "lora_weight": [1.0]},
                  "2 ControlNet scales, one adapter": {"adapter": ["r2"], "conditioning_scale": [0.5, 1.0]}}
        for i, (label, axes) in enumerate(sweeps.items()):
            spec = {**base, **axes}
            named, named_s, named_images = count(spec, Path(folder) / f"named{i}", hotswap=False)
            swapped, swapped_s, swapped_images = count(spec, Path(folder) / f"swapped{i}", hotswap=True)
            difference = int(np.abs(named_images.astype(int) - swapped_images.astype(int)).max())
            lines.append(f"| {label} | {named} ({named - 2}) | {swapped} ({swapped - 2}) | "
                         f"{named_s:.1f} / {swapped_s:.1f} | {difference} |")
    publish(lines, args.append_results)


if __name__ == "__main__":
    main()

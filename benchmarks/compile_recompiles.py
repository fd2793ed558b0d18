"""How often torch.compile recompiles during a sweep: 3 LoRA weights x 2 adapters x 2 ControlNet scales (issue #40, 4).

    python benchmarks/compile_recompiles.py

Compiles the tiny model's UNet and ControlNet with `backend="eager"` (dynamo traces and guards as on a GPU, without
inductor's code generation, so it runs in seconds on a CPU) and counts, from torch._dynamo's counters, the graphs
dynamo captured and the recompiles its guards forced, over one sweep of 12 cells. What recompiles today: a LoRA
weight or adapter change alters what dynamo guards on (each adapter's scaling); diffusers' hotswap
(`enable_lora_hotswap(target_rank=...)`, which makes scalings tensors) is the fix the issue names, not built yet.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

def count(pipe, spec: dict, folder: Path) -> tuple[int, int]:
    """(frames compiled, unique graphs) while `pipe`, freshly compiled with backend="eager", runs `spec`."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    import workbench as wb
    torch._dynamo.reset()
    counters.clear()
    pipe.unet.compile(backend="eager")
    pipe.controlnet.compile(backend="eager")
    wb.run_sweep(pipe, spec, folder, log=lambda *_: None)
    return counters["frames"].get("ok", 0), counters["stats"].get("unique_graphs", 0)


def main() -> None:
    from workbench.families.sd15 import build_tiny_pipeline
    from workbench.lora.train import random_lora
    pipe = build_tiny_pipeline(seed=0)
    with tempfile.TemporaryDirectory() as folder:
        adapters = {f"r{rank}": str(random_lora(pipe, rank, Path(folder) / f"r{rank}.safetensors", seed=rank,
                                                std=0.05)) for rank in (2, 4)}
        base = {"model": "tiny", "prompt": "a red circle on a blue background", "steps": 2, "seed": [0],
                "control_image": "toy:a red circle on a blue background", "adapters": adapters}
        sweeps = {"3 weights x 2 adapters x 2 scales": {"adapter": list(adapters), "lora_weight": [0.0, 0.5, 1.0],
                                                       "conditioning_scale": [0.5, 1.0]},
                  "3 weights, one adapter": {"adapter": ["r2"], "lora_weight": [0.0, 0.5, 1.0]},
                  "2 adapters, weight 1": {"adapter": list(adapters), "lora_weight": [1.0]},
                  "2 ControlNet scales, one adapter": {"adapter": ["r2"], "conditioning_scale": [0.5, 1.0]}}
        for i, (label, axes) in enumerate(sweeps.items()):
            frames, graphs = count(pipe, {**base, **axes}, Path(folder) / f"run{i}")
            print(f"{label}: {frames} frames compiled for 2 compiled modules ({frames - 2} recompiles), "
                  f"{graphs} unique graphs")


if __name__ == "__main__":
    main()

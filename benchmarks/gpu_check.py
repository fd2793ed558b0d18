"""`make gpu-check`: everything that needs a CUDA device, in one command of under 8 minutes.

Run it first whenever a GPU is lent. In order, each with its own time limit:
  1. the tests marked `gpu` (fp16 VAE decode in fp32, bf16 default, compiled = eager,
     max_batch="auto", batched = lone images; the memory plan the profile picks for this card,
     VAE slicing, a v-prediction LoRA step in mixed precision, a kohya export loaded by diffusers, a compiled
     sweep whose adapters and weights take turns in one LoRA slot without a recompile)
  2. gpu_sweep.py: the SD1.5 architecture (random weights unless sd15 is cached), 512 px, the
     96-image sweep: naive loops, the engine, the ceiling, peak memory, the auto batch size
  3. gpu_profile.py: where a batch's time goes (text encoder, ControlNet, UNet, VAE, writer)
  4. lora_step.py: a LoRA training step on SD1.5 and SDXL at their profiles' size and settings
     (mixed precision, gradient checkpointing): seconds and peak memory
  5. shared_prefix.py: shared prefixes against separate calls on the SD1.5 architecture at 512 px
Steps 2 to 5 append their tables to benchmarks/RESULTS.md; commit them. On a machine
without CUDA it says so and exits 0.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 8 * 60
STEPS = [  # (what, command, seconds allowed)
    ("tests marked gpu", [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_gpu.py"], 140),
    ("gpu_sweep, SD1.5 architecture, 512 px, 96 images",
     [sys.executable, "benchmarks/gpu_sweep.py", "--append-results"], 170),
    ("gpu_profile, SD1.5 architecture, batch 8", [sys.executable, "benchmarks/gpu_profile.py", "--append-results"], 65),
    ("lora_step, SD1.5 512 px and SDXL 1024 px at their profiles",
     [sys.executable, "benchmarks/lora_step.py", "--append-results"], 65),
    ("shared_prefix, SD1.5 architecture, 512 px", [sys.executable, "benchmarks/shared_prefix.py", "--models",
                                                   "sd15-random", "--sd15-size", "512", "--device", "cuda",
                                                   "--append-results"], 40),
]


def main() -> int:
    import torch
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device on this machine, so there is nothing to check here. "
              "Run `make gpu-check` on a machine with a CUDA GPU, in a venv with the CUDA torch (`make TORCH=torch gpu-check`).")
        return 0
    print(f"gpu-check on {torch.cuda.get_device_name()}, torch {torch.__version__}; budget {BUDGET_S} s")
    assert sum(limit for _, _, limit in STEPS) <= BUDGET_S, "the steps' limits must fit the budget"
    outcomes = []
    for what, command, limit in STEPS:
        started = time.perf_counter()
        try:
            code = subprocess.run(command, cwd=ROOT, timeout=limit).returncode
        except subprocess.TimeoutExpired:
            code = "timed out"
        outcomes.append((what, code, time.perf_counter() - started, limit))
    print("\ngpu-check summary:")
    for what, code, seconds, limit in outcomes:
        print(f"  {'ok    ' if code == 0 else 'FAILED'} {what}: {seconds:.0f} s of {limit} s"
              + ("" if code == 0 else f" ({code})"))
    print("Tables were appended to benchmarks/RESULTS.md: look at them, then commit.")
    return 0 if all(code == 0 for _, code, _, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

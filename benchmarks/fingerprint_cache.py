"""What fingerprinting costs a sweep, the first time and after: SD1.5's architecture with random weights, no files.

    python benchmarks/fingerprint_cache.py          # about 1.2B parameters, fp32 on the CPU (5 GB of memory)

A model loaded by hub id or built from configs has no safetensors folder beside it, so its
fingerprint hashes every tensor. `run_sweep` fingerprints the model each time it runs; the
second sweep on the same pipeline now finds the hash kept on each module (`models/fingerprint.py`).
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from workbench.engine.sweep import model_fingerprint  # noqa: E402
from workbench.families import sd15  # noqa: E402
from workbench.models.fingerprint import forget_fingerprint  # noqa: E402


def timed(pipe) -> tuple[str, float]:
    started = time.perf_counter()
    value = model_fingerprint(pipe, {})
    return value, time.perf_counter() - started


def main() -> None:
    torch.set_num_threads(2)
    started = time.perf_counter()
    pipe = sd15.build_random(seed=0)
    print(f"built SD1.5 + ControlNet from configs (random weights) in {time.perf_counter() - started:.1f} s")
    first, first_s = timed(pipe)
    second, second_s = timed(pipe)
    for name in ("unet", "controlnet", "vae", "text_encoder"):
        forget_fingerprint(getattr(pipe, name))
    again, again_s = timed(pipe)
    assert first == second == again, (first, second, again)
    print(f"first sweep's fingerprint:  {first_s:.3f} s")
    print(f"second sweep's fingerprint: {second_s:.4f} s  ({first_s / max(second_s, 1e-9):.0f}x less)")
    print(f"hashed afresh:              {again_s:.3f} s  (the same value: {first})")


if __name__ == "__main__":
    main()

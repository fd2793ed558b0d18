"""How long a rank ladder takes on an SD1.5-sized LoRA: the QR shortcut against the full-matrix SVD.

    python benchmarks/ladder_timing.py [--rank 128] [--append-results]

The file is a random kohya SD1.5 LoRA (128 UNet attention layers and 72 text-encoder layers,
fp16), the size of a typical third-party rank-128 file. Both ways give the same truncation
(checked here on every layer's rank-8 cut); they differ in what they decompose: dW itself
(out x in, up to 5120 x 1280), or the r x r middle of its two thin QRs (ladder.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from report import machine, publish

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from lora_files import write_sd15_kohya_lora  # noqa: E402 (the tests' writer of third-party files)
from workbench.lora.analysis import lora_rank_ladder, update_svd
from workbench.lora.files import lora_layers, read_lora

RUNGS = [1, 2, 4, 8, 16, 32, 64]


def full_svd_ladder(path: Path, ranks, dtype=torch.float64) -> dict:
    """The naive ladder: build each layer's dW and take its full SVD (what a first attempt does)."""
    state, header = read_lora(path)
    cuts = {}
    for layer in lora_layers(state, header):
        down, up = state[layer.down_key].to(dtype), state[layer.up_key].to(dtype)
        u, s, vh = torch.linalg.svd(layer.scale * up.reshape(up.shape[0], -1) @ down.reshape(down.shape[0], -1),
                                    full_matrices=False)
        cuts[layer.name] = {k: (u[:, :k] * s[:k]) @ vh[:k] for k in ranks}
    return cuts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rank", type=int, default=128)
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ladder-"))
    source = work / f"sd15_rank{args.rank}.safetensors"
    counts = write_sd15_kohya_lora(source, rank=args.rank, alpha=args.rank / 2)
    size_mb = source.stat().st_size / 1e6
    timings = {}
    for dtype in (torch.float64, torch.float32):
        started = time.perf_counter()
        lora_rank_ladder(source, ranks=RUNGS, out_dir=work / str(dtype), dtype=dtype, device="cpu")
        timings[dtype] = time.perf_counter() - started
    started = time.perf_counter()
    naive = full_svd_ladder(source, [8])
    naive_seconds = time.perf_counter() - started
    state, header = read_lora(source)
    worst = 0.0
    for layer in lora_layers(state, header):  # the shortcut's rank-8 cut equals the full SVD's
        u, s, vh = update_svd(state[layer.down_key], state[layer.up_key], layer.scale)
        ours = (u[:, :8] * s[:8]) @ vh[:8]
        worst = max(worst, float((ours - naive[layer.name][8]).norm() / naive[layer.name][8].norm()))
    lines = [f"### ladder_timing: a random kohya SD1.5 LoRA, rank {args.rank}, {sum(counts.values())} layers "
             f"({counts['unet']} UNet, {counts['text_encoder']} text encoder), {size_mb:.0f} MB fp16", "",
             f"Machine: {machine()}.", "",
             "| method | rungs | seconds |", "|---|---|---|",
             f"| ladder.py (QR + r x r SVD), float64, writing {len(RUNGS)} files | {RUNGS} | "
             f"{timings[torch.float64]:.1f} |",
             f"| ladder.py, float32 | {RUNGS} | {timings[torch.float32]:.1f} |",
             f"| full SVD of each dW, float64, one rung, no files | [8] | {naive_seconds:.1f} |", "",
             f"The QR shortcut wrote all {len(RUNGS)} rungs **{naive_seconds / timings[torch.float64]:.1f}x** faster "
             f"than the full SVD computes one; their rank-8 cuts agree to {worst:.1e} (largest relative "
             "Frobenius difference over layers).", ""]
    publish(lines, args.append_results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Ship notebook 02's rank-study adapters in the package, in fp16, so a workshop need not train them.

    python benchmarks/ship_study_adapters.py

Training the study's 15 adapters takes about 35 minutes on a 2-core CPU, far from a workshop's
minute per rank. This copies them from the cache that
`python benchmarks/rank_study.py --steps 1200 --prior 256 --unconditional 128 --scenes 12`
fills (training any that are missing) into workbench/assets/lora-study.zip, as members
"<key>/<name>.safetensors" (the layout of runs/lora-cache), with every tensor in fp16 and the
archive deflated: under 2 MB for all 15. When its own cache lacks an adapter, `rank_study`
copies it from there, so notebook 02's defaults sweep these files instead of training. The printed table compares each fp16 copy with its fp32
original: the largest change of any weight, relative to that tensor's largest weight.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from safetensors import safe_open
from safetensors.torch import load_file, save

import workbench as wb
from workbench.lora import training_pairs
from workbench.ranks import SHIPPED_ADAPTERS, alpha_for, cached_adapter
from workbench.toy.data import style_dataset

RECIPE = dict(steps=1200, lr=1e-3, prior=256, unconditional=128)  # notebook 02's defaults
RANKS, SEEDS = (1, 2, 4, 8, 16), (0, 1, 2)
TRAINED_BY = "python benchmarks/rank_study.py --steps 1200 --prior 256 --unconditional 128 --scenes 12"


def main() -> int:
    pipe = wb.load_pipeline("toy", device="cpu")
    images, captions = training_pairs(style_dataset("outlined", prior=RECIPE["prior"],
                                                    unconditional=RECIPE["unconditional"]))
    print("| adapter | fp32 bytes | fp16 bytes | largest relative change |\n|---|---|---|---|")
    SHIPPED_ADAPTERS.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(SHIPPED_ADAPTERS, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for rank in RANKS:
            alpha, rslora = alpha_for("r", rank, min(RANKS))
            for seed in SEEDS:
                name = f"r{rank}-s{seed}"
                source = cached_adapter(pipe, images, captions, rank, alpha, rslora, RECIPE["steps"], RECIPE["lr"],
                                        seed, Path("runs/lora-cache"), name)
                with safe_open(str(source), framework="pt") as f:
                    header = dict(f.metadata() or {})
                if "workbench_shipped" in header:
                    raise SystemExit(f"{source} is a shipped fp16 copy: train the fp32 adapter into a fresh cache")
                state = load_file(str(source))
                half = {key: tensor.half().contiguous() for key, tensor in state.items()}
                change = max(float((half[k].float() - v).abs().max() / v.abs().max().clamp_min(1e-12))
                             for k, v in state.items())
                header["workbench_shipped"] = json.dumps({"dtype": "float16",
                                                          "fp32_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
                                                          "recipe": RECIPE, "trained_by": TRAINED_BY})
                data = save(half, metadata=header)
                archive.writestr(f"{source.parent.name}/{source.name}", data)
                print(f"| {name} | {source.stat().st_size:,} | {len(data):,} | {change:.1e} |")
    size = SHIPPED_ADAPTERS.stat().st_size
    print(f"\n{len(RANKS) * len(SEEDS)} adapters in {SHIPPED_ADAPTERS.name}: {size:,} bytes ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Ship notebook 02's rank-study adapters in the package, in fp16, so a workshop need not train them.

    python benchmarks/ship_study_adapters.py            # the 15 adapters, in fp16
    python benchmarks/ship_study_adapters.py --tables   # and the study's scores beside them

Training the study's 15 adapters takes about 35 minutes on a 2-core CPU, far from a workshop's
minute per rank. This copies them from the cache that
`python benchmarks/rank_study.py --steps 1200 --prior 256 --unconditional 128 --scenes 12`
fills (training any that are missing) into workbench/assets/lora-study.zip, as members
"<key>/<name>.safetensors" (the layout of runs/lora-cache), with every tensor in fp16 and the
archive deflated: under 2 MB for all 15. When its own cache lacks an adapter, `rank_study`
copies it from there, so notebook 02's defaults sweep these files instead of training. The printed table compares each fp16 copy with its fp32
original: the largest change of any weight, relative to that tensor's largest weight.

With --tables it then runs notebook 02's study on the shipped adapters (sweeping, about 5 min)
and writes its two tables (scores only, no images or paths) into the archive under the study's
key, so the notebook's study cell loads them in seconds (`workbench/store/shipped.py`).
"""

from __future__ import annotations

import argparse
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
from workbench.columns import metric_columns
from workbench.lora import training_pairs
from workbench.lora.files import dataset_hash
from workbench.ranks import SHIPPED_ADAPTERS, alpha_for, cached_adapter
from workbench.shipped import scores_only, ship_tables
from workbench.toy.data import style_dataset

RECIPE = dict(steps=1200, lr=1e-3, prior=256, unconditional=128)  # notebook 02's defaults
RANKS, SEEDS = (1, 2, 4, 8, 16), (0, 1, 2)
TRAINED_BY = "python benchmarks/rank_study.py --steps 1200 --prior 256 --unconditional 128 --scenes 12"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", action="store_true", help="also ship the study's scores (sweeps, about 5 min)")
    parser.add_argument("--tables-only", action="store_true", help="keep the archive's adapters; ship the scores")
    args = parser.parse_args()
    pipe = wb.load_pipeline("toy", device="cpu")
    if args.tables_only:
        return ship_study_tables(pipe)
    images, captions = training_pairs(style_dataset("outlined", prior=RECIPE["prior"],
                                                    unconditional=RECIPE["unconditional"]))
    print("| adapter | fp32 bytes | fp16 bytes | largest relative change |\n|---|---|---|---|")
    SHIPPED_ADAPTERS.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(SHIPPED_ADAPTERS, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for rank in RANKS:
            alpha, rslora = alpha_for("r", rank, min(RANKS))
            for seed in SEEDS:
                name = f"r{rank}-s{seed}"
                source = cached_adapter(pipe, (images, captions), dataset_hash(images, captions), rank, alpha, rslora,
                                        RECIPE["steps"], RECIPE["lr"], seed, Path("runs/lora-cache"), name)
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
    return ship_study_tables(pipe) if args.tables else 0


def ship_study_tables(pipe) -> int:
    """Run notebook 02's study on the shipped adapters (in a cache of its own) and ship its scores."""
    import tempfile
    data = style_dataset("outlined", prior=RECIPE["prior"], unconditional=RECIPE["unconditional"])
    with tempfile.TemporaryDirectory() as work:
        study = wb.rank_study(pipe, data, ranks=RANKS, seeds=SEEDS, steps=RECIPE["steps"], lr=RECIPE["lr"],
                              style="outlined", scenes=12, run_dir=Path(work) / "study",
                              cache_dir=Path(work) / "cache", reuse_shipped=False, log=lambda m: None)
    scores = metric_columns(study.table)
    ship_tables(study.key, scores_only(study.table, scores), scores_only(study.ladder_table, scores))
    size = SHIPPED_ADAPTERS.stat().st_size
    print(f"study tables shipped under {study.key}: {len(study.table)} and {len(study.ladder_table)} rows; "
          f"{SHIPPED_ADAPTERS.name} is now {size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write the toy model card from its template and the artefacts: parameter counts, package size, training times.

    python benchmarks/toy_card_facts.py --run runs/toy-train --status "one paragraph"

Reads the shipped weights (workbench/assets/toy) and the training log (losses.csv), fills
toy_card_template.md's PARAMS_*, PACKAGE_MB, TRAINING_TIMES and STATUS placeholders, and
writes workbench/assets/toy/README.md (export_fp16 replaces that folder, card included).
Then `toy_quality.py --write-card` adds the measured quality block.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import workbench as wb
from workbench.pipeline import TOY_DIR


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/toy-train")
    parser.add_argument("--status", default="", help="a status line for the top of the card (Markdown)")
    args = parser.parse_args()
    pipe = wb.load_pipeline("toy", device="cpu")
    count = {name: sum(p.numel() for p in getattr(pipe, name).parameters())
             for name in ("unet", "controlnet", "vae", "text_encoder")}
    size_mb = sum(f.stat().st_size for f in TOY_DIR.rglob("*.safetensors")) / 1e6
    seconds, steps = {}, {}
    with open(Path(args.run) / "losses.csv") as f:
        for row in csv.DictReader(f):
            seconds[row["stage"]] = float(row["seconds"])
            steps[row["stage"]] = int(row["step"]) + 1
    times = ", ".join(f"{stage} {seconds[stage] / 60:.1f} min ({steps[stage]:,} steps)" for stage in seconds)
    card = TOY_DIR / "README.md"
    text = (Path(__file__).parent / "toy_card_template.md").read_text()
    for key, value in {"PARAMS_TOKENIZER": f"{len(pipe.tokenizer)} tokens", "PARAMS_TEXT": f"{count['text_encoder']:,}",
                       "PARAMS_VAE": f"{count['vae']:,}", "PARAMS_UNET": f"{count['unet']:,}",
                       "PARAMS_CONTROLNET": f"{count['controlnet']:,}", "PACKAGE_MB": f"{size_mb:.1f}",
                       "TRAINING_TIMES": f"Measured training time on 2 cores (each stage's own clock): {times}, "
                                         f"{sum(seconds.values()) / 60:.0f} min in all, plus about 2 min to draw the data.",
                       "STATUS\n\n": f"{args.status}\n\n" if args.status else ""}.items():
        text = text.replace(key, value)
    card.write_text(text)
    print(text[:3000])
    return 0


if __name__ == "__main__":
    sys.exit(main())

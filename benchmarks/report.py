"""What every benchmark prints: the machine it ran on, and its table appended to RESULTS.md."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch
from PIL import Image

RESULTS = Path(__file__).parent / "RESULTS.md"


def machine() -> str:
    """This machine in one line: architecture, cores, torch build and threads."""
    return (f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads)")


def publish(lines: list[str], append: bool) -> None:
    """Print a benchmark's Markdown; with `append`, add it to benchmarks/RESULTS.md too."""
    text = "\n".join(lines)
    print(text)
    if append:
        with open(RESULTS, "a") as f:
            f.write("\n" + text + "\n")


def save_sheet(rows: list[list], path: Path, scale: int = 3) -> None:
    """Rows of equal-sized PIL images as one PNG, enlarged `scale` times (nearest) to look at."""
    width, height = rows[0][0].size
    sheet = Image.new("RGB", (width * len(rows[0]), height * len(rows)))
    for r, row in enumerate(rows):
        for i, image in enumerate(row):
            sheet.paste(image, (width * i, height * r))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.resize((sheet.width * scale, sheet.height * scale), Image.NEAREST).save(path)


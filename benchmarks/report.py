"""What every benchmark prints: the machine it ran on, and its table appended to RESULTS.md."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

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

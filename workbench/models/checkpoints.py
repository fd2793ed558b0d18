"""Training checkpoints: resumable state written with `torch.save`, read back without running any code.

A checkpoint holds tensors and plain containers only (weights, optimizer state, losses, a
generator's state), so it loads with `weights_only=True`: a pickle planted in its place
cannot run code, it is refused (CVE-2025-32434 closed that loader's bypass in torch 2.6).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch


def save_checkpoint(state: dict, path: Path) -> None:
    """Write `state` to `path` through a temporary file, so a kill mid-save keeps the previous checkpoint."""
    temporary = Path(path).with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)


def load_checkpoint(path: Path, map_location: str = "cpu") -> dict:
    """Read a checkpoint with `weights_only=True`; one that holds anything else is refused, naming the file."""
    try:
        return torch.load(path, weights_only=True, map_location=map_location)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise ValueError(f"{Path(path).name} is not a checkpoint this project wrote: it does not load as tensors "
                         f"and plain containers ({str(err).splitlines()[0][:200]}). Delete it to train from the "
                         "start.") from None

"""Fingerprints: short hashes that change whenever model weights change."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import torch


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 4 MiB chunks; remembered while its size and mtime stay the same."""
    stat = Path(path).stat()
    return _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=256)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def module_fingerprint(module: torch.nn.Module) -> str:
    """A hash of a model's weights: of its safetensors files if it came from disk, else of its tensors."""
    folder = Path(getattr(module.config, "_name_or_path", "") or "")
    files = sorted(folder.glob("*.safetensors")) if str(folder) not in ("", ".") and folder.is_dir() else []
    if files:
        return hashlib.sha256("".join(file_sha256(f) for f in files).encode()).hexdigest()[:16]
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if "lora_" in name:
            continue  # adapters are fingerprinted by their files
        digest.update(name.replace(".base_layer", "").encode())  # peft renames adapted layers
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:16]

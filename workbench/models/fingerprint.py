"""Fingerprints: short hashes that change whenever model weights change.

A module loaded from a folder is hashed by its safetensors files (each file's sha256 is kept while
its size and mtime stay the same). A module without files (loaded by hub id, or built from a
config) is hashed by its tensors, which reads every weight: about a second for SD1.5's UNet on a
CPU, and on a GPU a copy of each tensor to the CPU. That hash is kept on the module and used
again while its weights are the same tensors, unchanged: the same storage and the same version
counter for each (`torch.Tensor._version` counts in-place writes; `load_state_dict`, optimisers and
`copy_` bump it). Writes through `.data` bypass the counter, so whatever writes weights that way
(fusing a LoRA: `lora.fused_lora`) calls `forget_fingerprint`. The value is the same as hashing
afresh: trial ids and LoRA cache keys do not change.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import torch

CACHED = "_workbench_fingerprint"  # (weights' identity, fingerprint), kept on the module


def file_sha256(path: Path, start: int = 0) -> str:
    """sha256 of a file from byte `start` on, read in 4 MiB chunks; remembered while its size and mtime stay the same."""
    stat = Path(path).stat()
    return _file_sha256(str(path), stat.st_size, stat.st_mtime_ns, start)


@lru_cache(maxsize=256)
def _file_sha256(path: str, size: int, mtime_ns: int, start: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(start)
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hashed_weights(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) a fingerprint hashes, in order of the module's own names: adapters left out (their files
    count), and each name as a plain module has it (peft renames adapted layers `.base_layer`)."""
    return [(name.replace(".base_layer", ""), tensor) for name, tensor in sorted(module.state_dict().items())
            if "lora_" not in name]


def weights_identity(weights: list) -> tuple:
    """What changes when a weight is replaced or written in place: each tensor's storage, version, shape and dtype."""
    return tuple((name, tensor.data_ptr(), tensor._version, tuple(tensor.shape), str(tensor.dtype), str(tensor.device))
                 for name, tensor in weights)


def module_fingerprint(module: torch.nn.Module) -> str:
    """A hash of a model's weights: of its safetensors files if it came from disk, else of its tensors (kept)."""
    folder = Path(getattr(module.config, "_name_or_path", "") or "")
    files = sorted(folder.glob("*.safetensors")) if str(folder) not in ("", ".") and folder.is_dir() else []
    if files:
        return hashlib.sha256("".join(file_sha256(f) for f in files).encode()).hexdigest()[:16]
    weights = hashed_weights(module)
    identity = weights_identity(weights)
    cached = getattr(module, CACHED, None)
    if cached is not None and cached[0] == identity:
        return cached[1]
    digest = hashlib.sha256()
    for name, tensor in weights:
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    fingerprint = digest.hexdigest()[:16]
    object.__setattr__(module, CACHED, (identity, fingerprint))  # not a submodule or parameter: a plain attribute
    return fingerprint


def forget_fingerprint(module: torch.nn.Module) -> None:
    """Drop the fingerprint kept on `module`: its weights were written where the version counter cannot see."""
    if hasattr(module, CACHED):
        object.__delattr__(module, CACHED)

"""Where the Hugging Face hub cache is, and what it holds of a repository: read from disk, no network, no torch.

    $HF_HUB_CACHE (else $HF_HOME/hub, else ~/.cache/huggingface/hub)/
      models--<owner>--<name>/refs/main          the commit the cache holds
      models--<owner>--<name>/snapshots/<commit>/ the files, as links into blobs/
"""

from __future__ import annotations

import os
from pathlib import Path


def hub_cache() -> Path:
    """The hub cache folder, read now (so a changed HF_HOME or HF_HUB_CACHE counts)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def cached_snapshot(repo_id: str) -> Path | None:
    """The folder of the cached snapshot of `repo_id` (its refs/main), or None when it is not cached."""
    repo = hub_cache() / f"models--{repo_id.replace('/', '--')}"
    try:
        commit = (repo / "refs" / "main").read_text().strip()
    except OSError:
        return None
    folder = repo / "snapshots" / commit
    return folder if commit and folder.is_dir() else None

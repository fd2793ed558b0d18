"""What the package ships for notebook 02's default rank study, so a workshop need not wait for it.

`assets/lora-study.zip` holds
  <adapter cache key>/<name>.safetensors     the study's 15 adapters in fp16, laid out as runs/lora-cache is;
  tables/<study key>/table.csv, ladder.csv    the study's scores (every image's row, no images), for exactly
                                              the settings its key hashes.
The whole study took 35 minutes on a 2-core CPU, about 5.5 of them sweeping (benchmarks/RESULTS.md);
with both shipped, notebook 02's study cell takes seconds. `benchmarks/ship_study_adapters.py` writes the
archive. No torch here.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pandas as pd

SHIPPED = Path(__file__).parents[1] / "assets" / "lora-study.zip"
# What a shipped table keeps of each row: what the study reads, never a path on the machine that made it
KEPT = ("trial_id", "model", "prompt", "control_image", "adapter", "lora_weight", "seed", "steps", "guidance",
        "scheduler", "resolution", "scene", "train_seed", "lora_rank", "source", "state")


def shipped_adapter(key: str, name: str, folder: Path, archive: Path | None = None) -> Path | None:
    """Copy a shipped adapter with this cache key into `folder`; None when the package has none."""
    member, archive = f"{key}/{name}.safetensors", archive or SHIPPED
    if not archive.exists():
        return None
    with zipfile.ZipFile(archive) as shipped:
        if member not in shipped.namelist():
            return None
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{name}.safetensors"
        partial = target.with_suffix(".partial")
        partial.write_bytes(shipped.read(member))
        partial.replace(target)  # a crash mid-copy leaves no half file under the real name
    return target


def copy_toy_adapters(folder: Path, ranks, archive: Path | None = None) -> list[Path]:
    """Copy the study's first-seed adapter of each rank to `folder` as rank<r>.safetensors: the toy's outlined style,
    for the README's example spec. Each keeps its metadata (rank, alpha), so it loads as it was trained."""
    archive = archive or SHIPPED
    with zipfile.ZipFile(archive) as shipped:
        members = {Path(name).stem: name for name in shipped.namelist() if name.endswith(".safetensors")}
        missing = [rank for rank in ranks if f"r{rank}-s0" not in members]
        if missing:
            raise ValueError(f"the package ships no toy adapter of rank {missing}; ranks: {sorted(members)}")
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for rank in ranks:
            target = folder / f"rank{rank}.safetensors"
            partial = target.with_suffix(".partial")
            partial.write_bytes(shipped.read(members[f"r{rank}-s0"]))
            partial.replace(target)
            written.append(target)
    return written


def study_key(settings: dict) -> str:
    """The key of a study's tables: a hash of everything that decides its scores (adapters, prompts, sweep)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def shipped_tables(key: str, archive: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The study's (table, ladder table) shipped under `key`, or None."""
    archive = archive or SHIPPED
    if not archive.exists():
        return None
    with zipfile.ZipFile(archive) as shipped:
        names = set(shipped.namelist())
        members = [f"tables/{key}/{part}.csv" for part in ("table", "ladder")]
        if not all(member in names for member in members):
            return None
        return tuple(pd.read_csv(io.BytesIO(shipped.read(member))) for member in members)


def scores_only(table: pd.DataFrame, score_columns: list[str]) -> pd.DataFrame:
    """A study table as it ships: the columns in `KEPT` and the scores, no file paths or machine facts."""
    return table[[c for c in (*KEPT, *score_columns) if c in table]]


def ship_tables(key: str, table: pd.DataFrame, ladder: pd.DataFrame, archive: Path | None = None) -> None:
    """Write a study's tables into the archive under `key` (members of the same name are replaced)."""
    kept, archive = {}, archive or SHIPPED
    if archive.exists():
        with zipfile.ZipFile(archive) as old:
            kept = {name: old.read(name) for name in old.namelist() if not name.startswith(f"tables/{key}/")}
    kept[f"tables/{key}/table.csv"] = table.to_csv(index=False).encode()
    kept[f"tables/{key}/ladder.csv"] = ladder.to_csv(index=False).encode()
    partial = archive.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as new:
        for name, data in kept.items():
            new.writestr(name, data)
    partial.replace(archive)

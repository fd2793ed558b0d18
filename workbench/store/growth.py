"""Growing a sweep: a new spec into a finished run folder makes only the images it lacks.

A trial's id hashes its parameters and the model's fingerprint, so a trial that two specs
share has one id, one image and one row. Running a different spec into a folder therefore
reuses every finished trial and runs the new ones: a 2 x 2 grid grown to 3 x 3 makes 5 images.

Each spec the folder has seen is kept, numbered: `specs/1.yaml`, `specs/2.yaml`, ... (a comment
line says when it was added), and `spec.yaml` is the latest. A folder from before growth has
only `spec.yaml`; it becomes `specs/1.yaml` when the folder first grows.

The model must stay the same: a spec for another model, or whose model and adapters give
another fingerprint than the folder's images, is refused, because it could reuse nothing
and would mix two models in one table.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..spec.shorten import short
from ..spec.files import load_spec, spec_from_text
from ..spec.sweep_spec import SweepSpec, expand
from . import results
from .run_store import RunStore

SPECS = "specs"


def spec_files(run_dir: Path) -> list[Path]:
    """The numbered spec files, oldest first (a planted link or FIFO among them is skipped, with a warning)."""
    return sorted(RunStore(run_dir).files(SPECS, "*.yaml"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)


def read_folder_spec(run_dir: Path, *parts: str) -> SweepSpec | None:
    """A spec file of the folder, read through its store (no link, no FIFO, bounded); None when it is not there."""
    text = RunStore(run_dir).read_text(*parts)
    return None if text is None else spec_from_text(text, f"spec file {short('/'.join(parts))}", run_dir)


def known_specs(run_dir: Path) -> list[SweepSpec]:
    """Every spec run into the folder, oldest first (just spec.yaml in a folder from before growth)."""
    names = [(SPECS, path.name) for path in spec_files(run_dir)] or [("spec.yaml",)]
    return [spec for parts in names if (spec := read_folder_spec(run_dir, *parts)) is not None]


def is_known(run_dir: Path, spec: SweepSpec) -> bool:
    return any(known.to_dict() == spec.to_dict() for known in known_specs(run_dir))


def check_same_model(run_dir: Path, spec: SweepSpec) -> None:
    """Refuse a spec whose `model` differs from the folder's latest spec (before anything loads)."""
    current = read_folder_spec(run_dir, "spec.yaml")
    if current is not None and current.model != spec.model:
        raise ValueError(f"run folder {short(str(run_dir))} holds a sweep of model {short(current.model)}, and this spec is for "
                         f"{short(spec.model)}: a sweep grows only on its own model. Use a new run folder.")


def check_same_fingerprint(run_dir: Path, fingerprints: set[str], fingerprint: str) -> None:
    """Refuse to grow a folder whose images all come from another model or other adapters."""
    if fingerprints and fingerprint not in fingerprints:
        raise ValueError(f"run folder {short(str(run_dir))} holds images of another model or other adapters "
                         f"(fingerprint {', '.join(sorted(fingerprints))}; this pipeline with this spec's "
                         f"adapters is {fingerprint}), so this spec could reuse none of them. Use a new run folder, "
                         "or the folder's own adapters.")


def record_spec(run_dir: Path, spec: SweepSpec) -> int:
    """Keep `spec` as the next `specs/<n>.yaml` and as spec.yaml; return n."""
    run_dir, store = Path(run_dir), RunStore(run_dir)
    store.path(SPECS, "1.yaml").parent.mkdir(exist_ok=True)
    for n, known in enumerate(known_specs(run_dir), start=1):  # another process of this run recorded it
        if spec_files(run_dir) and known.to_dict() == spec.to_dict():
            return n
    first = store.read_text("spec.yaml")
    if not spec_files(run_dir) and first is not None:  # a folder from before growth
        added = datetime.fromtimestamp(store.path("spec.yaml").stat().st_mtime, timezone.utc)
        store.write(SPECS, "1.yaml", data=f"# spec 1, added {added.isoformat(timespec='seconds')}\n" + first)
    numbers = [int(p.stem) for p in store.path(SPECS, "1.yaml").parent.glob("*.yaml") if p.stem.isdigit()]
    n = max([len(spec_files(run_dir)), *numbers]) + 1  # never the name of a file planted there
    text = spec.to_text()
    added = datetime.now(timezone.utc).isoformat(timespec="seconds")
    store.write(SPECS, f"{n}.yaml", data=f"# spec {n}, added {added}\n" + text)
    store.write("spec.yaml", data=text)
    return n


def spec_of(run_dir: Path, spec) -> SweepSpec:
    """A spec given as a SweepSpec, a dict, a file, or the number n of `specs/<n>.yaml`, resolved (`resolve_spec`)."""
    from ..spec.resolve import resolve_spec
    return resolve_spec(given_spec(run_dir, spec))


def given_spec(run_dir: Path, spec) -> SweepSpec:
    """`spec_of`'s spec as given, read where it is a dict, a file or a number."""
    from ..spec.sweep_spec import spec_from_dict
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, dict):
        return spec_from_dict(spec)
    if isinstance(spec, int) and not isinstance(spec, bool):
        path = Path(run_dir) / SPECS / f"{spec}.yaml"
        if spec == 1 and not path.exists():
            path = Path(run_dir) / "spec.yaml"
        if not path.exists():
            raise ValueError(f"run folder {short(str(run_dir))} has no spec {spec}; it has "
                             f"{len(spec_files(run_dir)) or 1}")
        return load_spec(path)
    return load_spec(spec)


def load_results(run_dir: str | Path, lora_effect: bool = True, spec=None):
    """The sweep's table (`results.load_results`); with `spec`, only that spec's rows: a SweepSpec, a dict, a spec
    file, or n for the folder's `specs/<n>.yaml`. A folder that grew holds every spec's rows; one spec's grid then
    shows exactly its cells, the ones an earlier spec made included."""
    table = results.load_results(run_dir, lora_effect)
    if spec is None or table.empty:
        return table
    return rows_of_spec(table, Path(run_dir), spec).reset_index(drop=True)


def rows_of_spec(table: pd.DataFrame, run_dir: Path, spec) -> pd.DataFrame:
    """The rows whose trial ids one spec expands to, under each model fingerprint the folder holds.

    Where ids hash control images' content (the `<image>_sha256` columns rows carry), the
    content each image name had is read from the rows themselves.
    """
    spec = spec_of(run_dir, spec)
    keys = [unit.key("image") for unit in spec.units]
    content = {name: sha for key in keys if f"{key}_sha256" in table
               for name, sha in zip(table[key], table[f"{key}_sha256"]) if isinstance(sha, str)} or None
    ids = {t.trial_id for fingerprint in table.model_fingerprint.dropna().unique()
           for t in expand(spec, fingerprint, content)}
    return table[table.trial_id.isin(ids)]

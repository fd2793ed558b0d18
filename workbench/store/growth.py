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

import os
from datetime import datetime, timezone
from pathlib import Path

from ..spec.shorten import short
from ..spec.files import load_spec
from ..spec.sweep_spec import SweepSpec

SPECS = "specs"


def spec_files(run_dir: Path) -> list[Path]:
    """The numbered spec files, oldest first."""
    return sorted((Path(run_dir) / SPECS).glob("*.yaml"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)


def known_specs(run_dir: Path) -> list[SweepSpec]:
    """Every spec run into the folder, oldest first (just spec.yaml in a folder from before growth)."""
    files = spec_files(run_dir)
    if not files and (Path(run_dir) / "spec.yaml").exists():
        files = [Path(run_dir) / "spec.yaml"]
    return [load_spec(path) for path in files]


def is_known(run_dir: Path, spec: SweepSpec) -> bool:
    return any(known.to_dict() == spec.to_dict() for known in known_specs(run_dir))


def check_same_model(run_dir: Path, spec: SweepSpec) -> None:
    """Refuse a spec whose `model` differs from the folder's latest spec (before anything loads)."""
    current = load_spec(Path(run_dir) / "spec.yaml")
    if current.model != spec.model:
        raise ValueError(f"run folder {short(str(run_dir))} holds a sweep of model {short(current.model)}, and this spec is for "
                         f"{short(spec.model)}: a sweep grows only on its own model. Use a new run folder.")


def check_same_fingerprint(run_dir: Path, fingerprints: set[str], fingerprint: str) -> None:
    """Refuse to grow a folder whose images all come from another model or other adapters."""
    if fingerprints and fingerprint not in fingerprints:
        raise ValueError(f"run folder {short(str(run_dir))} holds images of another model or other adapters "
                         f"(fingerprint {', '.join(sorted(fingerprints))}; this pipeline with this spec's "
                         f"adapters is {fingerprint}), so this spec could reuse none of them. Use a new run folder, "
                         "or the folder's own adapters.")


def write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def record_spec(run_dir: Path, spec: SweepSpec) -> int:
    """Keep `spec` as the next `specs/<n>.yaml` and as spec.yaml; return n."""
    run_dir = Path(run_dir)
    folder = run_dir / SPECS
    folder.mkdir(exist_ok=True)
    for n, known in enumerate(known_specs(run_dir), start=1):  # another process of this run recorded it
        if spec_files(run_dir) and known.to_dict() == spec.to_dict():
            return n
    if not spec_files(run_dir) and (run_dir / "spec.yaml").exists():  # a folder from before growth
        first = run_dir / "spec.yaml"
        added = datetime.fromtimestamp(first.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
        write_atomic(folder / "1.yaml", f"# spec 1, added {added}\n" + first.read_text())
    n = len(spec_files(run_dir)) + 1
    temporary = run_dir / f".spec.yaml.{os.getpid()}.tmp"
    spec.save(temporary)
    text = temporary.read_text()
    added = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_atomic(folder / f"{n}.yaml", f"# spec {n}, added {added}\n" + text)
    temporary.replace(run_dir / "spec.yaml")
    return n


def spec_of(run_dir: Path, spec) -> SweepSpec:
    """A spec given as a SweepSpec, a dict, a file, or the number n of `specs/<n>.yaml`."""
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

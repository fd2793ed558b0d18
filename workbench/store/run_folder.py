"""A sweep's run folder: made writable, locked per process, cleaned of a killed writer's leftovers.

`open_run_dir` creates the folder and takes this process's lock, which keeps a second,
independent sweep out while one runs; only then does `prepare_run_dir` clean a killed
writer's leftovers and write spec.yaml, before the first image. The files inside it
are the store's (`results.py`) and the growth log's (`growth.py`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import uuid
from pathlib import Path

from .growth import check_same_model, is_known
from .run_store import RunStore
from .safe_files import check_not_planted
from .results import LOG_PATTERN
from ..spec.sweep_spec import SweepSpec


class RunFolderBusy(ValueError):
    """Another sweep process holds this run folder's lock for the same rank."""


def lock_run_dir(run_dir: Path, rank: int):
    """Take this rank's lock on the run folder, or raise RunFolderBusy naming the holder.

    Each rank of one multi-process launch has its own lock, so they share the folder;
    a second, independent sweep into the same folder collides on rank 0 and is refused.
    The lock is released by the OS when the process ends, even by kill -9.
    """
    return take_lock(run_dir, f"rank{rank}", "a running sweep")


def take_lock(run_dir: Path, name: str, what: str):
    """Hold `run_dir/.lock.<name>` (an flock) until the returned file is closed; RunFolderBusy if another has it."""
    import fcntl
    handle = os.fdopen(RunStore(run_dir).lock_file(f".lock.{name}"), "r+")  # a planted link is refused
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunFolderBusy(f"run folder {str(run_dir)!r} is in use by {what} ({holder}); wait for it, "
                            "or stop it and run again to resume") from None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def fault_point(name: str) -> None:
    """Kill this process here if WORKBENCH_FAULT names this point: how the fault tests crash on cue."""
    if os.environ.get("WORKBENCH_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def process_alive(pid: int) -> bool:
    """True if a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_run_dir(run_dir: str | Path, rank: int = 0):
    """Create `run_dir` and take rank `rank`'s lock on it, before anything in it is written; return (folder, lock)."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir, lock_run_dir(run_dir, rank)
    except RunFolderBusy:
        raise
    except OSError as err:
        raise ValueError(f"run folder {str(run_dir)!r} is not writable ({err.strerror}); choose another --run-dir") from None


# What a writer's temporary PNG is called: .<trial id>.png.<pid>.tmp (results.write_png_atomic)
TEMPORARY_PNG = re.compile(r"^\.[^/]+\.png\.(\d{1,10})\.tmp$")


RECORD = "workbench.json"  # the folder's own facts: its trial-id scheme and its identity
TRIAL_ID_SCHEME = 2         # 1: ids hash a control image's name (folders made before); 2: its content


def folder_record(run_dir: Path, create: bool = False) -> dict:
    """{"trial_id_scheme": 1 or 2, "folder_id": ...}: read from workbench.json, else made (with `create`).

    A folder that holds rows but no record was made before the record: its trial ids hash
    control image names (scheme 1), and keep doing so, so it resumes. A new folder hashes their
    content (scheme 2). The folder id stays when the folder moves (an exported sweep's identity).
    The record is created once (O_EXCL), so the processes of one launch all read the same one.
    """
    store = RunStore(run_dir)
    path = store.path(RECORD)
    for _ in range(2):
        check_not_planted(path)
        text = store.read_text(RECORD)
        try:
            record = json.loads(text) if text is not None else None
            if isinstance(record, dict) and record.get("trial_id_scheme") in (1, 2):
                return record
        except ValueError:  # a record torn by a crash as it was made: made again
            if create:
                path.unlink(missing_ok=True)
        older = any(Path(run_dir).glob(LOG_PATTERN))
        record = {"trial_id_scheme": 1 if older else TRIAL_ID_SCHEME, "folder_id": uuid.uuid4().hex}
        if not create:
            return record
        if not store.create(RECORD, data=json.dumps(record)):
            continue  # another process of this launch made it first: read theirs
        return record
    raise ValueError(f"{path} could not be read or written")


def prepare_run_dir(run_dir: Path, spec: SweepSpec, records_spec: bool = True) -> dict:
    """With the folder locked: check it is writable and holds this model's sweeps, clean a killed writer's
    temporary PNGs, and write spec.yaml (when `records_spec`: a sweep's plan, not a search's candidate). Returns the
    folder's record (`folder_record`)."""
    try:
        (run_dir / "images").mkdir(exist_ok=True)
        RunStore(run_dir).write(f".write-test-{os.getpid()}", data="ok").unlink()
    except OSError as err:
        raise ValueError(f"run folder {str(run_dir)!r} is not writable ({err.strerror}); choose another --run-dir") from None
    for leftover in (run_dir / "images").glob(".*.tmp"):
        match = TEMPORARY_PNG.match(leftover.name)  # anything else there is someone's own file: left alone
        if match and not process_alive(int(match.group(1))):
            leftover.unlink(missing_ok=True)  # a PNG a killed process was writing; its trial is redone
    record = folder_record(run_dir, create=True)  # before spec.yaml: a new folder is not mistaken for an old one
    spec_path = run_dir / "spec.yaml"
    if spec_path.exists():
        if not records_spec or not is_known(run_dir, spec):  # a new spec grows the sweep (growth.py), same model only
            check_same_model(run_dir, spec)
    elif records_spec:
        RunStore(run_dir).write("spec.yaml", data=spec.to_text())
    return record

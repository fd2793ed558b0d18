"""Helpers for tests that run sweeps in real subprocesses and check what survived."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from workbench import load_results
from workbench.results import read_log

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"model": "tiny", "prompt": "a red circle on a blue background",
        "control_image": "toy:a red circle on a blue background", "steps": 8,
        "conditioning_scale": [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0], "seed": [0, 1, 2], "guidance": [3.0, 5.0]}


def start_sweep(spec_path: Path, run_dir: Path, **env) -> subprocess.Popen:
    """`python -m workbench sweep` in a subprocess, offline, one thread."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env}
    return subprocess.Popen([sys.executable, "-m", "workbench", "sweep", str(spec_path), "--run-dir", str(run_dir)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def check_run(run_dir: Path, n_trials: int) -> None:
    """One COMPLETE row per trial over all logs, no duplicate lines, every image decodes and matches its hash."""
    ids = []
    for log in sorted(run_dir.glob("results*.jsonl")):
        rows, problems = read_log(log)
        assert not problems, problems
        ids += [row["trial_id"] for row in rows]
    assert len(ids) == len(set(ids)) == n_trials, f"{len(ids)} rows, {len(set(ids))} distinct, {n_trials} trials"
    table = load_results(run_dir)
    assert len(table) == n_trials and (table.state == "COMPLETE").all()
    for row in table.itertuples():
        data = Path(row.image_path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.image_sha256
        Image.open(row.image_path).load()
    assert not list((run_dir / "images").glob(".*.tmp")), "a killed writer's temporary file was left behind"


def mean_brightness(image, context) -> dict:
    """A writer metric for the registry test: the image's mean grey level (0-1)."""
    import numpy as np
    return {"brightness": float(np.asarray(image.convert("L"), np.float32).mean() / 255)}

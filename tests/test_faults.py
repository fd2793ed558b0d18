"""Faults at the worst moments, then resume: 0 rows lost among finished trials, 0 duplicates.

Each test ends with `check_run`: one COMPLETE row per trial over all logs, no duplicate
lines, and every referenced image decodes and matches its sha256.
"""

import errno
import os
import subprocess
import sys
import time

import pytest

import workbench.sweep as sweep_module
import workbench.engine.write as write_module
from workbench import load_results, run_sweep
from workbench.spec import expand, spec_from_dict
from workbench.sweep import RunFolderBusy

from sweep_helpers import ROOT, SPEC, check_run, count_lines, start_sweep
from tolerance import assert_images_close

N_TRIALS = len(expand(spec_from_dict(SPEC)))


@pytest.mark.integration  # a sweep in another process, killed or run beside another (20-30 s each)
@pytest.mark.parametrize("point", ["after_image", "after_row"])
def test_killed_between_image_and_row_or_mid_batch(tmp_path, point):
    """after_image: the PNG is on disk but its row is not; after_row: one row of a batch is logged."""
    spec_path = tmp_path / "spec.yaml"
    spec_from_dict(SPEC).save(spec_path)
    run_dir = tmp_path / "run"
    crashed = start_sweep(spec_path, run_dir, WORKBENCH_FAULT=point)
    crashed.communicate(timeout=300)
    assert crashed.returncode == -9  # it really was killed at the fault point
    logged = count_lines(run_dir / "results.jsonl")
    assert logged == (0 if point == "after_image" else 1)
    assert len(list((run_dir / "images").glob("*.png"))) == 1  # the image written before the kill
    resumed = start_sweep(spec_path, run_dir)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr.decode()[-2000:]
    check_run(run_dir, N_TRIALS)


def test_full_disk_stops_cleanly_and_keeps_what_finished(tiny_pipe, tmp_path, monkeypatch):
    real, written = write_module.write_png_atomic, []

    def fills_up(image, path, pnginfo=None):
        if len(written) == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(path)
        return real(image, path, pnginfo)

    monkeypatch.setattr(write_module, "write_png_atomic", fills_up)
    spec = spec_from_dict({**SPEC, "steps": 2})
    with pytest.raises(OSError, match=r"disk is full .* the 5 trials finished so far are kept"):
        run_sweep(tiny_pipe, spec, tmp_path, log=lambda m: None)
    kept = load_results(tmp_path)
    assert len(kept) == 5 and (kept.state == "COMPLETE").all()
    monkeypatch.setattr(write_module, "write_png_atomic", real)  # space freed
    run_sweep(tiny_pipe, spec, tmp_path, log=lambda m: None)
    check_run(tmp_path, N_TRIALS)


def test_corrupt_middle_line_is_reported_and_other_rows_kept(tiny_pipe, tmp_path):
    spec = spec_from_dict({**SPEC, "steps": 2})
    run_sweep(tiny_pipe, spec, tmp_path, log=lambda m: None)
    log = tmp_path / "results.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    lines[3] = b'{"trial_id": "garbled' + b"\x00" * 10 + b"\n"  # a damaged page in the middle
    log.write_bytes(b"".join(lines))
    with pytest.warns(UserWarning, match="damaged line 4"):
        table = load_results(tmp_path)
    assert len(table) == N_TRIALS - 1
    run_sweep(tiny_pipe, spec, tmp_path, log=lambda m: None)  # the lost trial is redone
    with pytest.warns(UserWarning, match="damaged line 4"):
        assert len(load_results(tmp_path)) == N_TRIALS


@pytest.mark.integration  # a sweep in another process, killed or run beside another (20-30 s each)
def test_second_sweep_into_a_busy_run_dir_is_refused(tiny_pipe, tmp_path):
    spec_path = tmp_path / "spec.yaml"
    spec_from_dict(SPEC).save(spec_path)
    run_dir = tmp_path / "run"
    first = start_sweep(spec_path, run_dir)
    try:
        deadline = time.time() + 120
        while count_lines(run_dir / "results.jsonl") < 1 and time.time() < deadline:
            time.sleep(0.02)
        with pytest.raises(RunFolderBusy, match="in use by a running sweep"):
            run_sweep(tiny_pipe, spec_from_dict(SPEC), run_dir, log=lambda m: None)
    finally:
        first.wait(timeout=300)
    assert first.returncode == 0
    check_run(run_dir, N_TRIALS)


@pytest.mark.integration  # a sweep in another process, killed or run beside another (20-30 s each)
def test_two_processes_under_accelerate_match_one_process(tiny_pipe, tmp_path):
    spec = spec_from_dict({**SPEC, "steps": 2})
    spec.save(tmp_path / "spec.yaml")
    # accelerate's --cpu runs one process; --multi_gpu starts N through torch.distributed.run, on CPUs too.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "-m", "workbench", "sweep", str(tmp_path / "spec.yaml"), "--run-dir", str(tmp_path / "two")]
    done = subprocess.run(launch, cwd=ROOT, capture_output=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert (tmp_path / "two" / "results.rank1.jsonl").exists()  # both processes wrote
    check_run(tmp_path / "two", N_TRIALS)
    one = run_sweep(tiny_pipe, spec, tmp_path / "one", log=lambda m: None).set_index("trial_id")
    two = load_results(tmp_path / "two").set_index("trial_id")
    assert sorted(one.index) == sorted(two.index)  # the same trials, one row each (check_run)
    # Two 1-thread processes batch differently from one 2-thread process: equal within rounding.
    for trial in one.index:
        assert_images_close(one.image_path[trial], two.image_path[trial], trial)


@pytest.mark.integration  # a sweep in another process, killed or run beside another (20-30 s each)
def test_kill_one_of_two_workers_then_resume_with_one(tmp_path):
    spec_path = tmp_path / "spec.yaml"
    spec_from_dict(SPEC).save(spec_path)
    run_dir = tmp_path / "run"
    workers = [start_sweep(spec_path, run_dir, RANK=str(rank), WORLD_SIZE="2") for rank in (0, 1)]
    deadline = time.time() + 120
    while count_lines(run_dir / "results.rank1.jsonl") < 1 and workers[1].poll() is None and time.time() < deadline:
        time.sleep(0.01)
    workers[1].kill()  # SIGKILL, mid-sweep
    workers[1].wait()
    workers[0].communicate(timeout=300)
    assert workers[0].returncode == 0
    done_before_resume = count_lines(run_dir / "results.jsonl") + count_lines(run_dir / "results.rank1.jsonl")
    assert done_before_resume < N_TRIALS  # the killed worker's share was not finished
    resumed = start_sweep(spec_path, run_dir)  # one process now: takes whatever is unfinished
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr.decode()[-2000:]
    check_run(run_dir, N_TRIALS)

"""Kill a real sweep process with SIGKILL mid-run, resume, and check nothing is lost or doubled."""

import signal
import time

import pytest

from workbench import load_results
from workbench.results import ResultsLog, read_log
from workbench.spec import expand, spec_from_dict

from sweep_helpers import SPEC, check_run, count_lines, start_sweep


# A kill mid-sweep runs by default; before the first row and near the end under `slow` (12 s each)
@pytest.mark.parametrize("kill_after_rows", [pytest.param(0, marks=pytest.mark.slow), 6,
                                             pytest.param(20, marks=pytest.mark.slow)])
def test_kill_9_then_resume_loses_and_doubles_nothing(tmp_path, kill_after_rows):
    spec_path = tmp_path / "spec.yaml"
    spec_from_dict(SPEC).save(spec_path)
    run_dir = tmp_path / "run"
    log = run_dir / "results.jsonl"
    n_trials = len(expand(spec_from_dict(SPEC)))
    process = start_sweep(spec_path, run_dir)
    deadline = time.time() + 120
    while count_lines(log) < kill_after_rows and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    if kill_after_rows == 0:
        while not (run_dir / "spec.yaml").exists() and time.time() < deadline:
            time.sleep(0.01)
    assert process.poll() is None, "the sweep finished before it could be killed: make it longer"
    process.send_signal(signal.SIGKILL)
    process.wait()
    rows_at_kill = count_lines(log)
    assert rows_at_kill < n_trials
    resumed = start_sweep(spec_path, run_dir)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr.decode()[-2000:]
    check_run(run_dir, n_trials)


def test_torn_last_line_is_reported_and_intact_rows_kept(tmp_path):
    log_path = tmp_path / "results.jsonl"
    with ResultsLog(log_path) as log:
        for i in range(3):
            log.append({"trial_id": f"t{i}", "index": i, "state": "COMPLETE", "image_path": ""})
    with open(log_path, "ab") as f:
        f.write(b'{"trial_id": "t3", "index": 3, "sta')  # a kill in the middle of a write
    with pytest.warns(UserWarning, match="damaged line 4"):
        table = load_results(tmp_path)
    assert list(table.trial_id) == ["t0", "t1", "t2"]
    with ResultsLog(log_path) as log:  # the next writer starts on a fresh line
        log.append({"trial_id": "t3", "index": 3, "state": "COMPLETE", "image_path": ""})
    rows, problems = read_log(log_path)
    assert [r["trial_id"] for r in rows] == ["t0", "t1", "t2", "t3"] and len(problems) == 1


def test_newest_attempt_wins_but_complete_is_final(tmp_path):
    with ResultsLog(tmp_path / "results.jsonl") as log:
        log.append({"trial_id": "a", "index": 0, "state": "FAILED", "error": "x"})
        log.append({"trial_id": "a", "index": 0, "state": "COMPLETE", "error": ""})
        log.append({"trial_id": "b", "index": 1, "state": "COMPLETE", "error": ""})
        log.append({"trial_id": "b", "index": 1, "state": "FAILED", "error": "late"})
    table = load_results(tmp_path, lora_effect=False)
    assert list(table.state) == ["COMPLETE", "COMPLETE"]


def test_missing_run_dir():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_results("/no/such/run")


def test_ctrl_c_stops_after_the_batch_and_resume_completes(tmp_path):
    spec_path = tmp_path / "spec.yaml"
    spec_from_dict(SPEC).save(spec_path)
    run_dir, n_trials = tmp_path / "run", len(expand(spec_from_dict(SPEC)))
    process = start_sweep(spec_path, run_dir)
    deadline = time.time() + 120
    while count_lines(run_dir / "results.jsonl") < 3 and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr.decode()[-2000:]  # an interrupt, as shells expect (issue #43)
    assert b"stopping after the current batch" in stderr
    rows_after_stop = count_lines(run_dir / "results.jsonl")
    # whole batches only: each guidance's 8 scales x 3 seeds go in batches of 16 and 8
    assert 3 <= rows_after_stop < n_trials and rows_after_stop % 8 == 0
    resumed = start_sweep(spec_path, run_dir)
    resumed.communicate(timeout=300)
    assert resumed.returncode == 0
    check_run(run_dir, n_trials)

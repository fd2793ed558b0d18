"""The CPU memory guard: an estimate from the configs, batches lowered to fit, a refusal before any image."""

import re
from pathlib import Path

import pytest

import workbench.memory as memory
from workbench import load_results, run_sweep
from workbench.spec import spec_from_dict

CAPTION = "a red circle on a blue background"
SPEC = {"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2,
        "conditioning_scale": [0.0, 1.0], "seed": [0, 1, 2]}


def test_estimate_grows_with_the_pixels(tiny_pipe):
    small, large = (memory.estimate_image_bytes(tiny_pipe, s, s) for s in (32, 128))
    assert small > 0 and large == pytest.approx(16 * small, rel=0.05)  # 16x the pixels


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="reads /proc/meminfo, which only Linux has")
def test_free_memory_is_read_on_linux():
    """MemAvailable (or a lower cgroup limit) is read: a number of bytes between 1 MiB and the machine's total."""
    free = memory.available_memory()
    total = int(re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text()).group(1)) * 1024
    assert free is not None and 2**20 < free <= total


def test_batch_is_lowered_to_what_fits(tiny_pipe, monkeypatch):
    per_image = memory.estimate_image_bytes(tiny_pipe, 32, 32)
    monkeypatch.setattr(memory, "available_memory", lambda: int(3.5 * per_image / memory.HEADROOM))
    messages = []
    assert memory.fit_batch(tiny_pipe, 32, 32, 16, log=messages.append) == 3
    assert "batches of 3 instead" in messages[0]
    assert memory.fit_batch(tiny_pipe, 32, 32, 2, log=messages.append) == 2 and len(messages) == 1


def test_sweep_refuses_an_image_that_cannot_fit_before_making_any(tiny_pipe, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 1000)
    with pytest.raises(MemoryError, match=r"one 32x32 image needs about .* GiB is free: nothing was generated"):
        run_sweep(tiny_pipe, spec_from_dict(SPEC), tmp_path, log=lambda m: None)
    assert load_results(tmp_path).empty


def test_sweep_runs_in_smaller_batches_when_memory_is_short(tiny_pipe, tmp_path, monkeypatch):
    per_image = memory.estimate_image_bytes(tiny_pipe, 32, 32)
    monkeypatch.setattr(memory, "available_memory", lambda: int(2 * per_image / memory.HEADROOM))
    messages, batches = [], []
    table = run_sweep(tiny_pipe, spec_from_dict(SPEC), tmp_path, log=messages.append,
                      callback=lambda p: batches.append(len(p.rows)))
    assert len(table) == 6 and (table.state == "COMPLETE").all()
    assert any("batches of 2 instead" in m for m in messages) and max(batches) <= 2

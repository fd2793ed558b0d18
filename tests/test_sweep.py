"""run_sweep on the tiny model: rows, images, infotext, resume, failures, OOM backoff, stopping."""

import hashlib
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from workbench import load_results, run_sweep
from workbench.infotext import read_png_parameters
from workbench.spec import AXES, spec_from_dict
import workbench.sweep as sweep_module

CAPTION = "a red circle on a blue background"


def small_spec(**overrides):
    data = {"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2,
            "conditioning_scale": [0.0, 1.0], "seed": [0, 1]}
    return spec_from_dict({**data, **overrides})


@pytest.fixture(scope="module")
def finished_run(tiny_pipe, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    table = run_sweep(tiny_pipe, small_spec(), run_dir, log=lambda m: None)
    return run_dir, table


def test_one_complete_row_per_trial_with_every_column(finished_run):
    run_dir, table = finished_run
    assert len(table) == 4 and (table.state == "COMPLETE").all() and table.trial_id.is_unique
    for column in (*AXES, "trial_id", "image_path", "image_sha256", "started_at", "seconds", "device", "dtype",
                   "torch_version", "diffusers_version", "model_fingerprint", "edge_f1", "edge_ssim", "error"):
        assert column in table, column
    assert (run_dir / "spec.yaml").is_file()


def test_images_match_their_hashes(finished_run):
    _, table = finished_run
    for row in table.itertuples():
        data = open(row.image_path, "rb").read()
        assert hashlib.sha256(data).hexdigest() == row.image_sha256
        assert Image.open(row.image_path).size == (32, 32)


def test_png_infotext_parses_back_to_the_row(finished_run):
    _, table = finished_run
    for row in table.to_dict("records"):
        params = read_png_parameters(row["image_path"])
        for name in ("prompt", "negative_prompt", "conditioning_scale", "seed", "steps", "guidance", "scheduler",
                     "control_guidance_start", "control_guidance_end", "canny_low", "canny_high", "control_image"):
            assert params[name] == row[name], name
        assert params["trial_id"] == row["trial_id"]


def test_rerun_skips_finished_trials(tiny_pipe, finished_run, monkeypatch):
    run_dir, table = finished_run
    calls = []
    monkeypatch.setattr(sweep_module, "generate_cell", lambda *a, **k: calls.append(1))
    again = run_sweep(tiny_pipe, small_spec(), run_dir, log=lambda m: None)
    assert calls == [] and list(again.trial_id) == list(table.trial_id)


def test_a_row_reproduces_alone(tiny_pipe, finished_run, tmp_path):
    _, table = finished_run
    row = table[(table.seed == 1) & (table.conditioning_scale == 1.0)].iloc[0]
    alone = run_sweep(tiny_pipe, small_spec(conditioning_scale=[1.0], seed=[1]), tmp_path, log=lambda m: None)
    assert alone.image_sha256.iloc[0] == row.image_sha256


def test_conditioning_scale_changes_the_image(finished_run):
    _, table = finished_run
    off = table[(table.conditioning_scale == 0) & (table.seed == 0)].image_sha256.iloc[0]
    on = table[(table.conditioning_scale == 1) & (table.seed == 0)].image_sha256.iloc[0]
    assert off != on


def test_other_spec_in_same_run_dir_is_refused(tiny_pipe, finished_run):
    run_dir, _ = finished_run
    with pytest.raises(ValueError, match=r"different sweep \(differs in \['seed'\]\)"):
        run_sweep(tiny_pipe, small_spec(seed=[7]), run_dir)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; permission bits do not stop it")
def test_unwritable_run_dir(tiny_pipe, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ValueError, match="not writable"):
        run_sweep(tiny_pipe, small_spec(), locked / "run")


def test_run_dir_under_a_file_is_refused(tiny_pipe, tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ValueError, match="not writable"):
        run_sweep(tiny_pipe, small_spec(), tmp_path / "a-file" / "run")


def test_failed_cell_is_recorded_and_the_sweep_goes_on(tiny_pipe, tmp_path, monkeypatch):
    real = sweep_module.generate_cell

    def flaky(pipe, params, seeds, control, embeddings):
        if params["conditioning_scale"] == 0.0:
            raise RuntimeError("simulated failure")
        return real(pipe, params, seeds, control, embeddings)

    monkeypatch.setattr(sweep_module, "generate_cell", flaky)
    table = run_sweep(tiny_pipe, small_spec(), tmp_path, log=lambda m: None)
    failed = table[table.state == "FAILED"]
    assert len(failed) == 2 and (failed.conditioning_scale == 0).all()
    assert failed.error.str.contains("simulated failure").all() and (failed.image_path == "").all()
    assert (table[table.state == "COMPLETE"].conditioning_scale == 1).all()
    monkeypatch.setattr(sweep_module, "generate_cell", real)
    retried = run_sweep(tiny_pipe, small_spec(), tmp_path, log=lambda m: None)
    assert (retried.state == "COMPLETE").all() and len(retried) == 4  # failed trials are redone, not duplicated


def test_out_of_memory_halves_the_batch(tiny_pipe, tmp_path, monkeypatch):
    real, batches, messages = sweep_module.generate_cell, [], []

    def small_memory(pipe, params, seeds, control, embeddings):
        batches.append(len(seeds))
        if len(seeds) > 1:
            raise torch.OutOfMemoryError("simulated")
        return real(pipe, params, seeds, control, embeddings)

    monkeypatch.setattr(sweep_module, "generate_cell", small_memory)
    table = run_sweep(tiny_pipe, small_spec(conditioning_scale=[1.0], seed=[0, 1, 2, 3]), tmp_path, log=messages.append)
    assert (table.state == "COMPLETE").all() and len(table) == 4
    assert batches[0] == 4 and batches.count(1) == 4 and "out of memory" in messages[0]


def test_nan_images_are_flagged(tiny_pipe, tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "generate_cell",
                        lambda pipe, params, seeds, *a: np.full((len(seeds), 32, 32, 3), np.nan, np.float32))
    table = run_sweep(tiny_pipe, small_spec(), tmp_path, log=lambda m: None)
    assert (table.flag == "nan").all()


def test_should_stop_ends_cleanly_and_resume_finishes(tiny_pipe, tmp_path):
    seen = []
    table = run_sweep(tiny_pipe, small_spec(), tmp_path, callback=lambda p: seen.append(p.done),
                      should_stop=lambda: len(seen) >= 1, log=lambda m: None)
    assert len(table) == 2 and seen == [2]
    finished = run_sweep(tiny_pipe, small_spec(), tmp_path, log=lambda m: None)
    assert len(finished) == 4 and finished.trial_id.is_unique


def test_callback_counts_progress(tiny_pipe, tmp_path):
    events = []
    run_sweep(tiny_pipe, small_spec(), tmp_path, callback=lambda p: events.append((p.done, p.total, len(p.rows))),
              log=lambda m: None)
    assert events == [(2, 4, 2), (4, 4, 2)]


def test_long_prompt_warns(tiny_pipe, tmp_path):
    with pytest.warns(UserWarning, match="tokens"):
        run_sweep(tiny_pipe, small_spec(prompt=[CAPTION * 3], seed=[0], conditioning_scale=[1.0]), tmp_path,
                  log=lambda m: None)


def test_schedulers_as_an_axis(tiny_pipe, tmp_path):
    table = run_sweep(tiny_pipe, small_spec(scheduler=["ddim", "euler", "dpm++2m"], seed=[0], conditioning_scale=[1.0]),
                      tmp_path, log=lambda m: None)
    assert (table.state == "COMPLETE").all() and table.image_sha256.nunique() == 3


def test_two_shards_are_disjoint_complete_and_identical_to_one_process(tiny_pipe, finished_run, tmp_path):
    _, single = finished_run
    for rank in (0, 1):
        run_sweep(tiny_pipe, small_spec(), tmp_path, rank=rank, world_size=2, log=lambda m: None)
    assert (tmp_path / "results.jsonl").exists() and (tmp_path / "results.rank1.jsonl").exists()
    from workbench.results import read_log
    ids = [r["trial_id"] for name in ("results.jsonl", "results.rank1.jsonl") for r in read_log(tmp_path / name)[0]]
    assert len(ids) == len(set(ids)) == 4
    merged = load_results(tmp_path)
    assert sorted(merged.image_sha256) == sorted(single.image_sha256)

"""run_sweep on the tiny model: rows, images, infotext, resume, failures, OOM backoff, stopping."""

import hashlib
import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from workbench import load_results, run_sweep
from workbench.families import family_of
from workbench.infotext import read_png_parameters
from workbench.spec import AXES, OPTIONAL_AXES, spec_from_dict
import workbench.engine.run as run_module  # where a batch's pipeline call is made
import workbench.sweep as sweep_module

from tolerance import assert_images_close

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
    for column in (*(a for a in AXES if a not in OPTIONAL_AXES), "trial_id", "image_path", "image_sha256", "started_at", "seconds", "device", "dtype",
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
    monkeypatch.setattr(run_module, "call_pipeline", lambda *a, **k: calls.append(1))
    again = run_sweep(tiny_pipe, small_spec(), run_dir, log=lambda m: None)
    assert calls == [] and list(again.trial_id) == list(table.trial_id)


def test_a_row_reproduces_alone(tiny_pipe, finished_run, tmp_path):
    _, table = finished_run
    row = table[(table.seed == 1) & (table.conditioning_scale == 1.0)].iloc[0]
    alone = run_sweep(tiny_pipe, small_spec(conditioning_scale=[1.0], seed=[1]), tmp_path, log=lambda m: None)
    assert alone.trial_id.iloc[0] == row.trial_id
    assert_images_close(alone.image_path.iloc[0], row.image_path, "batch of 1 against batch of 4")


def test_the_same_sweep_twice_is_bit_identical(tiny_pipe, finished_run, tmp_path):
    """Same process, threads and batches: the images and their infotext are byte for byte the same."""
    _, table = finished_run
    again = run_sweep(tiny_pipe, small_spec(), tmp_path, log=lambda m: None)
    assert list(again.image_sha256) == list(table.image_sha256)


def test_conditioning_scale_changes_the_image(finished_run):
    _, table = finished_run
    off = table[(table.conditioning_scale == 0) & (table.seed == 0)].image_sha256.iloc[0]
    on = table[(table.conditioning_scale == 1) & (table.seed == 0)].image_sha256.iloc[0]
    assert off != on


def test_a_spec_for_another_model_in_the_same_run_dir_is_refused(tiny_pipe, finished_run):
    run_dir, _ = finished_run
    with pytest.raises(ValueError, match=r"holds a sweep of model 'tiny', and this spec is for 'toy'"):
        run_sweep(tiny_pipe, small_spec(model="toy", resolution=None), run_dir)


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
    real = sweep_module.call_pipeline

    def flaky(pipe, params, trials, *controls_embeddings_units):
        if params["guidance"] == 3.0:
            raise RuntimeError("simulated failure")
        return real(pipe, params, trials, *controls_embeddings_units)

    monkeypatch.setattr(run_module, "call_pipeline", flaky)
    spec = small_spec(guidance=[3.0, 5.0])
    table = run_sweep(tiny_pipe, spec, tmp_path, log=lambda m: None)
    failed = table[table.state == "FAILED"]
    assert len(failed) == 4 and (failed.guidance == 3.0).all()
    assert failed.error.str.contains("simulated failure").all() and (failed.image_path == "").all()
    assert (table[table.state == "COMPLETE"].guidance == 5.0).all()
    monkeypatch.setattr(run_module, "call_pipeline", real)
    retried = run_sweep(tiny_pipe, spec, tmp_path, log=lambda m: None)
    assert (retried.state == "COMPLETE").all() and len(retried) == 8  # failed trials are redone, not duplicated


def memory_for(images: int, batches: list):
    """A call_pipeline that records each batch size and runs out of memory above `images`."""
    real = sweep_module.call_pipeline

    def limited(pipe, params, trials, *controls_embeddings_units):
        batches.append(len(trials))
        if len(trials) > images:
            raise torch.OutOfMemoryError("simulated")
        return real(pipe, params, trials, *controls_embeddings_units)

    return limited


def test_out_of_memory_halves_the_batch(tiny_pipe, tmp_path, monkeypatch):
    batches, messages = [], []
    monkeypatch.setattr(run_module, "call_pipeline", memory_for(1, batches))
    table = run_sweep(tiny_pipe, small_spec(conditioning_scale=[1.0], seed=[0, 1, 2, 3]), tmp_path, log=messages.append)
    assert (table.state == "COMPLETE").all() and len(table) == 4
    assert batches[0] == 4 and batches.count(1) == 4 and "out of memory" in messages[0]


def test_out_of_memory_lowers_the_batch_for_later_cells(tiny_pipe, tmp_path, monkeypatch):
    batches = []
    monkeypatch.setattr(run_module, "call_pipeline", memory_for(2, batches))
    table = run_sweep(tiny_pipe, small_spec(guidance=[3.0, 5.0]), tmp_path, log=lambda m: None)
    assert (table.state == "COMPLETE").all() and len(table) == 8
    assert batches == [4, 2, 2, 2, 2]  # the second cell starts at the size that fitted


@pytest.mark.parametrize("bad", [0, -2, 2.5, "big"])
def test_bad_max_batch_is_named(tiny_pipe, tmp_path, bad):
    with pytest.raises(ValueError, match=f"max_batch must be 'auto' or a whole number >= 1, got {bad!r}"):
        run_sweep(tiny_pipe, small_spec(), tmp_path, max_batch=bad, log=lambda m: None)


def test_writer_thread_keeps_row_order_and_images(tiny_pipe, tmp_path, monkeypatch):
    real, generated = sweep_module.call_pipeline, []

    def recording(pipe, params, trials, *controls_embeddings_units):
        generated.extend(t.trial_id for t in trials)
        return real(pipe, params, trials, *controls_embeddings_units)

    monkeypatch.setattr(run_module, "call_pipeline", recording)
    table = run_sweep(tiny_pipe, small_spec(guidance=[3.0, 5.0]), tmp_path, max_batch=1, log=lambda m: None)
    logged = [json.loads(line)["trial_id"] for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert logged == generated and len(logged) == 8  # one writer: rows land in generation order
    assert all(os.path.exists(p) for p in table.image_path)


def test_nan_images_are_flagged(tiny_pipe, tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "call_pipeline",
                        lambda pipe, params, trials, *a: np.full((len(trials), 32, 32, 3), np.nan, np.float32))
    table = run_sweep(tiny_pipe, small_spec(), tmp_path, log=lambda m: None)
    assert (table.flag == "nan").all()


def test_should_stop_ends_cleanly_and_resume_finishes(tiny_pipe, tmp_path):
    seen, polls, spec = [], [], small_spec(guidance=[3.0, 5.0])

    def stop_after_one_batch():
        polls.append(1)
        return len(polls) > 1

    table = run_sweep(tiny_pipe, spec, tmp_path, callback=lambda p: seen.append(p.done),
                      should_stop=stop_after_one_batch, log=lambda m: None)
    assert len(table) == 4 and seen == [4]  # one batch: both scales x both seeds of one guidance, written
    finished = run_sweep(tiny_pipe, spec, tmp_path, log=lambda m: None)
    assert len(finished) == 8 and finished.trial_id.is_unique


def test_callback_counts_progress(tiny_pipe, tmp_path):
    events = []
    run_sweep(tiny_pipe, small_spec(guidance=[3.0, 5.0]), tmp_path,
              callback=lambda p: events.append((p.done, p.total, len(p.rows))), log=lambda m: None, max_batch=3)
    assert events == [(3, 8, 3), (4, 8, 1), (7, 8, 3), (8, 8, 1)]  # cells of 4 in batches of at most 3


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


@pytest.mark.parametrize("family", ["tiny_pipe", "tiny_sdxl_pipe"])
def test_scales_and_seeds_share_one_batch_and_match_lone_pipeline_calls(family, request, square_control):
    """The per-sample scale hook gives what one diffusers call per image gives (CPU fp32: within 1e-4), SD1.5 and SDXL."""
    from workbench.spec import Trial
    tiny_pipe = request.getfixturevalue(family)
    scales, seeds = [0.0, 0.5, 1.0, 1.5], [0, 1]
    trials = [Trial(str(i), i, {"seed": seed, "conditioning_scale": scale})
              for i, (scale, seed) in enumerate((s, d) for s in scales for d in seeds)]
    params = {"steps": 3, "guidance": 5.0, "control_guidance_start": 0.0, "control_guidance_end": 1.0}
    embeddings = family_of(tiny_pipe).encode(tiny_pipe, CAPTION, "")
    batched = sweep_module.call_pipeline(tiny_pipe, params, trials, square_control, embeddings)
    for trial, image in zip(trials, batched):
        alone = tiny_pipe(CAPTION, image=square_control, num_inference_steps=3, guidance_scale=5.0,
                          controlnet_conditioning_scale=trial.params["conditioning_scale"], output_type="np",
                          generator=torch.Generator().manual_seed(trial.params["seed"])).images[0]
        assert np.abs(image - alone).max() < 1e-4, trial.params
    assert np.abs(batched[0] - batched[6]).mean() > 1e-3  # scale 0 and 1.5 really differ


def test_scale_hook_is_removed_after_the_call(tiny_pipe, square_control):
    from workbench.generation import per_sample_scales
    with per_sample_scales(tiny_pipe.controlnet, [0.0]):
        assert tiny_pipe.controlnet._forward_hooks
    assert not tiny_pipe.controlnet._forward_hooks


def test_changed_weights_redo_the_trials_and_return_only_the_new_rows(tmp_path):
    from workbench.families.sd15 import build_tiny_pipeline
    pipe = build_tiny_pipeline(seed=0)
    first = run_sweep(pipe, small_spec(), tmp_path, log=lambda m: None)
    with torch.no_grad():
        pipe.unet.conv_out.bias.add_(0.1)  # retrained weights: a new fingerprint
    second = run_sweep(pipe, small_spec(), tmp_path, log=lambda m: None)
    assert len(second) == len(first) and second.model_fingerprint.nunique() == 1
    assert set(second.trial_id).isdisjoint(first.trial_id)  # nothing reused from the old model
    assert len(load_results(tmp_path)) == 2 * len(first)  # the folder keeps both, as history


def test_only_the_first_batch_of_a_run_is_warm_up(tiny_pipe, tmp_path):
    """Its `seconds` include one-time costs; plot_metric(y="seconds") leaves those rows out."""
    from workbench import plot_metric
    table = run_sweep(tiny_pipe, small_spec(guidance=[3.0, 5.0]), tmp_path, log=lambda m: None)  # 2 cells
    first = table[table.guidance == table.guidance.iloc[0]]
    assert len(table) == 8 and table.warmup.sum() == 4 and first.warmup.all()
    table.loc[table.warmup, "seconds"] = 99.0
    ax = plot_metric(table, x="guidance", y="seconds", hue=None).axes[0]
    assert max(ax.lines[0].get_ydata()) < 99


def test_cli_progress_rate_counts_only_new_images(tmp_path, capsys):
    """A resumed sweep's bar starts at the finished count, so its first rates are not absurd."""
    from workbench.__main__ import main
    spec_path = tmp_path / "spec.yaml"
    small_spec(seed=[0, 1, 2], guidance=[3.0, 5.0]).save(spec_path)
    assert main(["sweep", str(spec_path), "--run-dir", str(tmp_path / "run")]) == 0
    log = tmp_path / "run" / "results.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:6]))  # 6 of 12 trials kept
    capsys.readouterr()
    assert main(["sweep", str(spec_path), "--run-dir", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert " 6/12 " in err and "12/12" in err, err
    rates = [float(r) for r in re.findall(r"([\d.]+)img/s", err)]
    assert rates and max(rates) < 1000, err  # was 125203.10img/s: finished trials counted at time zero

"""The engine's own denoising loop (`denoise.py`): shared prefixes computed once, images as the pipeline draws them."""

import numpy as np
import pandas as pd
import pytest

from tolerance import assert_images_close
from workbench import run_sweep
from workbench.denoise import branch_rows, branching, keep, shares_a_prefix, unit_factors
from workbench.units import Unit

CAPTION = "a red circle on a blue background"
UNIT = Unit("", "", "")  # the one unit of a spec without `controls`


def params(end=1.0, scale=1.0, schedule=None, start=0.0):
    return {"conditioning_scale": scale, "control_guidance_start": start, "control_guidance_end": end,
            "control_schedule": schedule}


def test_an_end_sweep_at_20_steps_computes_50_of_80_sample_steps():
    """The issue's count: canny.end 0.25, 0.5, 0.75, 1.0 follow one path for 5 steps, then split."""
    factors = np.stack([unit_factors(params(end=e), [UNIT], 20) for e in (0.25, 0.5, 0.75, 1.0)])
    plan = branching(branch_rows([0] * 4, factors))
    assert (plan.sample_steps, plan.unshared_steps) == (50, 80)
    assert plan.shared_steps == [5, 10, 15, 15]  # end 1.0 shares its first 15 steps with end 0.75
    assert shares_a_prefix([0] * 4, factors)


def test_later_starts_share_the_steps_before_the_earliest_start():
    """Before any start the ControlNet adds nothing to either trial: those steps are one path."""
    factors = np.stack([unit_factors(params(start=s), [UNIT], 20) for s in (0.25, 0.5)])
    plan = branching(branch_rows([0, 0], factors))
    assert (plan.sample_steps, plan.shared_steps) == (35, [5, 5])
    starts_at_zero = np.stack([unit_factors(params(start=s), [UNIT], 20) for s in (0.0, 0.5)])
    assert not shares_a_prefix([0, 0], starts_at_zero)  # one on, one off from the first step


def test_different_seeds_or_different_first_steps_share_nothing():
    factors = np.stack([unit_factors(params(end=e), [UNIT], 10) for e in (0.5, 1.0)])
    assert not shares_a_prefix([0, 1], factors)  # other noise from the first step
    late = np.stack([unit_factors(params(schedule=s), [UNIT], 10) for s in ("constant", "ramp@0.5")])
    assert not shares_a_prefix([0, 0], late)     # apart from step 0
    assert branching(branch_rows([0, 0], late)).sample_steps == 20
    assert keep(0, 10, 0.0, 0.3) == 1.0 and keep(3, 10, 0.0, 0.3) == 0.0 and keep(0, 10, 0.5, 1.0) == 0.0


def end_sweep(pipe, folder, scheduler, share, model="tiny", seeds=(0, 1)):
    spec = {"model": model, "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 6,
            "scheduler": scheduler, "seed": list(seeds), "control_guidance_end": [0.5, 1.0],
            "control_schedule": ["constant", "linear"]}
    return run_sweep(pipe, spec, folder, share_prefix=share, log=lambda m: None).sort_values("trial_id")


@pytest.mark.parametrize("scheduler", ["ddim", "euler_a", "dpm++2m", "pndm"])
def test_shared_prefixes_draw_the_images_of_separate_calls(tiny_pipe, tmp_path, scheduler):
    """Each scheduler's state branches right: DPM++ 2M's history, PNDM's extra step, Euler a's noise per step."""
    shared = end_sweep(tiny_pipe, tmp_path / "shared", scheduler, True)
    alone = end_sweep(tiny_pipe, tmp_path / "alone", scheduler, False)
    assert list(shared.trial_id) == list(alone.trial_id)  # the same trials: ids do not depend on sharing
    for a, b, tid in zip(shared.image_path, alone.image_path, shared.trial_id):
        assert_images_close(tmp_path / "shared" / a, tmp_path / "alone" / b, f"{scheduler} {tid}")
    assert (alone.shared_steps == 0).all() and (shared.shared_steps > 0).all()
    first = shared[(shared.control_guidance_end == 0.5) & (shared.control_schedule == "constant")]
    assert (first.shared_steps >= 1).all()


def test_sdxl_branches_with_its_extra_conditioning(tiny_sdxl_pipe, tmp_path):
    shared = end_sweep(tiny_sdxl_pipe, tmp_path / "shared", "euler", True, model="tiny-sdxl", seeds=(3,))
    alone = end_sweep(tiny_sdxl_pipe, tmp_path / "alone", "euler", False, model="tiny-sdxl", seeds=(3,))
    for a, b in zip(shared.image_path, alone.image_path):
        assert_images_close(tmp_path / "shared" / a, tmp_path / "alone" / b, "tiny-sdxl")
    assert shared.shared_steps.sum() > 0


@pytest.mark.parametrize("family", ["tiny_pipe", "tiny_sdxl_pipe"])
def test_guess_mode_follows_a_controlnet_that_pools_its_conditions(family, request, tmp_path):
    """A shuffle ControlNet's config pools its conditions; diffusers then runs guess mode (ControlNet on the conditional
    half only), and so does the engine's loop: sharing and not sharing draw the same images."""
    from workbench.denoise import guess_mode
    from workbench.families import unit_controlnets
    pipe = request.getfixturevalue(family)
    model = "tiny-sdxl" if family == "tiny_sdxl_pipe" else "tiny"
    net = unit_controlnets(pipe.controlnet)[0]
    assert not guess_mode(pipe)
    net.register_to_config(global_pool_conditions=True)
    try:
        assert guess_mode(pipe)
        shared = end_sweep(pipe, tmp_path / "shared", "ddim", True, model=model, seeds=(0,))
        alone = end_sweep(pipe, tmp_path / "alone", "ddim", False, model=model, seeds=(0,))
    finally:
        net.register_to_config(global_pool_conditions=False)
    assert shared.shared_steps.sum() > 0
    for a, b, tid in zip(shared.image_path, alone.image_path, shared.trial_id):
        assert_images_close(a, b, f"{model} pooled ControlNet, {tid}")


def test_two_units_each_with_its_own_end_branch(tmp_path):
    from workbench import load_pipeline
    pipe = load_pipeline("tiny", controlnet=["tiny", "tiny"], device="cpu")
    spec = {"model": "tiny", "prompt": CAPTION, "steps": 6, "seed": [0],
            "controls": {"edges": {"controlnet": "tiny", "image": f"toy:{CAPTION}"},
                         "other": {"controlnet": "tiny", "image": "toy:a green star on a white background"}},
            "edges.end": [0.5, 1.0], "other.scale": [0.0, 0.7]}
    shared = run_sweep(pipe, spec, tmp_path / "shared", log=lambda m: None).sort_values("trial_id")
    alone = run_sweep(pipe, spec, tmp_path / "alone", share_prefix=False, log=lambda m: None).sort_values("trial_id")
    for a, b in zip(shared.image_path, alone.image_path):
        assert_images_close(tmp_path / "shared" / a, tmp_path / "alone" / b, "two units")
    assert shared.shared_steps.sum() > 0


def test_shared_steps_is_bookkeeping_not_a_metric():
    from workbench.columns import metric_columns
    table = pd.DataFrame({"conditioning_scale": [1.0], "edge_f1": [0.5], "shared_steps": [5], "seconds": [0.1]})
    assert metric_columns(table) == ["edge_f1"]


def test_a_stopped_sharing_sweep_resumes_to_the_same_images(tiny_pipe, tmp_path):
    """Stopped after its first batch and run again: every trial once, as an uninterrupted run draws it."""
    spec = {"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 6, "seed": [0, 1],
            "control_guidance_end": [0.25, 0.5, 1.0]}
    asked = []  # asked before each batch: go on once, then stop
    stopped = run_sweep(tiny_pipe, spec, tmp_path / "run", max_batch=3, log=lambda m: None,
                        should_stop=lambda: asked.append(1) or len(asked) > 1)
    assert len(stopped) == 3
    resumed = run_sweep(tiny_pipe, spec, tmp_path / "run", max_batch=3, log=lambda m: None).sort_values("trial_id")
    whole = run_sweep(tiny_pipe, spec, tmp_path / "whole", max_batch=3, log=lambda m: None).sort_values("trial_id")
    assert len(resumed) == 6 and resumed.trial_id.is_unique and list(resumed.trial_id) == list(whole.trial_id)
    for a, b in zip(resumed.image_path, whole.image_path):
        assert_images_close(tmp_path / "run" / a, tmp_path / "whole" / b, "resumed")
    assert (resumed.shared_steps > 0).all()


def test_trials_that_share_a_prefix_stay_in_one_cell_so_one_process_draws_them():
    """accelerate splits the work by cells: ends and seeds of one cell stay on one process."""
    from workbench.spec import expand, spec_from_dict
    from workbench.sweep import batched_keys, batch_groups
    spec = spec_from_dict({"prompt": CAPTION, "seed": [0, 1], "control_guidance_end": [0.5, 1.0],
                           "conditioning_scale": [0.5, 1.0]})
    assert len(batch_groups(expand(spec, "fp"), batched_keys(spec.units, share_prefix=True))) == 1
    assert len(batch_groups(expand(spec, "fp"), batched_keys(spec.units))) == 2

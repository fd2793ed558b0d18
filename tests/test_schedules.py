"""ControlNet strength schedules as an axis: step@F is end F, others change the image, ids without one unchanged."""

import numpy as np
import pytest

from tolerance import assert_images_close
from workbench import run_sweep
from workbench.infotext import format_infotext, parse_infotext, read_png_parameters
from workbench.schedules import schedule_curve, schedule_factor
from workbench.spec import expand, spec_from_dict

CAPTION = "a red circle on a blue background"
BASE = {"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 6, "seed": [0, 1]}


def test_the_factors_of_each_schedule():
    assert [schedule_factor("step@0.5", i, 6) for i in range(6)] == [1, 1, 1, 0, 0, 0]
    assert [schedule_factor("ramp@0.5", i, 6) for i in range(6)] == [0, 0, 0, 1, 1, 1]
    assert schedule_curve("linear", 5) == [1.0, 0.75, 0.5, 0.25, 0.0]
    cosine = schedule_curve("cosine", 5)
    assert cosine[0] == 1 and cosine[-1] == pytest.approx(0) and cosine[1] > 0.75  # slow at first
    assert schedule_curve("constant", 3) == [1, 1, 1] == schedule_curve(None, 3)


@pytest.mark.parametrize("bad,match", [("linera", "did you mean 'linear'"), ("step@1.5", r"in \(0, 1\]"),
                                       ("step@0", r"in \(0, 1\]"), (3, "unknown schedule 3")])
def test_unknown_schedules_are_refused_before_anything_runs(bad, match):
    with pytest.raises(ValueError, match=match):
        spec_from_dict({**BASE, "control_schedule": [bad]})


def test_trial_ids_change_only_where_a_schedule_is_set():
    plain, constant = spec_from_dict(BASE), spec_from_dict({**BASE, "control_schedule": ["constant"]})
    assert "control_schedule" not in expand(plain)[0].params
    assert {t.trial_id for t in expand(plain)}.isdisjoint({t.trial_id for t in expand(constant)})


def test_step_at_a_half_draws_what_end_a_half_draws(tiny_pipe, tmp_path):
    end = run_sweep(tiny_pipe, {**BASE, "control_guidance_end": [0.5]}, tmp_path / "end", log=lambda m: None)
    step = run_sweep(tiny_pipe, {**BASE, "control_schedule": ["step@0.5"]}, tmp_path / "step", log=lambda m: None)
    for a, b in zip(end.sort_values("seed").image_path, step.sort_values("seed").image_path):
        assert_images_close(a, b, "step@0.5 against end 0.5")


def test_linear_and_cosine_change_the_image_and_share_a_batch(tiny_pipe, tmp_path):
    """On the tiny model control moves the image by about 4 grey levels; a schedule that fades keeps most of it
    (the early steps shape the image), and its images differ from the constant one's."""
    from PIL import Image
    table = run_sweep(tiny_pipe, {**BASE, "seed": [0], "conditioning_scale": [0.0, 1.0],
                                  "control_schedule": ["constant", "linear", "cosine"]}, tmp_path, log=lambda m: None)
    pixels = {(row.conditioning_scale, row.control_schedule): np.asarray(Image.open(row.image_path), float)
              for row in table.itertuples()}
    free, constant = pixels[(0.0, "constant")], pixels[(1.0, "constant")]
    control = np.abs(constant - free).mean()
    for name in ("linear", "cosine"):
        scheduled = pixels[(1.0, name)]
        assert 0.05 * control < np.abs(scheduled - constant).mean() < np.abs(scheduled - free).mean()
    assert np.abs(pixels[(1.0, "linear")] - pixels[(1.0, "cosine")]).mean() > 0
    assert read_png_parameters(table.image_path[table.control_schedule == "cosine"].iloc[0])["control_schedule"] == \
        "cosine"


def test_a_named_units_schedule_reads_back_from_infotext():
    params = {**expand(spec_from_dict({**BASE, "control_schedule": ["ramp@0.3"]}))[0].params}
    assert parse_infotext(format_infotext(params, 32, 32, "tiny"))["control_schedule"] == "ramp@0.3"


def test_a_control_unit_has_its_own_schedule_axis():
    units = {"model": "tiny", "prompt": CAPTION, "controls": {"canny": {"image": f"toy:{CAPTION}"}}}
    assert "canny.schedule" not in expand(spec_from_dict(units))[0].params  # old unit specs keep their ids
    scheduled = expand(spec_from_dict({**units, "canny.schedule": ["linear", "step@0.25"]}))
    assert [t.params["canny.schedule"] for t in scheduled] == ["linear", "step@0.25"]
    with pytest.raises(ValueError, match="did you mean 'cosine'"):
        spec_from_dict({**units, "canny.schedule": ["cosin"]})

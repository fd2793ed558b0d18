"""What A1111 users look for (issue #38, item 5): Clip skip as an axis, and the Karras samplers by either spelling."""

import numpy as np
import pytest
from PIL import Image

from workbench import generate, run_sweep
from workbench.models.control import control_for
from workbench.models.pipeline import set_scheduler
from workbench.spec import expand, spec_from_dict
from workbench.store.infotext import format_infotext, parse_infotext

from tolerance import assert_images_close

CAPTION = "a red circle on a blue background"
SPEC = {"prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 3, "seed": [0]}
FAMILIES = {"tiny_pipe": "tiny", "tiny_sdxl_pipe": "tiny-sdxl"}


def levels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.int16)


@pytest.mark.parametrize("family", FAMILIES)
def test_clip_skip_is_an_axis_in_a1111_numbering_and_a_sweep_equals_generate(family, request, tmp_path):
    pipe, model = request.getfixturevalue(family), FAMILIES[family]
    table = run_sweep(pipe, {**SPEC, "model": model, "clip_skip": [1, 2]}, tmp_path, log=lambda *_: None)
    image = {r.clip_skip: r.image_path for r in table.itertuples()}
    assert np.abs(levels(image[1]) - levels(image[2])).mean() > 0.5  # 2 reads the layer before the last
    for skip, path in image.items():
        [direct] = generate(pipe, CAPTION, control_for(f"toy:{CAPTION}", 32), 0, steps=3, clip_skip=skip)
        assert_images_close(path, direct, f"{model} clip_skip {skip}: sweep against generate")
    [plain] = generate(pipe, CAPTION, control_for(f"toy:{CAPTION}", 32), 0, steps=3)
    assert_images_close(image[1], plain, "Clip skip 1 is no skip")
    if model == "tiny-sdxl":  # diffusers' own clip_skip path works on SDXL (its SD1.5 one fails with transformers 5)
        import torch
        reference = pipe(CAPTION, image=control_for(f"toy:{CAPTION}", 32), num_inference_steps=3, guidance_scale=5.0,
                         clip_skip=1, generator=torch.Generator().manual_seed(0)).images[0]
        assert_images_close(image[2], reference, "A1111's Clip skip 2 is diffusers' clip_skip=1")
    text = Image.open(image[2]).info["parameters"]
    assert "Clip skip: 2" in text and parse_infotext(text)["clip_skip"] == 2
    assert parse_infotext(Image.open(image[1]).info["parameters"])["clip_skip"] == 1  # set, so written


def test_karras_samplers_have_spec_names_and_a1111_spellings_resolved_before_ids():
    spelled = expand(spec_from_dict({"model": "toy", "scheduler": ["DPM++ 2M Karras"]}), "f")[0]
    named = expand(spec_from_dict({"model": "toy", "scheduler": ["dpm++2m_karras"]}), "f")[0]
    assert spelled.trial_id == named.trial_id and spelled.params["scheduler"] == "dpm++2m_karras"
    for a1111, name in (("DPM++ SDE Karras", "dpm++sde_karras"), ("DPM++ 2M SDE Karras", "dpm++2m_sde_karras"),
                        ("LMS Karras", "lms_karras"), ("Euler a", "euler_a"), ("DPM++ 2M", "dpm++2m")):
        assert expand(spec_from_dict({"model": "toy", "scheduler": [a1111]}), "f")[0].params["scheduler"] == name
    with pytest.raises(ValueError, match=r"unknown scheduler 'DPM\+\+ 3M'.*A1111's names \(DDIM, DPM\+\+ 2M"):
        spec_from_dict({"model": "toy", "scheduler": ["DPM++ 3M"]})


def test_infotext_says_the_schedule_type_as_a1111_1_9_does_and_reads_both_forms():
    params = {"prompt": CAPTION, "steps": 20, "guidance": 7.0, "seed": 1, "conditioning_scale": 1.0,
              "control_guidance_start": 0.0, "control_guidance_end": 1.0, "canny_low": 100, "canny_high": 200}
    karras = format_infotext({**params, "scheduler": "dpm++2m_karras"}, 64, 64, "toy")
    plain = format_infotext({**params, "scheduler": "dpm++2m"}, 64, 64, "toy")
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in karras
    assert "Sampler: DPM++ 2M, Schedule type: Uniform" in plain  # A1111 1.9+ would otherwise read Karras
    assert "Schedule type" not in format_infotext({**params, "scheduler": "euler_a"}, 64, 64, "toy")
    assert parse_infotext(karras)["scheduler"] == "dpm++2m_karras" and parse_infotext(plain)["scheduler"] == "dpm++2m"
    legacy = "a cat\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 512x512"  # A1111 before 1.9
    assert parse_infotext(legacy)["scheduler"] == "dpm++2m_karras"


def test_karras_variants_run_and_switch_on_the_same_scheduler_class(tiny_pipe, tmp_path):
    set_scheduler(tiny_pipe, "DPM++ 2M Karras")
    assert type(tiny_pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert tiny_pipe.scheduler.config.use_karras_sigmas
    set_scheduler(tiny_pipe, "dpm++2m")  # the same class: its config must change back
    assert not tiny_pipe.scheduler.config.use_karras_sigmas
    table = run_sweep(tiny_pipe, {**SPEC, "model": "tiny", "scheduler": ["dpm++2m", "dpm++2m_karras",
                                                                         "dpm++sde_karras", "dpm++2m_sde_karras"]},
                      tmp_path, log=lambda *_: None)
    assert (table.state == "COMPLETE").all() and table.flag.eq("").all()
    image = {r.scheduler: levels(r.image_path) for r in table.itertuples()}
    assert np.abs(image["dpm++2m"] - image["dpm++2m_karras"]).mean() > 0.5  # other noise levels, another image

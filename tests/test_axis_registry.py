"""The axis registry (`workbench/spec/axes.py`): the old tables come from its records, trial ids stay, and a new axis
is one record plus one function (issue #37)."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from workbench import load_spec, run_sweep
from workbench.spec import AXES, FLOAT_AXES, INTEGER_AXES, OPTIONAL_AXES, UNIT_LEGACY_AXES, expand, spec_from_dict
from workbench.spec.axes import Axis, axis_record, register_axis, unregister_axis
from workbench.store.infotext import parse_infotext, read_png_parameters
from workbench.units import LEGACY_KEYS, OPTIONAL_UNIT_AXES, UNIT_AXES

RECORDED = json.loads((Path(__file__).parent / "data" / "recorded_trial_ids.json").read_text())
CAPTION = "a red circle on a blue background"


def test_the_tables_the_package_reads_are_what_they_always_were():
    assert AXES == ("prompt", "negative_prompt", "conditioning_scale", "control_guidance_start", "control_guidance_end",
                    "adapter", "lora_weight", "lora_blocks", "guidance", "steps", "scheduler", "clip_skip", "canny_low",
                    "canny_high", "control_schedule", "seed")  # clip_skip: added for A1111 users (issue #38), optional
    assert OPTIONAL_AXES == ("lora_blocks", "clip_skip", "control_schedule")
    assert UNIT_LEGACY_AXES == ("conditioning_scale", "control_guidance_start", "control_guidance_end", "canny_low",
                                "canny_high", "control_schedule")
    assert FLOAT_AXES == {"conditioning_scale": (0, float("inf")), "lora_weight": (-float("inf"), float("inf")),
                          "guidance": (0, float("inf")), "control_guidance_start": (0, 1), "control_guidance_end": (0, 1)}
    assert INTEGER_AXES == {"seed": 0, "steps": 1, "canny_low": 0, "canny_high": 0, "clip_skip": 1}
    assert list(UNIT_AXES.items()) == [("scale", 1.0), ("start", 0.0), ("end", 1.0), ("low", 100), ("high", 200),
                                       ("schedule", None)]
    assert OPTIONAL_UNIT_AXES == ("schedule",)
    assert LEGACY_KEYS == {"scale": "conditioning_scale", "start": "control_guidance_start",
                           "end": "control_guidance_end", "low": "canny_low", "high": "canny_high",
                           "image": "control_image", "schedule": "control_schedule"}
    assert axis_record("canny.scale") is axis_record("conditioning_scale") and axis_record("canny.scale").name == "scale"


@pytest.mark.parametrize("name", RECORDED["specs"])
def test_trial_ids_and_row_order_are_the_recorded_ones(name):
    """Ids made by the code before the registry: every parameter hashed as it was, in the same row order."""
    trials = expand(spec_from_dict(RECORDED["specs"][name]), "fingerprint0")
    assert [t.trial_id for t in trials] == RECORDED["ids"][name]
    assert list(trials[0].params) == RECORDED["rows"][name]


# ---- a stand-in axis: one record and one function ------------------------------------------------------------------

CALLS = []


def set_stand_in_scale(pipe, value):
    """The stand-in's apply function: scales the VAE's latent factor (any pipeline setting would do)."""
    CALLS.append(value)
    pipe.vae.register_to_config(scaling_factor=pipe._stand_in_base * value)


STAND_IN = Axis("stand_in_scale", "float", low=0.0, high=2.0, default=1.0, apply=f"{__name__}:set_stand_in_scale",
                infotext="Stand-in scale", searchable=True, panel="slider")


@pytest.fixture
def stand_in(tiny_pipe):
    register_axis(STAND_IN)
    tiny_pipe._stand_in_base = tiny_pipe.vae.config.scaling_factor
    CALLS.clear()
    yield
    unregister_axis(STAND_IN.name)
    tiny_pipe.vae.register_to_config(scaling_factor=tiny_pipe._stand_in_base)


def test_a_stand_in_axis_is_one_record_and_one_function_and_sweeps_end_to_end(tiny_pipe, stand_in, tmp_path):
    spec = {"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2, "seed": [0],
            "stand_in_scale": [0.5, 1.0]}
    table = run_sweep(tiny_pipe, spec, tmp_path / "run", log=lambda *_: None)
    assert sorted(CALLS) == [0.5, 1.0] and sorted(table.stand_in_scale) == [0.5, 1.0]
    images = {r.stand_in_scale: np.asarray(Image.open(r.image_path), np.int16) for r in table.itertuples()}
    assert np.abs(images[0.5] - images[1.0]).mean() > 1  # the value reached the pipeline
    text = Image.open(table.image_path[0]).info["parameters"]  # the PNG's A1111 text
    assert f"Stand-in scale: {table.stand_in_scale[0]}" in text
    assert parse_infotext(text)["stand_in_scale"] == read_png_parameters(table.image_path[0])["stand_in_scale"] \
        == table.stand_in_scale[0]
    assert yaml.safe_load((tmp_path / "run" / "spec.yaml").read_text())["stand_in_scale"] == [0.5, 1.0]
    assert load_spec(tmp_path / "run" / "spec.yaml").extra_axes == {"stand_in_scale": [0.5, 1.0]}
    # a spec that does not set it keeps its ids, registered or not
    assert [t.trial_id for t in expand(spec_from_dict(RECORDED["specs"]["demo"]), "fingerprint0")] == \
        RECORDED["ids"]["demo"]
    from workbench.studies.search import split_ranges
    _, ranges = split_ranges({**spec, "stand_in_scale": {"low": 0.5, "high": 1.5}})
    assert [(r.name, r.low, r.high) for r in ranges] == [("stand_in_scale", 0.5, 1.5)]
    with pytest.raises(ValueError, match=r"`stand_in_scale` must be >= 0.0, got -1"):
        spec_from_dict({**spec, "stand_in_scale": [-1.0]})


def test_the_panel_offers_a_registered_axis(tiny_pipe, stand_in, tmp_path):
    """Its record's `panel` gives it a box of values and a place in the grid's pickers; an empty box leaves it out."""
    from workbench.teaching.panel import SweepPanel
    panel = SweepPanel(tiny_pipe, run_root=tmp_path, model="tiny", prompt=CAPTION)
    assert "stand_in_scale" in panel.row_picker.options and "stand_in_scale" in panel.col_picker.options
    assert panel.spec().extra_axes == {}
    panel.axis_boxes["stand_in_scale"].value = "0.5, 1"
    assert panel.spec().extra_axes == {"stand_in_scale": [0.5, 1.0]}
    panel.axis_boxes["stand_in_scale"].value = "half"
    with pytest.raises(ValueError, match="stand_in_scale: 'half' is not a comma-separated list of numbers"):
        panel.spec()


def test_registering_refuses_a_name_that_exists_and_an_axis_without_its_function():
    with pytest.raises(ValueError, match="exists already"):
        register_axis(Axis("guidance", "float", apply="m:f"))
    with pytest.raises(ValueError, match="apply='module:function'"):
        register_axis(Axis("new_scale", "float"))
    with pytest.raises(ValueError, match="Unknown spec key: 'new_scale'"):
        spec_from_dict({"model": "toy", "new_scale": [1.0]})
    with pytest.raises(ValueError, match="once per pipeline call"):
        register_axis(Axis("new_scale", "float", batched="always", apply="m:f"))


def test_batching_and_the_order_of_switches_come_from_the_records():
    """The plan reads `Axis.batched` and `Axis.switch`: the keys and order it always had, for one unit and for two."""
    from workbench.engine.plan import batch_groups, batched_keys
    from workbench.spec.axes import SWITCHES
    one = spec_from_dict({"model": "toy", "prompt": CAPTION})
    assert set(batched_keys(one.units)) == {"seed", "conditioning_scale", "control_schedule"}
    assert set(batched_keys(one.units, share_prefix=True)) == {"seed", "conditioning_scale", "control_schedule",
                                                               "control_guidance_start", "control_guidance_end"}
    two = spec_from_dict({"model": "tiny", "prompt": CAPTION, "controls": {
        "a": {"image": f"toy:{CAPTION}"}, "b": {"image": f"toy:{CAPTION}", "preprocess": "none"}}})
    assert set(batched_keys(two.units)) == {"seed", "a.scale", "b.scale", "a.schedule", "b.schedule"}
    assert SWITCHES == ("adapter", "lora_weight", "lora_blocks", "scheduler")
    # groups: the sampler (a switch) changes least often, guidance (none) in spec order; seeds stay inside a group
    spec = spec_from_dict({"model": "toy", "prompt": CAPTION, "seed": [0, 1], "scheduler": ["euler", "ddim"],
                           "guidance": [7.0, 5.0]})
    order = [(g[0].params["scheduler"], g[0].params["guidance"], len(g))
             for g in batch_groups(expand(spec, "fp"), batched_keys(spec.units))]
    assert order == [("ddim", 7.0, 2), ("ddim", 5.0, 2), ("euler", 7.0, 2), ("euler", 5.0, 2)]

"""SweepSpec: round trips, expansion, stable trial ids, and a clear error for each bad input."""

import json

import pytest

from workbench.spec import count_trials, expand, load_spec, spec_from_dict


def test_yaml_and_json_round_trip(tmp_path):
    spec = spec_from_dict({"conditioning_scale": [0, 0.5, 1], "seed": [0, 1], "adapters": {"r4": "a.safetensors"},
                           "adapter": ["r4"], "lora_weight": [0, 1]})
    for name in ("spec.yaml", "spec.json"):
        spec.save(tmp_path / name)
        assert load_spec(tmp_path / name) == spec
    json.loads((tmp_path / "spec.json").read_text())


def test_single_values_become_one_element_lists():
    spec = spec_from_dict({"prompt": "a red circle", "seed": 3})
    assert spec.prompt == ["a red circle"] and spec.seed == [3] and spec.axes == {}


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match="Unknown spec key: 'conditioning_scal'.*did you mean 'conditioning_scale'"):
        spec_from_dict({"conditioning_scal": [1.0]})


def test_product_and_zip_expansion():
    spec = spec_from_dict({"conditioning_scale": [0, 1, 2], "seed": [0, 1]})
    trials = expand(spec)
    assert len(trials) == count_trials(spec) == 6
    assert {(t.params["conditioning_scale"], t.params["seed"]) for t in trials} == {(s, d) for s in (0, 1, 2) for d in (0, 1)}
    zipped = expand(spec_from_dict({"conditioning_scale": [0, 1], "seed": [5, 6], "mode": "zip"}))
    assert [(t.params["conditioning_scale"], t.params["seed"]) for t in zipped] == [(0.0, 5), (1.0, 6)]


def test_values_are_coerced_for_diffusers():
    [trial] = expand(spec_from_dict({"conditioning_scale": 1, "guidance": 7, "steps": 4}))
    assert type(trial.params["conditioning_scale"]) is float and type(trial.params["guidance"]) is float
    assert type(trial.params["steps"]) is int


def test_trial_ids_are_stable_and_sensitive():
    spec = spec_from_dict({"conditioning_scale": [0.5, 1.0], "seed": [0, 1]})
    first, again = expand(spec, "model-a"), expand(spec, "model-a")
    assert [t.trial_id for t in first] == [t.trial_id for t in again]
    assert len({t.trial_id for t in first}) == 4
    assert {t.trial_id for t in expand(spec, "model-b")}.isdisjoint(t.trial_id for t in first)
    other_control = spec_from_dict({"conditioning_scale": [0.5, 1.0], "seed": [0, 1], "control_image": "x.png"})
    assert {t.trial_id for t in expand(other_control, "model-a")}.isdisjoint(t.trial_id for t in first)


@pytest.mark.parametrize("data,match", [
    ({"seed": []}, "axis `seed` is empty"),
    ({"conditioning_scale": [-0.5]}, "`conditioning_scale` must be >= 0, got -0.5"),
    ({"conditioning_scale": ["strong"]}, "must be numbers, got 'strong'"),
    ({"adapters": {"r4": "a.safetensors"}, "adapter": ["r4"], "lora_weight": ["high"]}, "`lora_weight` values must be numbers"),
    ({"adapter": ["rank8"]}, "adapter 'rank8' is not loaded"),
    ({"lora_weight": [0.5]}, "needs an adapter"),
    ({"seed": [1.5]}, "`seed` values must be integers"),
    ({"seed": ["7"]}, "`seed` values must be integers"),
    ({"steps": [0]}, "`steps` values must be integers >= 1"),
    ({"scheduler": ["heun9"]}, "unknown scheduler 'heun9'"),
    ({"control_guidance_end": [1.5]}, r"must be in \[0, 1\]"),
    ({"mode": "grid"}, "`mode` must be one of"),
    ({"mode": "zip", "seed": [0, 1], "conditioning_scale": [0, 1, 2]}, "same length"),
    ({"seed": list(range(200)), "conditioning_scale": list(range(60))}, "12,000 trials, over max_trials=10,000"),
    ({"prompt": [3]}, "prompts must be strings"),
    ([1, 2], "must be a mapping"),
])
def test_bad_specs_are_refused_before_anything_runs(data, match):
    with pytest.raises(ValueError, match=match):
        spec_from_dict(data)


def test_max_trials_can_be_raised_explicitly():
    spec = spec_from_dict({"seed": list(range(200)), "conditioning_scale": list(range(60)), "max_trials": 20000})
    assert count_trials(spec) == 12000


def test_missing_and_broken_spec_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("seed: [1, 2\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")


def test_zip_pairs_only_what_it_zips():
    """start 0.8 meets end 0.5 in a product, but not when the axes are zipped."""
    spec = {"control_guidance_start": [0.0, 0.8], "control_guidance_end": [0.5, 1.0]}
    with pytest.raises(ValueError, match="`control_guidance_start` 0.8 with `control_guidance_end` 0.5"):
        spec_from_dict(spec)
    assert len(expand(spec_from_dict({**spec, "mode": "zip"}))) == 2


def test_duplicate_axis_values_warn_and_run_once():
    from workbench.spec import warn_duplicates
    spec = spec_from_dict({"seed": [0, 0, 1], "conditioning_scale": [1, 1.0]})
    with pytest.warns(UserWarning, match=r"axis `seed` repeats 0: .* 2 values, not 3"):
        warn_duplicates(spec)
    with pytest.warns(UserWarning, match=r"axis `conditioning_scale` repeats 1.0"):
        warn_duplicates(spec)
    assert len({t.trial_id for t in expand(spec)}) == 2


def test_did_you_mean_is_the_closest_key_every_time():
    for _ in range(3):
        with pytest.raises(ValueError, match="'seeed'.*did you mean 'seed'"):
            spec_from_dict({"seeed": [1]})
        with pytest.raises(ValueError, match="'guidence'.*did you mean 'guidance'"):
            spec_from_dict({"guidence": [1]})


def test_resolution_range_follows_the_model(tmp_path):
    from workbench.sizes import SizeRange, size_range
    assert (size_range("toy").smallest, size_range("toy").largest) == (16, 256)
    assert (size_range("sd15").smallest, size_range("sd15").largest) == (128, 2048)
    assert size_range("someone/sd-model").trained == 512  # hub ids count as SD1.x
    assert SizeRange(64).nearest(100000) == 256 and SizeRange(64).nearest(61) == 64
    spec_from_dict({"model": "toy", "resolution": 128})
    with pytest.raises(ValueError, match="`resolution` 4096 is outside what 'sd15' can make.*128 to 2048"):
        spec_from_dict({"model": "sd15", "resolution": 4096})
    with pytest.raises(ValueError, match="whole number of pixels"):
        spec_from_dict({"resolution": "64px"})


def test_numpy_axes_become_plain_values_and_save():
    import numpy as np
    spec = spec_from_dict({"conditioning_scale": np.arange(0, 1.01, 0.5), "seed": [np.int64(3)]})
    assert spec.conditioning_scale == [0.0, 0.5, 1.0] and type(spec.conditioning_scale[0]) is float
    assert spec.seed == [3] and type(spec.seed[0]) is int
    import yaml
    assert yaml.safe_load(yaml.safe_dump(spec.to_dict()))["conditioning_scale"] == [0.0, 0.5, 1.0]

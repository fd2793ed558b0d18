"""Control units: several ControlNets in one spec, each with its own image and axes."""

import numpy as np
import pytest
import torch
import yaml

from workbench import load_pipeline, load_results, run_sweep
from workbench.families import family_of
from workbench.infotext import format_infotext, parse_infotext, read_png_parameters
from workbench.spec import expand, load_spec, spec_from_dict

CAPTION = "a red circle on a blue background"
TWO_UNITS = f"""
model: tiny
prompt: ["{CAPTION}"]
steps: 2
controls:
  canny: {{controlnet: tiny, image: "toy:a red star on a blue background"}}
  mask:  {{controlnet: tiny, image: "toy-mask:{CAPTION}", preprocess: none}}
canny.scale: [0.0, 1.0]
mask.scale: [0.0, 1.0]
seed: [0, 1]
"""


@pytest.fixture(scope="module")
def two_unit_pipe():
    return load_pipeline("tiny", controlnet=["tiny", "tiny"], device="cpu")


def test_old_style_specs_keep_their_trial_ids():
    """Old run folders resume: a spec without `controls` expands to exactly the ids it always had."""
    ids = [t.trial_id for t in expand(spec_from_dict({"conditioning_scale": [0, 1], "seed": [0, 1]}), "fp")]
    assert ids == ["e4fc54fae2fc3ced", "129b7c830469fdd6", "863910ece0406a33", "a27a238ea23fc5cd"]


def test_units_spec_expands_and_round_trips(tmp_path):
    spec = spec_from_dict(yaml.safe_load(TWO_UNITS))
    assert spec.axes == {"seed": [0, 1], "canny.scale": [0.0, 1.0], "mask.scale": [0.0, 1.0]}
    trials = expand(spec)
    assert len(trials) == 8 and trials[0].params["mask.preprocess"] == "none"
    spec.save(tmp_path / "spec.yaml")
    assert load_spec(tmp_path / "spec.yaml") == spec
    assert "conditioning_scale" not in (tmp_path / "spec.yaml").read_text()


@pytest.mark.parametrize("change,match", [
    ({"conditioning_scale": [1.0]}, r"use `canny.scale`, `canny.start`, \.\.\. instead of \['conditioning_scale'\]"),
    ({"depth.scale": [1.0]}, "names control unit 'depth', which `controls` does not define"),
    ({"canny.start": [0.8], "canny.end": [0.5]}, "`canny.start` 0.8 with `canny.end` 0.5 cannot run"),
    ({"mask.scale": [-1]}, "`mask.scale` must be >= 0"),
    ({"controls": {"canny": {"image": "x.png", "scale": 1}}}, "unknown field 'scale'"),
    ({"controls": {"Canny Edges": {"image": "x.png"}}}, "unit name 'Canny Edges'"),
    ({"controls": {"canny": {"controlnet": "toy"}}}, "needs `image`"),
])
def test_bad_unit_specs_are_refused(change, match):
    data = {**yaml.safe_load(TWO_UNITS), **change}
    if "controls" in change:
        data = {k: v for k, v in data.items() if "." not in k}
    with pytest.raises(ValueError, match=match):
        spec_from_dict(data)


def test_two_unit_sweep_has_a_column_per_unit_parameter_and_metric(two_unit_pipe, tmp_path):
    table = run_sweep(two_unit_pipe, spec_from_dict(yaml.safe_load(TWO_UNITS)), tmp_path, log=lambda m: None)
    assert len(table) == 8 and (table.state == "COMPLETE").all()
    for column in ("canny.scale", "mask.scale", "canny.image", "canny.edge_f1", "canny.edge_precision",
                   "mask.mask_iou"):
        assert table[column].notna().all(), column
    assert table.image_sha256.nunique() == 8  # each unit's scale changes the image
    params = read_png_parameters(table.image_path.iloc[5])
    assert params["canny.scale"] == table["canny.scale"].iloc[5] and params["mask.scale"] == table["mask.scale"].iloc[5]
    assert params["mask.preprocess"] == "none" and params["mask.image"] == f"toy-mask:{CAPTION}"


def test_units_at_several_scales_in_one_batch_equal_separate_calls(two_unit_pipe):
    """The per-image hook scales each unit's residuals separately: as diffusers' own list of scales does."""
    import workbench.sweep as sweep_module
    from workbench.control import unit_controls
    from workbench.spec import Trial
    spec = spec_from_dict(yaml.safe_load(TWO_UNITS))
    pairs = [(0.0, 1.0, 0), (1.5, 0.0, 0), (0.5, 2.0, 1)]
    trials = [Trial(str(i), i, {**expand(spec)[0].params, "canny.scale": c, "mask.scale": m, "seed": seed})
              for i, (c, m, seed) in enumerate(pairs)]
    controls = unit_controls(spec.units, trials[0].params, 32, {})
    embeddings = family_of(two_unit_pipe).encode(two_unit_pipe, CAPTION, "")
    batched = sweep_module.call_pipeline(two_unit_pipe, trials[0].params, trials, controls, embeddings, spec.units)
    for (c, m, seed), image in zip(pairs, batched):
        alone = two_unit_pipe(CAPTION, image=controls, num_inference_steps=2, guidance_scale=5.0,
                              controlnet_conditioning_scale=[c, m], output_type="np",
                              generator=torch.Generator().manual_seed(seed)).images[0]
        assert np.abs(image - alone).max() < 1e-4, (c, m, seed)


def test_a_pipeline_with_the_wrong_number_of_controlnets_is_refused(tiny_pipe, tmp_path):
    with pytest.raises(ValueError, match=r"2 control unit\(s\) \(canny, mask\) but the pipeline has 1 ControlNet"):
        run_sweep(tiny_pipe, spec_from_dict(yaml.safe_load(TWO_UNITS)), tmp_path, log=lambda m: None)


def test_cli_runs_a_two_unit_spec(tmp_path, capsys):
    from workbench.__main__ import main
    (tmp_path / "spec.yaml").write_text(TWO_UNITS)
    assert main(["sweep", str(tmp_path / "spec.yaml"), "--run-dir", str(tmp_path / "run")]) == 0
    table = load_results(tmp_path / "run")
    assert len(table) == 8 and {"canny.scale", "mask.scale", "mask.mask_iou"} <= set(table.columns)
    assert "canny.edge_f1" in capsys.readouterr().out  # the summary shows each unit's metric


def test_infotext_writes_one_entry_per_unit_and_reads_it_back():
    [trial] = expand(spec_from_dict({**yaml.safe_load(TWO_UNITS), "canny.scale": 0.25, "mask.scale": 0.75,
                                     "seed": 3}))
    text = format_infotext(trial.params, 32, 32, "tiny", trial.trial_id)
    assert "ControlNet 0: " in text and "ControlNet 1: " in text and "Module: none" in text
    assert "Unit" not in text and r'\"unit\":\"mask\"' in text  # the name in the workbench's own field
    back = parse_infotext(text)
    assert {k: back[k] for k in trial.params if "." in k} == {k: v for k, v in trial.params.items() if "." in k}


def test_toy_star_edges_against_a_circle_mask_from_the_cli(tmp_path):
    """The lesson of notebook 04, checked: each unit wins where its scale is on and the other's is off."""
    from workbench.__main__ import main
    from workbench.toy.world import Scene, render_mask, render_scene
    render_scene(Scene("star", "red", "blue", cx=0.3, cy=0.5, size=0.25, angle=0), 64).save(tmp_path / "star.png")
    render_mask(Scene("circle", "red", "blue", cx=0.7, cy=0.5, size=0.25, angle=0), 64).convert("RGB").save(
        tmp_path / "circle.png")
    (tmp_path / "spec.yaml").write_text(f"""
model: toy
prompt: ["a red star on a blue background"]
controls:
  canny: {{controlnet: toy, image: "{tmp_path / 'star.png'}"}}
  mask:  {{controlnet: toy-mask, image: "{tmp_path / 'circle.png'}", preprocess: none}}
canny.scale: [0.0, 1.0]
mask.scale: [0.0, 1.0]
seed: [0, 1, 2]
""")
    assert main(["sweep", str(tmp_path / "spec.yaml"), "--run-dir", str(tmp_path / "run")]) == 0
    means = load_results(tmp_path / "run").groupby(["canny.scale", "mask.scale"])[["canny.edge_f1", "mask.mask_iou"]].mean()
    edges_only, mask_only, neither = means.loc[(1.0, 0.0)], means.loc[(0.0, 1.0)], means.loc[(0.0, 0.0)]
    assert edges_only["canny.edge_f1"] > neither["canny.edge_f1"] + 0.3, means  # the edges follow the star
    assert mask_only["mask.mask_iou"] > max(neither["mask.mask_iou"], edges_only["mask.mask_iou"]) + 0.3, means
    assert mask_only["mask.mask_iou"] > 0.6, means  # the shape fills the circle

"""Conditions beyond Canny: their records, the networks that draw them (small random configs, nothing downloaded),
the refusal when weights are missing, and the controllability metrics on inputs with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import workbench as wb
from workbench.metrics.condition_scores import aligned_rmse, mean_iou, pck
from workbench.models.conditions import (ade_palette, classes_of, depth_map, draw_condition, paint_classes,
                                         pose_keypoints, segment)
from workbench.models.control import control_for, fit_size
from workbench.spec.conditions import CONDITIONS, TINY_WEIGHTS, condition
from workbench.spec.metric_registry import REGISTRY

TINY = {name: TINY_WEIGHTS for name, record in CONDITIONS.items() if record.weights}
DRAWN = [name for name, record in CONDITIONS.items() if record.weights]


# ---- records ---------------------------------------------------------------------------------------------------------

def test_every_condition_has_a_metric_in_the_registry_and_a_table_row():
    table = wb.conditions()
    assert set(table.index) == set(CONDITIONS) >= {"canny", "depth", "openpose", "seg", "lineart", "softedge", "hed",
                                                  "pidi", "scribble", "none"}
    for record in CONDITIONS.values():
        assert record.metric in REGISTRY, record.name
    assert table.loc["depth", "weights"] == "depth-anything/Depth-Anything-V2-Small-hf"
    assert table.loc["depth", "licence"] == "apache-2.0"
    assert "lllyasviel/control_v11f1p_sd15_depth" in table.loc["depth", "controlnets_sd15"]
    assert table.loc["depth", "controlnets_sdxl"] == "diffusers/controlnet-depth-sdxl-1.0"
    assert table.loc["seg", "controlnets_sdxl"] == "-"  # none known: the table says so
    assert table.loc["canny", "axes"] == "low, high"


def test_an_unknown_condition_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown condition .*'dpeth'.*did you mean 'depth'"):
        condition("dpeth")
    spec = dict(model="tiny", prompt=["a"], seed=[0],
                controls={"d": {"controlnet": "tiny", "image": "sample:coffee", "preprocess": "sobel"}})
    with pytest.raises(ValueError, match=r"`preprocess` is one of \['canny', 'none', 'depth'"):
        wb.spec.spec_from_dict(spec)


# ---- drawing ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DRAWN)
def test_each_condition_draws_a_map_at_the_control_size_the_same_every_time(name):
    first = control_for("sample:coffee", 64, preprocess=name, models=TINY)
    again = control_for("sample:coffee", 64, preprocess=name, models=TINY)
    assert first.size == (96, 64) and first.mode == "RGB"  # coffee is 600 x 400: its aspect ratio is kept
    assert np.array_equal(np.asarray(first), np.asarray(again))


def test_depth_is_normalised_per_image_near_white():
    photo = Image.open(wb.spec.samples.sample("sample:astronaut").path).convert("RGB").resize((64, 64))
    depth = depth_map(photo, TINY_WEIGHTS)
    assert depth.shape == (64, 64) and depth.dtype == np.float32
    assert depth.min() == 0.0 and depth.max() == 1.0


def test_the_palette_is_ade20k_and_a_painted_map_reads_back_as_its_classes():
    palette = ade_palette()
    assert palette.shape == (150, 3)
    assert [tuple(palette[i]) for i in (0, 1, 2)] == [(120, 120, 120), (180, 120, 120), (6, 230, 230)]  # wall, building, sky
    # The published palette paints two classes alike (6 and 48, (140, 140, 140)): a map reads back as the first.
    assert len({tuple(c) for c in palette}) == 149 and tuple(palette[6]) == tuple(palette[48]) == (140, 140, 140)
    classes = np.random.default_rng(0).integers(0, 150, (16, 24))
    assert np.array_equal(classes_of(paint_classes(classes)), np.where(classes == 48, 6, classes))
    photo = Image.open(wb.spec.samples.sample("sample:chelsea").path).convert("RGB").resize((48, 32))
    assert segment(photo, TINY_WEIGHTS).shape == (32, 48)


def test_pose_keypoints_are_eighteen_points_or_nan():
    photo = Image.open(wb.spec.samples.sample("sample:astronaut").path).convert("RGB").resize((64, 64))
    points = pose_keypoints(photo, TINY_WEIGHTS)
    assert points.shape == (18, 2)
    found = ~np.isnan(points).any(1)
    assert ((points[found] >= 0) & (points[found] <= 64)).all()


def test_missing_weights_are_refused_before_anything_naming_the_model_its_size_and_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(wb.ModelNotAvailableError,
                       match=r"condition 'depth' draws with 'depth-anything/Depth-Anything-V2-Small-hf' \(99 MB.*"
                             r"hf download depth-anything/Depth-Anything-V2-Small-hf"):
        control_for("sample:coffee", 64, preprocess="depth")
    with pytest.raises(wb.ModelNotAvailableError, match=r"ControlNetHED.pth of 'lllyasviel/Annotators' \(29 MB\)"):
        control_for("sample:coffee", 64, preprocess="softedge")
    with pytest.raises(wb.ModelNotAvailableError, match=r"body_pose_model.pth of 'lllyasviel/Annotators'"):
        wb.make_control("sample:coffee", "openpose")  # a path the sweep never takes: the public call refuses too


def test_a_folder_of_weights_is_read_with_weights_only(tmp_path):
    import torch
    from workbench.models.conditions import aux_module, network
    hed = aux_module("hed").ControlNetHED_Apache2()
    torch.save(hed.state_dict(), tmp_path / "ControlNetHED.pth")
    drawn = draw_condition("hed", Image.new("RGB", (64, 64), (200, 30, 30)), {"hed": str(tmp_path)})
    assert drawn.size == (64, 64)
    assert network("hed", str(tmp_path)).netNetwork.block1.convs[0].weight.equal(hed.block1.convs[0].weight)


def test_the_aux_extra_declares_what_the_detectors_import():
    """The `aux` extra is what controlnet_aux's lineart, HED and PiDiNet modules need beyond the core (einops), and
    never timm or torchvision; the install here has it, so each module imports on its own."""
    import tomllib
    from pathlib import Path
    from workbench.models.conditions import aux_module
    extra = tomllib.loads(Path(__file__).parents[1].joinpath("pyproject.toml").read_text())["project"][
        "optional-dependencies"]["aux"]
    assert any(item.startswith("einops") for item in extra)
    assert not any(item.startswith(("timm", "torchvision", "controlnet_aux", "controlnet-aux")) for item in extra)
    for module in ("canny", "hed", "pidi", "lineart", "util", "open_pose.util", "open_pose.body"):
        aux_module(module)


# ---- sizes -----------------------------------------------------------------------------------------------------------

def test_sizes_keep_the_aspect_ratio_or_take_the_nearest_bucket():
    assert fit_size(600, 400, 64) == (96, 64)
    assert fit_size(451, 300, 512) == (768, 512)
    buckets = wb.families.sdxl.BUCKETS
    assert fit_size(600, 400, 1024, buckets) == (1216, 832)  # 3:2 -> SDXL's 1216 x 832
    assert fit_size(400, 600, 256, buckets) == (208, 304)    # the same bucket, turned, scaled to 256
    assert fit_size(512, 512, 256, buckets) == (256, 256)


# ---- metrics with known answers --------------------------------------------------------------------------------------

def test_depth_rmse_is_zero_for_the_control_and_for_any_scale_and_shift_of_it():
    control = np.random.default_rng(1).random((32, 48))
    assert aligned_rmse(control, control) == pytest.approx(0, abs=1e-12)
    assert aligned_rmse(control, 0.25 * control + 0.6) == pytest.approx(0, abs=1e-12)
    flat = np.full_like(control, 0.5)
    assert aligned_rmse(control, flat) == pytest.approx(control.std(), rel=1e-9)  # the best a flat map can do


def test_miou_is_one_for_the_control_and_drops_by_a_known_amount_for_one_swapped_region():
    control = np.zeros((8, 8), int)
    control[:, 4:] = 1
    assert mean_iou(control, control) == 1.0
    swapped = control.copy()
    swapped[:4, 4:] = 2  # a quarter of the image, half of class 1, becomes class 2
    # class 0: 1; class 1: 16/32 = 0.5; class 2: 0/16 = 0
    assert mean_iou(control, swapped) == pytest.approx((1 + 0.5 + 0) / 3)


def test_pck_counts_keypoints_within_the_threshold():
    control = np.array([[10.0, 10.0], [50.0, 50.0], [np.nan, np.nan], [30.0, 5.0]])
    assert pck(control, control, (100, 100)) == 1.0
    moved = control + [[3.0, 0.0], [6.0, 0.0], [0.0, 0.0], [0.0, 0.0]]  # within 5 px, beyond, missing, exact
    moved[3] = np.nan  # not found in the image
    assert pck(control, moved, (100, 100)) == pytest.approx(1 / 3)
    assert np.isnan(pck(np.full((18, 2), np.nan), control, (100, 100)))


def test_ssim_of_a_map_with_itself_is_one():
    from workbench.metrics.scorers import ssim
    edges = np.asarray(control_for("sample:camera", 64, preprocess="pidi", models=TINY).convert("L"), float) / 255
    assert ssim(edges, edges) == pytest.approx(1.0)


# ---- end to end: a sweep with a depth unit from a photo, on both tiny families ----------------------------------------

@pytest.mark.parametrize("family", ["tiny", "tiny-sdxl"])
def test_a_sweep_draws_depth_from_a_photo_and_scores_it(family, tiny_pipe, tiny_sdxl_pipe, tmp_path):
    pipe = tiny_pipe if family == "tiny" else tiny_sdxl_pipe
    spec = wb.SweepSpec(model=family, prompt=["a red star on a blue background"], seed=[0], steps=[2],
                        controls={"depth": {"controlnet": family, "image": "sample:coffee", "preprocess": "depth"}},
                        unit_axes={"depth.scale": [0.0, 1.0]}, metrics=["edge", "depth"],
                        metric_models={"depth": TINY_WEIGHTS})
    table = wb.run_sweep(pipe, spec, tmp_path / "run")
    assert (table.state == "COMPLETE").all() and len(table) == 2
    # coffee is 3:2: SD1.5's family keeps it (48 x 32); SDXL's takes its 1216 x 832 bucket, scaled to 32 (40 x 24)
    assert {(w, h) for w, h in zip(table.width, table.height)} == {(48, 32) if family == "tiny" else (40, 24)}
    assert table["depth.depth_rmse"].between(0, 1).all()
    first = wb.load_results(tmp_path / "run")
    again = wb.run_sweep(pipe, spec, tmp_path / "run")  # a resumed folder: nothing redrawn, the same ids
    assert list(again.trial_id) == list(first.trial_id)
    with pytest.raises(ValueError, match="`metric_models` names 'dino2'"):
        wb.spec.spec_from_dict({**spec.to_dict(), "metric_models": {"dino2": "x"}})


def test_a_folder_without_the_model_is_refused_naming_it(tmp_path):
    with pytest.raises(wb.ModelNotAvailableError, match=r"condition 'seg' draws with '.*empty'"):
        control_for("sample:coffee", 64, preprocess="seg", models={"seg": str(tmp_path / "empty")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(wb.ModelNotAvailableError, match=r"condition 'depth' draws with '.*empty'"):
        control_for("sample:coffee", 64, preprocess="depth", models={"depth": str(tmp_path / "empty")})

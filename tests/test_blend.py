"""Blending several adapters (`set_adapters`) and fusing them into the weights (`fuse_lora`)."""

import numpy as np
import pytest

from tolerance import assert_images_close
from workbench import blend_adapters, fused_lora, generate, load_lora, time_fusing
from workbench.blend import blend_label, blend_table
from workbench.lora import random_lora, unload_adapter

CAPTION = "a red circle on a blue background"


@pytest.fixture(scope="module")
def own_pipe():
    """A tiny pipeline of these tests' own: fuse then unfuse leaves weights equal only within rounding,
    and the shared `tiny_pipe`'s fingerprint (a hash of its tensors) must not change under other tests."""
    from workbench.families.sd15 import build_tiny_pipeline
    return build_tiny_pipeline(seed=0)


@pytest.fixture
def two_adapters(own_pipe, tmp_path):
    """Adapters "a" and "b" (random, different seeds) and "a_copy" (a's file again), unloaded afterwards."""
    a = random_lora(own_pipe, 2, tmp_path / "a.safetensors", seed=1, std=0.3)
    b = random_lora(own_pipe, 2, tmp_path / "b.safetensors", seed=2, std=0.3)
    names = {"a": a, "b": b, "a_copy": a}
    for name, path in names.items():
        load_lora(own_pipe, path, adapter_name=name)
    yield own_pipe
    for name in names:
        unload_adapter(own_pipe, name)


def draw(pipe, control):
    return generate(pipe, CAPTION, control, seeds=[0, 1], steps=2)


def test_a_blend_adds_the_updates(two_adapters, square_control):
    pipe = two_adapters
    blend_adapters(pipe, {"a": 1.0})
    a_alone = draw(pipe, square_control)
    blend_adapters(pipe, {"a": 0.5, "a_copy": 0.5})  # the same update twice at half weight
    halves = draw(pipe, square_control)
    blend_adapters(pipe, {"a": 1.0, "b": 0.0})
    b_at_zero = draw(pipe, square_control)
    blend_adapters(pipe, {"a": 1.0, "b": 1.0})
    both = draw(pipe, square_control)
    pipe.disable_lora()
    base = draw(pipe, square_control)
    for x, y, z in zip(a_alone, halves, b_at_zero):
        assert_images_close(x, y, "a at 1 against a and its copy at 0.5 each")
        assert_images_close(x, z, "b at weight 0 adds nothing")
    differs = lambda x, y: np.abs(np.asarray(x, float) - np.asarray(y, float)).max() > 10  # noqa: E731
    assert all(differs(x, y) for x, y in zip(both, a_alone)), "adding b at weight 1 changed nothing"
    assert all(differs(x, y) for x, y in zip(a_alone, base)), "adapter a changed nothing"


def test_fusing_draws_the_same_images_and_unfusing_restores_the_base(two_adapters, square_control):
    pipe = two_adapters
    pipe.disable_lora()
    base_before = draw(pipe, square_control)
    blend = {"a": 0.7, "b": 0.4}
    blend_adapters(pipe, blend)
    unfused = draw(pipe, square_control)
    with fused_lora(pipe, blend):
        fused = draw(pipe, square_control)
    pipe.disable_lora()
    base_after = draw(pipe, square_control)
    for x, y in zip(unfused, fused):
        assert_images_close(x, y, "fused against unfused")
    for x, y in zip(base_before, base_after):
        assert_images_close(x, y, "the base after fuse and unfuse")


def test_fused_lora_unfuses_after_an_error(two_adapters, square_control):
    pipe = two_adapters
    pipe.disable_lora()
    base_before = draw(pipe, square_control)
    with pytest.raises(RuntimeError, match="inside"):
        with fused_lora(pipe, {"a": 1.0}):
            raise RuntimeError("inside the block")
    pipe.disable_lora()
    for x, y in zip(base_before, draw(pipe, square_control)):
        assert_images_close(x, y, "the base after an interrupted fuse")


def test_time_fusing_reports_times_and_agreement(two_adapters, square_control):
    timing = time_fusing(two_adapters, {"a": 1.0, "b": 0.5}, CAPTION, square_control, seeds=[0], steps=2, repeats=1)
    assert timing.unfused_seconds > 0 and timing.fused_seconds > 0 and timing.speedup > 0
    assert timing.fused_difference <= 2 and timing.restored_difference <= 2


@pytest.mark.parametrize("weights,match", [({"nope": 1.0}, r"adapters \['nope'\] are not loaded; loaded: \["),
                                           ({}, "non-empty dict"), ({"a": "1"}, "finite number"),
                                           ({"a": float("nan")}, "finite number"), ({"a": True}, "finite number")])
def test_bad_blends_are_refused(two_adapters, weights, match):
    with pytest.raises(ValueError, match=match):
        blend_adapters(two_adapters, weights)


def test_blend_table_scores_with_the_models_profile_against_the_base(two_adapters, tmp_path):
    """On the tiny model no toy column appears: edge F1, and lora_effect against the base image, which is drawn."""
    blends = [{"a": 1.0}, {"a": 0.5, "b": 0.5}]
    table, images = blend_table(two_adapters, blends, [CAPTION], ["toy:" + CAPTION], steps=2, model="tiny",
                                out_dir=tmp_path)
    assert list(table.blend) == ["base", "a 1", "a 0.5 + b 0.5"]
    assert "style_strength" not in table and {"edge_f1", "lora_effect"} <= set(table.columns)
    assert table.lora_effect.iloc[0] == 0 and (table.lora_effect.iloc[1:] > 0).all()
    assert set(images) == {("base", 0), ("a 1", 0), ("a 0.5 + b 0.5", 0)}
    assert blend_label({"a": 0.0}) == "base"
    with pytest.raises(ValueError, match="1 captions but 2 control sources"):
        blend_table(two_adapters, blends, [CAPTION], ["toy:" + CAPTION] * 2, model="tiny")


def test_blend_table_on_the_toy_scores_style_and_colours():
    from workbench import load_pipeline
    table, images = blend_table(load_pipeline("toy", device="cpu"), [{}], [CAPTION], ["toy:" + CAPTION], steps=2)
    assert list(table.blend) == ["base"] and ("base", 0) in images
    assert {"colour_fidelity", "shape_iou", "edge_f1"} <= set(table.columns)

"""Lesson 00c's claims, on both tiny families: a fresh ControlNet adds exactly nothing, LoRA starts as a no-op and
merges to W + (alpha/r)·B@A, and the parameter counts agree with peft and the published configs."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig

from workbench.control import make_canny
from workbench.teaching import anatomy


@pytest.fixture(params=["tiny", "tiny-sdxl"])
def pipe(request, tiny_pipe, tiny_sdxl_pipe):
    return tiny_pipe if request.param == "tiny" else tiny_sdxl_pipe


def test_a_fresh_controlnet_adds_zero_and_draws_the_base_models_image_bit_for_bit(pipe):
    fresh = anatomy.fresh_controlnet(pipe)
    joins = anatomy.residual_joins(pipe, fresh)
    assert (joins["max |residual|"] == 0).all() and joins["joins UNet at"].iloc[-1] == "mid_block"
    assert len(joins) == len(fresh.controlnet_down_blocks) + 1
    control = make_canny("sample:astronaut", resolution=32)
    _, _, identical = anatomy.fresh_is_a_no_op(pipe, fresh, control, "a red star on a blue background", 2)
    assert identical
    # the loaded (woken) ControlNet is not a no-op: the check can fail
    loaded = anatomy.residual_joins(pipe, pipe.controlnet)
    assert (loaded["max |residual|"] > 0).any()


def test_controlnet_parts_add_up(pipe):
    fresh = anatomy.fresh_controlnet(pipe)
    parts = anatomy.controlnet_parts(fresh, pipe.unet)["parameters"]
    assert parts.iloc[0] + parts.iloc[1] + parts.iloc[2] == parts.iloc[3] == anatomy.parameter_count(fresh)


def test_lora_starts_as_a_no_op_and_merges_to_w_plus_scaled_ba(pipe):
    name, layer = anatomy.first_projection(pipe.unet)
    wrapped = anatomy.lora_layer(layer, r=4, alpha=8)
    weights = anatomy.lora_weights(wrapped)
    assert (weights["B"] == 0).all() and weights["scaling"] == 2.0
    x = torch.randn(3, layer.in_features)
    with torch.no_grad():
        assert torch.equal(wrapped(x), layer.float()(x))  # B = 0: the layer's own output
        torch.nn.init.normal_(wrapped.lora_B["default"].weight, std=0.05)
        weights = anatomy.lora_weights(wrapped)
        by_hand = weights["W"] + weights["scaling"] * weights["B"] @ weights["A"]
        assert torch.allclose(wrapped(x), torch.nn.functional.linear(x, by_hand, layer.bias), atol=1e-5)
        wrapped.merge()
    assert torch.allclose(wrapped.base_layer.weight, by_hand, atol=1e-6)
    assert anatomy.lora_weights(anatomy.lora_layer(layer, r=4, alpha=8, use_rslora=True))["scaling"] == 4.0


def test_peft_adds_r_times_d_in_plus_d_out(pipe):
    config = LoraConfig(r=3, lora_alpha=3, target_modules=list(anatomy.ATTENTION_PROJECTIONS))
    formula = sum(anatomy.lora_parameters(i, o, 3) for i, o in anatomy.projection_shapes(pipe.unet))
    assert anatomy.adapter_parameters(pipe.unet, config) == formula > 0


def test_the_published_sizes_come_from_the_configs_on_the_meta_device():
    sizes = anatomy.published_sizes()
    assert sizes.loc["sd15", "UNet (M)"] == pytest.approx(859.52, abs=0.01)
    assert sizes.loc["sd15", "ControlNet (M)"] == pytest.approx(361.28, abs=0.01)
    assert sizes.loc["sdxl", "UNet (M)"] == pytest.approx(2567.46, abs=0.01)
    table = anatomy.rank_table(anatomy.published_unets(), ranks=(1, 16))
    assert table.loc[16, "sd15: LoRA parameters"] == 16 * table.loc[1, "sd15: LoRA parameters"] == 3_188_736


def test_one_training_step_is_timed_for_both(pipe):
    table = anatomy.comparison_table(pipe, anatomy.fresh_controlnet(pipe), rank=2)
    assert (table.loc["training step (s)"] > 0).all()
    assert table.loc["parameters", "ControlNet"] > table.loc["parameters", "LoRA (rank 2)"]

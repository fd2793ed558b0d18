"""LoRA block weights (`lora_blocks`) and the toy's style and content columns."""

import math

import numpy as np
import pytest

from tolerance import assert_images_close
from workbench import load_pipeline, run_sweep, train_lora
from workbench.blocks import BLOCK_PRESETS, adapter_weights, block_label, block_scales
from workbench.infotext import format_infotext, parse_infotext
from workbench.spec import expand, spec_from_dict
from workbench.toy.data import make_dataset

CAPTION = "a red circle on a blue background"


def test_presets_and_dicts_become_scales():
    assert block_scales("up-only") == {"down": 0, "mid": 0, "up": 1, "text_encoder": 1}
    assert block_scales({"down": 0, "up": {"block_1": [1, 0.5]}}) == {"down": 0, "mid": 1, "up": {"block_1": [1, 0.5]},
                                                                       "text_encoder": 1}
    label = block_label({"mid": 0})
    assert label == '{"down":1,"mid":0,"text_encoder":1,"up":1}' and block_scales(label)["mid"] == 0
    assert block_label("all") == "all" and set(BLOCK_PRESETS) >= {"all", "down-only", "up-only", "mid-only",
                                                                    "no-text-encoder"}


@pytest.mark.parametrize("value,match", [("upp-only", "unknown `lora_blocks` preset 'upp-only'"),
                                         ({"middle": 1}, r"keys are \['down', 'mid', 'up', 'text_encoder'\]"),
                                         ({"up": {"b1": 1}}, "'block_<i>'"), ({"text_encoder": [1, 0]}, "a number"),
                                         ({"down": True}, "must be a number"), (3, "preset names or dicts")])
def test_bad_block_values_are_refused_before_anything_runs(value, match):
    with pytest.raises(ValueError, match=match):
        spec_from_dict({"adapters": {"a": "a.safetensors"}, "adapter": ["a"], "lora_blocks": [value]})


def test_blocks_need_an_adapter_and_leave_old_trial_ids_alone():
    with pytest.raises(ValueError, match="set `adapter`"):
        spec_from_dict({"lora_blocks": ["all"]})
    plain = expand(spec_from_dict({"seed": [0, 1]}))
    assert all("lora_blocks" not in t.params for t in plain)
    blocks = expand(spec_from_dict({"adapters": {"a": "a.safetensors"}, "adapter": ["a"], "lora_weight": [1.0],
                                    "lora_blocks": ["all", {"up": 0}]}))
    assert [t.params["lora_blocks"] for t in blocks] == ["all", '{"down":1,"mid":1,"text_encoder":1,"up":0}']


def test_infotext_writes_blocks_as_lbw_and_reads_them_back():
    params = {"prompt": CAPTION, "negative_prompt": "", "adapter": "style", "lora_weight": 0.8,
              "lora_blocks": "up-only", "steps": 2, "scheduler": "ddim", "guidance": 5.0, "seed": 3,
              "conditioning_scale": 1.0, "control_guidance_start": 0.0, "control_guidance_end": 1.0,
              "canny_low": 100, "canny_high": 200, "control_image": "toy:" + CAPTION}
    text = format_infotext(params, 32, 32, "tiny")
    # A1111's LoRA Block Weight extension has no "up-only": its weight list (BASE, IN01-IN08, MID, OUT03-OUT11)
    assert "<lora:style:0.8:lbw=1,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1>" in text.splitlines()[0]
    assert "Lora blocks: up-only" in text  # the exact value, in the workbench's own field
    back = parse_infotext(text)
    assert (back["adapter"], back["lora_weight"], back["lora_blocks"], back["prompt"]) == ("style", 0.8, "up-only",
                                                                                          CAPTION)


@pytest.mark.parametrize("model,size", [("tiny", 32), ("toy", 64)])
def test_block_presets_sweep_and_change_the_image(model, size, tmp_path):
    pipe = load_pipeline(model, device="cpu")
    path = train_lora(pipe, make_dataset(8, size=size, style="outlined"), rank=2, steps=2, lr=5e-2,
                      out_dir=tmp_path / "lora", adapter_name="style", load=False)
    spec = spec_from_dict({"model": model, "prompt": CAPTION + " in outlined style", "control_image": "toy:" + CAPTION,
                           "steps": 2, "adapters": {"style": str(path)}, "adapter": ["style"],
                           "lora_weight": [0.0, 1.0], "lora_blocks": ["all", "down-only", "up-only"]})
    table = run_sweep(pipe, spec, tmp_path / "run", log=lambda m: None).set_index(["lora_weight", "lora_blocks"])
    assert (table.state == "COMPLETE").all() and len(table) == 6
    base = table.loc[(0.0, "all"), "image_path"]
    for blocks in ("down-only", "up-only"):
        assert_images_close(table.loc[(0.0, blocks), "image_path"], base)   # weight 0 is the base, whatever blocks
    pixels = {b: np.asarray(__import__("PIL.Image").Image.open(table.loc[(1.0, b), "image_path"]), int)
              for b in ("all", "down-only", "up-only")}
    assert np.abs(pixels["down-only"] - pixels["all"]).max() > 0 and np.abs(pixels["up-only"] - pixels["all"]).max() > 0
    plain = run_sweep(pipe, spec_from_dict({**spec.to_dict(), "lora_weight": [1.0], "lora_blocks": [None]}),
                      tmp_path / "plain", log=lambda m: None)
    assert_images_close(plain.image_path.iloc[0], table.loc[(1.0, "all"), "image_path"])  # "all" = no blocks


def test_text_encoder_scale_reaches_only_components_the_adapter_has(tiny_pipe, tmp_path):
    train_lora(tiny_pipe, make_dataset(4, size=32), rank=2, steps=1, out_dir=tmp_path, adapter_name="unet-only")
    try:
        weights = adapter_weights(tiny_pipe, "unet-only", 0.5, "up-only")
        assert weights == {"unet": {"down": 0.0, "mid": 0.0, "up": 0.5}}  # no text-encoder layers to weigh
    finally:
        from workbench.lora import unload_adapter
        unload_adapter(tiny_pipe, "unet-only")
        assert not any("base_layer" in n for n, _ in tiny_pipe.unet.named_parameters())  # the shared pipe is plain


def test_scene_scores_read_a_drawn_scene_as_styled_and_faithful():
    from workbench.toy.scores import scene_scores
    from workbench.toy.world import render_scene, scene_from_caption
    drawn = render_scene(scene_from_caption(CAPTION + " in outlined style"), 64)
    scores = scene_scores(drawn, CAPTION + " in outlined style", "toy:" + CAPTION)
    assert scores["style_strength"] > 0.7 and scores["colour_fidelity"] == 1.0 and scores["shape_iou"] > 0.8
    plain = scene_scores(render_scene(scene_from_caption(CAPTION), 64), CAPTION + " in outlined style", "toy:" + CAPTION)
    assert plain["style_strength"] < 0.2 and plain["colour_fidelity"] == 1.0
    wrong = scene_scores(drawn, "a green circle on a blue background", "toy:" + CAPTION)
    assert wrong["colour_fidelity"] == 0.0 and math.isnan(wrong["style_strength"])  # no style asked for
    assert scene_scores(drawn, "a cat", "toy:" + CAPTION) == {} and scene_scores(drawn, CAPTION, "photo.png") == {}


def test_toy_rows_get_style_and_content_columns(tmp_path):
    pipe = load_pipeline("toy", device="cpu")
    spec = spec_from_dict({"prompt": [CAPTION + " in outlined style"], "control_image": "toy:" + CAPTION,
                           "steps": 3, "seed": [0, 1]})
    table = run_sweep(pipe, spec, tmp_path, log=lambda m: None)
    for column in ("style_strength", "colour_fidelity", "shape_iou"):
        assert table[column].between(0, 1).all(), column

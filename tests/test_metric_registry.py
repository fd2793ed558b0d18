"""The metrics registry: names checked before anything runs, model metrics from the hub cache, clear errors."""

import math

import pytest

from hub_cache import write_snapshot
from workbench import ModelNotAvailableError, load_results, run_sweep
from workbench.metric_registry import CLIP_ID, DINO_ID, REGISTRY, metric_names
from workbench.spec import spec_from_dict

CAPTION = "a red circle on a blue background"


def spec(**more):
    return spec_from_dict({"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2,
                           "conditioning_scale": [0.0, 1.0], "seed": [0, 1], **more})


def test_names_are_checked_and_true_means_the_cheap_defaults():
    assert metric_names(True) == ["edge", "toy"] and metric_names(False) == []
    assert metric_names(["dino", "edge", "dino"]) == ["dino", "edge"]
    with pytest.raises(ValueError, match=r"unknown metric 'clip_scor' \(did you mean 'clip_score'\?\)"):
        spec(metrics=["edge", "clip_scor"])
    with pytest.raises(ValueError, match="unknown metric"):
        spec(metrics=[["edge"]])
    for metric in REGISTRY.values():
        assert metric.columns and metric.runs_on in ("writer", "after") and metric.needs and ":" in metric.scorer


@pytest.mark.parametrize("name,model", [("clip_score", CLIP_ID), ("clip_image", CLIP_ID), ("dino", DINO_ID)])
def test_a_missing_metric_model_is_one_clear_error_before_any_image(tiny_pipe, tmp_path, monkeypatch, name, model):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelNotAvailableError) as caught:
        run_sweep(tiny_pipe, spec(metrics=["edge", name]), tmp_path / "run", log=lambda m: None)
    message = str(caught.value)
    assert model in message and f"huggingface-cli download {model}" in message and "No image was made" in message
    assert not list((tmp_path / "run").glob("results*.jsonl"))


@pytest.fixture(scope="module")
def metric_cache(tmp_path_factory):
    """Tiny random CLIP and DINOv2 models saved under the real ids, in hub-cache layout."""
    from transformers import (BitImageProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor,
                              Dinov2Config, Dinov2Model)

    from workbench.families.builders import build_tokenizer
    from workbench.toy.world import caption_words
    root = tmp_path_factory.mktemp("metric-cache")
    tokenizer = build_tokenizer(caption_words(), max_length=16)
    clip = CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2), projection_dim=16))
    clip.save_pretrained(root / "clip", safe_serialization=True)
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                  tokenizer=tokenizer).save_pretrained(root / "clip")
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             image_size=32, patch_size=8)).save_pretrained(root / "dino", safe_serialization=True)
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(root / "dino")
    write_snapshot(root / "hf_home", CLIP_ID, root / "clip")
    write_snapshot(root / "hf_home", DINO_ID, root / "dino")
    return root / "hf_home" / "hub"


def test_model_metrics_score_every_row_against_its_reference(tiny_pipe, tmp_path, monkeypatch, metric_cache):
    monkeypatch.setenv("HF_HUB_CACHE", str(metric_cache))
    metrics = ["edge", "clip_score", "clip_image", "dino"]
    table = run_sweep(tiny_pipe, spec(metrics=metrics), tmp_path, log=lambda m: None)
    assert len(table) == 4 and table.clip_score.between(0, 100).all()
    reference = table[table.conditioning_scale == 0]  # scale 0 is each seed's reference: itself
    assert reference.clip_image.apply(lambda v: math.isclose(v, 1.0, abs_tol=1e-4)).all()
    assert reference.dino_distance.abs().max() < 1e-4
    controlled = table[table.conditioning_scale == 1]
    assert (controlled.dino_distance > 0).all() and (controlled.clip_image < 1).all()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    again = run_sweep(tiny_pipe, spec(metrics=metrics), tmp_path, log=lambda m: None)  # nothing left to score
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == lines
    assert again.dino_distance.tolist() == table.dino_distance.tolist()
    assert load_results(tmp_path).clip_score.notna().all()


def test_a_new_metric_is_one_record_and_the_sweep_dispatches_to_it(tiny_pipe, tmp_path, monkeypatch):
    """Nothing in the sweep names a metric: a record whose scorer is a dotted path is enough."""
    from workbench.metric_registry import Metric
    monkeypatch.setitem(REGISTRY, "brightness", Metric("brightness", ("brightness",), "nothing", "writer",
                                                       "sweep_helpers:mean_brightness"))
    table = run_sweep(tiny_pipe, spec(metrics=["brightness"]), tmp_path, log=lambda m: None)
    assert table.brightness.between(0, 1).all() and "edge_f1" not in table


def test_loading_a_table_opens_no_image(tiny_pipe, tmp_path, monkeypatch):
    """lora_effect is scored when the sweep ends and stored in metrics.jsonl; load_results only reads it back."""
    from PIL import Image

    from workbench.lora import random_lora
    adapter = random_lora(tiny_pipe, 2, tmp_path / "r2.safetensors", std=0.5)
    run_sweep(tiny_pipe, spec(adapters={"r2": str(adapter)}, adapter=["r2"], lora_weight=[0.0, 1.0], seed=[0],
                              conditioning_scale=[1.0]), tmp_path / "run", log=lambda m: None)
    stored = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert '"lora_effect"' in stored

    def refuse(*args, **kwargs):
        raise AssertionError("load_results opened an image")

    monkeypatch.setattr(Image, "open", refuse)
    table = load_results(tmp_path / "run")
    assert table.set_index("lora_weight").lora_effect[0.0] == 0 and table.set_index("lora_weight").lora_effect[1.0] > 0
    assert "lora_effect" not in load_results(tmp_path / "run", lora_effect=False)

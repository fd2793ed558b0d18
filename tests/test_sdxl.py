"""SDXL through the same code as SD1.5: load, detect, sweep, per-image scales, LoRA, clear errors."""

import pytest

from lora_files import TEXT_LAYERS, write_kohya

from workbench import ModelNotAvailableError, load_pipeline, run_sweep, train_lora
from workbench.families import family_of
from workbench.spec import spec_from_dict
from workbench.toy.data import make_dataset

CAPTION = "a red circle on a blue background"


def spec(**overrides):
    data = {"model": "tiny-sdxl", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2,
            "conditioning_scale": [0.0, 1.0], "seed": [0, 1]}
    return spec_from_dict({**data, **overrides})


def test_tiny_sdxl_preset_is_an_sdxl_pipeline():
    pipe = load_pipeline("tiny-sdxl", device="cpu")
    assert type(pipe).__name__ == "StableDiffusionXLControlNetPipeline" and family_of(pipe).NAME == "sdxl"
    assert pipe.unet.config.addition_embed_type == "text_time"


def test_an_sdxl_folder_loads_as_sdxl_not_as_sd15(tiny_sdxl_pipe, tmp_path):
    """Before the family layer, such a folder loaded silently as SD1.5, without its second text encoder."""
    tiny_sdxl_pipe.save_pretrained(tmp_path / "base", safe_serialization=True)
    tiny_sdxl_pipe.controlnet.save_pretrained(tmp_path / "controlnet", safe_serialization=True)
    pipe = load_pipeline(str(tmp_path / "base"), controlnet=str(tmp_path / "controlnet"), device="cpu")
    assert type(pipe).__name__ == "StableDiffusionXLControlNetPipeline"
    assert family_of(pipe).NAME == "sdxl" and pipe.unet.config.projection_class_embeddings_input_dim == 80


def test_scale_by_seed_sweep(tiny_sdxl_pipe, tmp_path):
    table = run_sweep(tiny_sdxl_pipe, spec(), tmp_path, log=lambda m: None)
    assert len(table) == 4 and (table.state == "COMPLETE").all() and table.image_sha256.nunique() == 4
    assert table.edge_f1.notna().all()


def test_lora_trains_loads_and_sweeps_by_weight(tiny_sdxl_pipe, tmp_path):
    from workbench.lora import lora_delta_spectrum, lora_summary
    path = train_lora(tiny_sdxl_pipe, make_dataset(8, size=32), rank=2, steps=3, out_dir=tmp_path,
                      adapter_name="xl2")
    assert lora_summary(tiny_sdxl_pipe).set_index("adapter").loc["xl2", "rank"] == 2
    assert lora_delta_spectrum(tiny_sdxl_pipe, "xl2").groupby("layer").size().max() == 2
    table = run_sweep(tiny_sdxl_pipe, spec(adapters={"xl2": str(path)}, adapter=["xl2"], lora_weight=[0.0, 1.0],
                                           conditioning_scale=[1.0], seed=[0]), tmp_path / "run", log=lambda m: None)
    effect = table.set_index("lora_weight").lora_effect
    assert (table.state == "COMPLETE").all() and effect[0.0] == 0 and effect[1.0] > 0


def test_an_sd15_lora_on_sdxl_gets_one_clear_error(tiny_pipe, tiny_sdxl_pipe, tmp_path):
    from workbench.lora import load_lora
    sd15_file = train_lora(tiny_pipe, make_dataset(4, size=32), rank=2, steps=1, out_dir=tmp_path, load=False)
    with pytest.raises(ValueError) as caught:
        load_lora(tiny_sdxl_pipe, sd15_file, "wrong-family")
    message = str(caught.value)
    assert "\n" not in message and "does not fit this base model" in message and "this pipeline is sdxl" in message


def kohya_sdxl_file(pipe, path, rank=2, alpha=1.0, text_layers=TEXT_LAYERS, seed=0):
    """A kohya SDXL LoRA as sd-scripts writes it (SGM UNet names, lora_te1/lora_te2), and the update it should add."""
    return write_kohya(pipe, path, rank=rank, alpha=alpha, text_layers=text_layers, seed=seed)


def test_kohya_sdxl_file_with_both_text_encoders_loads_every_layer_exactly(tiny_sdxl_pipe, tmp_path):
    import torch
    from workbench.lora import load_lora
    expected = kohya_sdxl_file(tiny_sdxl_pipe, tmp_path / "kohya_xl.safetensors")
    info = load_lora(tiny_sdxl_pipe, tmp_path / "kohya_xl.safetensors", "kohya-xl")
    try:
        assert info["format"] == "kohya" and info["layers"] == len(expected) and info["alphas"] == [1.0]
        for (component, name), update in expected.items():
            module = getattr(tiny_sdxl_pipe, component).get_submodule(name)
            loaded = module.lora_B["kohya-xl"].weight @ module.lora_A["kohya-xl"].weight * module.scaling["kohya-xl"]
            torch.testing.assert_close(loaded, update, rtol=1e-5, atol=1e-6, msg=f"{component} {name}")
    finally:
        tiny_sdxl_pipe.delete_adapters("kohya-xl")


def test_a_kohya_file_diffusers_would_half_load_is_refused(tiny_sdxl_pipe, tmp_path):
    """Text-encoder attention without out_proj: diffusers 0.42 skips those layers without a word."""
    from workbench.lora import load_lora, loaded_adapters
    kohya_sdxl_file(tiny_sdxl_pipe, tmp_path / "partial.safetensors", text_layers=("self_attn.q_proj", "mlp.fc1"))
    with pytest.raises(ValueError, match=r"loaded only \d+ of its \d+ layers.*without out_proj"):
        load_lora(tiny_sdxl_pipe, tmp_path / "partial.safetensors", "partial")
    assert "partial" not in loaded_adapters(tiny_sdxl_pipe)


def test_sdxl_preset_offline_names_the_model():
    with pytest.raises(ModelNotAvailableError, match="diffusers/controlnet-canny-sdxl-1.0"):
        load_pipeline("sdxl", device="cpu")


def test_sweep_panel_runs_on_sdxl(tiny_sdxl_pipe, tmp_path):
    from workbench.widgets import SweepPanel
    panel = SweepPanel(tiny_sdxl_pipe, run_root=tmp_path, model="tiny-sdxl", prompt=CAPTION)
    panel.steps.value, panel.seeds.value, panel.scale_count.value = 2, "0-1", 2
    panel.run_button.click()
    panel.wait(120)
    assert len(panel.table) == 4 and (panel.table.state == "COMPLETE").all()



def test_sdxl_hub_ids_are_checked_against_sdxl_sizes():
    """A family's hub ids carry its trained size: SDXL's base at 1024 px, not SD1.x's 512."""
    from workbench.families.sdxl import SDXL_ID
    from workbench.sizes import size_range
    from workbench.spec import spec_from_dict
    assert size_range(SDXL_ID).trained == 1024 and size_range("sdxl").largest == 4096
    assert spec_from_dict({"model": SDXL_ID, "resolution": 3072}).resolution == 3072  # past SD1.x's 2048
    with pytest.raises(ValueError, match="trained at 1024 px"):
        spec_from_dict({"model": SDXL_ID, "resolution": 128})

"""A LoRA made here, written in kohya's layout for A1111 and ComfyUI, loads through diffusers' kohya converter (the
reference reader) and draws the same image; and back (issue #40, item 6)."""

import pytest
from safetensors import safe_open

from workbench import convert_lora, generate
from workbench.lora import activate_lora, load_lora, random_lora, unload_adapter
from workbench.models.control import control_for

from tolerance import assert_images_close

CAPTION = "a red circle on a blue background"
FAMILIES = {"tiny_pipe": ("tiny", "sd_v1"), "tiny_sdxl_pipe": ("tiny-sdxl", "sdxl_base_v1-0")}


def drawn(pipe, adapter):
    activate_lora(pipe, adapter, 1.0)
    return generate(pipe, CAPTION, control_for(f"toy:{CAPTION}", 32), 0, steps=3)[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_an_adapter_in_kohya_layout_loads_through_diffusers_and_draws_the_same_image(family, request, tmp_path):
    pipe, (model, base_version) = request.getfixturevalue(family), FAMILIES[family]
    source = random_lora(pipe, 4, tmp_path / "ours.safetensors", seed=1, std=0.05)
    kohya = convert_lora(source, tmp_path / "kohya.safetensors", format="kohya", pipe=pipe)
    back = convert_lora(kohya, tmp_path / "back.safetensors", format="diffusers", pipe=pipe)
    names = ("ours", "kohya", "back")
    request.addfinalizer(lambda: [unload_adapter(pipe, name) for name in names])
    with safe_open(str(kohya), "pt") as f:
        keys, header = list(f.keys()), f.metadata()
    assert all(k.startswith("lora_unet_") for k in keys) and any(k.endswith(".alpha") for k in keys)
    assert (family == "tiny_sdxl_pipe") == any("_input_blocks_" in k or "_output_blocks_" in k for k in keys)
    assert header["ss_network_dim"] == "4" and header["ss_base_model_version"] == base_version
    infos = [load_lora(pipe, path, name) for path, name in zip((source, kohya, back), names)]
    assert infos[1]["format"] == "kohya" and infos[0]["layers"] == infos[1]["layers"] == infos[2]["layers"]
    ours = drawn(pipe, "ours")
    assert_images_close(drawn(pipe, "kohya"), ours, f"{model}: kohya export against the adapter itself")
    assert_images_close(drawn(pipe, "back"), ours, f"{model}: exported and converted back")
    activate_lora(pipe, None, 0.0)


def test_a_kohya_file_with_text_encoder_layers_goes_both_ways(tiny_sdxl_pipe, tmp_path, request):
    """A third party's kohya SDXL file (both text encoders, alpha keys) to diffusers and back to kohya."""
    from lora_files import write_kohya
    pipe = tiny_sdxl_pipe
    write_kohya(pipe, tmp_path / "theirs.safetensors", rank=2, alpha=1.0, text_std=0.3)
    ours = convert_lora(tmp_path / "theirs.safetensors", tmp_path / "ours.safetensors", format="diffusers", pipe=pipe)
    again = convert_lora(ours, tmp_path / "again.safetensors", format="kohya", pipe=pipe)
    names = ("theirs", "ours-te", "again")
    request.addfinalizer(lambda: [unload_adapter(pipe, name) for name in names])
    for path, name in zip((tmp_path / "theirs.safetensors", ours, again), names):
        load_lora(pipe, path, name)
    theirs = drawn(pipe, "theirs")
    for name in names[1:]:
        assert_images_close(drawn(pipe, name), theirs, f"{name} against the third party's file")
    activate_lora(pipe, None, 0.0)
    with pytest.raises(ValueError, match="needs the pipeline the LoRA is for"):
        convert_lora(tmp_path / "theirs.safetensors", tmp_path / "x.safetensors", format="diffusers")


def test_train_lora_saves_in_kohya_layout_with_its_training_record(tiny_pipe, tmp_path, request):
    from workbench.lora import read_lora_metadata, train_lora
    from workbench.toy.data import make_dataset
    data = make_dataset(4, seed=1, size=32, style="zebra")
    path = train_lora(tiny_pipe, data, rank=2, steps=2, lr=1e-2, batch_size=2, out_dir=tmp_path, format="kohya",
                      adapter_name="kohya-trained")
    request.addfinalizer(lambda: unload_adapter(tiny_pipe, "kohya-trained"))
    with safe_open(str(path), "pt") as f:
        keys, header = list(f.keys()), f.metadata()
    assert all(k.startswith("lora_unet_") for k in keys) and header["ss_network_dim"] == "2"
    assert read_lora_metadata(path)["steps"] == 2  # the training record survives the layout
    assert "kohya-trained" in tiny_pipe.get_list_adapters()["unet"]  # and it loaded, as the diffusers layout does

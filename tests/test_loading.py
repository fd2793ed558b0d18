"""load_pipeline: local round trip, presets, hub-id mapping and clear offline errors."""

import warnings

import numpy as np
import pytest
import torch

from workbench import ModelNotAvailableError, generate, load_pipeline, pick_dtype
from workbench.pipeline import SD15_CANNY_ID, SD15_ID, resolve_model


@pytest.fixture(scope="module")
def saved_tiny(tiny_pipe, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-pipeline")
    tiny_pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def test_save_and_load_round_trip(tiny_pipe, saved_tiny, square_control):
    loaded = load_pipeline(str(saved_tiny), device="cpu")
    # guidance given: a folder takes its family's defaults (SD1.5's 7.5), the bare test pipeline the toy's 5
    [a] = generate(tiny_pipe, "a red circle", square_control, 7, steps=2, guidance=5.0)
    [b] = generate(loaded, "a red circle", square_control, 7, steps=2, guidance=5.0)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert loaded.safety_checker is None


def test_separate_controlnet_folder(saved_tiny):
    pipe = load_pipeline(str(saved_tiny), controlnet=str(saved_tiny / "controlnet"), device="cpu")
    assert pipe.controlnet.config.conditioning_embedding_out_channels == [16, 32]


def test_tiny_preset_builds_offline():
    pipe = load_pipeline("tiny", device="cpu")
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 32


def test_tiny_does_not_pair_with_other_models(saved_tiny):
    with pytest.raises(ValueError, match="tiny"):
        load_pipeline("tiny", controlnet=str(saved_tiny / "controlnet"))


def test_removed_runwayml_id_maps_to_the_mirror():
    with pytest.warns(UserWarning, match="removed"):
        source = resolve_model("runwayml/stable-diffusion-v1-5")
    assert source.kind == "hub" and source.location == SD15_ID


def test_sd15_preset_resolves_to_the_real_ids():
    assert resolve_model("sd15").location == SD15_ID
    assert resolve_model("sd15", "controlnet").location == SD15_CANNY_ID


def test_uncached_hub_model_gives_one_clear_error():
    with pytest.raises(ModelNotAvailableError) as caught:
        load_pipeline("sd15", device="cpu")
    message = str(caught.value)
    assert SD15_CANNY_ID in message  # the ControlNet is loaded first
    assert "huggingface-cli download" in message and "HF_HOME" in message and "load_pipeline('toy')" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no deep traceback


def test_uncached_base_gives_the_base_id(saved_tiny):
    with pytest.raises(ModelNotAvailableError, match="someone/unknown-model"):
        load_pipeline("someone/unknown-model", controlnet=str(saved_tiny / "controlnet"), device="cpu")


@pytest.mark.parametrize("name,error,match", [
    ("not a model id", ValueError, "owner/name"),
    ("", ValueError, "hub id"),
    (None, ValueError, "hub id"),
    ("./no/such/folder", FileNotFoundError, "does not exist"),
])
def test_bad_names(name, error, match):
    with pytest.raises(error, match=match):
        load_pipeline(name)


def test_folder_that_is_not_a_pipeline(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        load_pipeline(str(tmp_path))


def test_damaged_weight_file_is_named(saved_tiny, tmp_path):
    import shutil
    copy = tmp_path / "damaged"
    shutil.copytree(saved_tiny, copy)
    weights = next((copy / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match=f"{weights.name}.*damaged"):
        load_pipeline(str(copy))


def test_half_precision_on_cpu_falls_back_to_fp32():
    with pytest.warns(UserWarning, match="float32"):
        assert pick_dtype("fp16", torch.device("cpu")) == torch.float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pick_dtype("auto", torch.device("cpu")) == torch.float32


def test_bad_dtype_and_device():
    with pytest.raises(ValueError, match="dtype"):
        pick_dtype("fp8", torch.device("cpu"))
    with pytest.raises(ValueError, match="device"):
        load_pipeline("tiny", device="gpu0")


def test_missing_weight_file_is_named(saved_tiny, tmp_path):
    import shutil
    copy = tmp_path / "incomplete"
    shutil.copytree(saved_tiny, copy)
    for weights in (copy / "vae").glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(FileNotFoundError, match=r"vae has a config.json but no weight file"):
        load_pipeline(str(copy))

"""Single-file checkpoints (issue #38, item 1): A1111-layout files written from the tiny models, loaded offline.

The reference reader is diffusers' `from_single_file`; `single_files.py` writes the layout the other way round.
A file must give back every tensor of the model it was written from, and draw the same image as its folder.
"""

import hashlib
import json

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.families import checkpoint_family, family_for, preset_family, spec_defaults
from workbench.models.control import control_for
from workbench.models.pipeline import set_scheduler
from workbench.models.single_file import write_bundled_config

from single_files import a1111_state, ldm_controlnet, save_single_file, tiny_hint_controlnet

CAPTION = "a red circle on a blue background"
PARTS = ("unet", "vae", "text_encoder", "text_encoder_2", "controlnet")


@pytest.fixture(scope="module", params=["tiny", "tiny-sdxl"])
def files(request, tmp_path_factory):
    """(preset, its pipeline, its diffusers folder, an A1111 file of it, a single-file ControlNet, that ControlNet's
    pipeline folder). The ControlNet file's hint encoder has the published depth, which the reader expects (it
    downsamples 8x, the tiny latents 2x, so it is read back but draws nothing at 32 px)."""
    preset = request.param
    pipe = preset_family(preset).build_tiny()
    folder = tmp_path_factory.mktemp(preset)
    pipe.save_pretrained(folder / "diffusers")
    model = save_single_file(a1111_state(pipe), folder / f"{preset}-model.safetensors", torch.float32)
    hint_net = tiny_hint_controlnet(pipe)
    pipe.controlnet, own_net = hint_net, pipe.controlnet
    pipe.save_pretrained(folder / "hint")  # the configs that ControlNet file loads with
    pipe.controlnet = own_net
    # SD1.x ControlNets come in lllyasviel's layout; SDXL's are published in diffusers' (the reader has no other)
    net_state = ldm_controlnet(hint_net) if preset == "tiny" else hint_net.state_dict()
    net = save_single_file(net_state, folder / f"{preset}-canny.safetensors", torch.float32)
    return preset, pipe, folder / "diffusers", model, net, hint_net, folder / "hint"


def load_file(files, **kwargs):
    """The tiny model from its A1111 file, with its own ControlNet (a folder)."""
    _, _, folder, model, *_ = files
    return wb.load_pipeline(str(model), controlnet=str(folder / "controlnet"), config=str(folder), device="cpu",
                            **kwargs)


def test_a_single_file_gives_back_every_tensor_of_its_model(files):
    preset, pipe, _, model, net, hint_net, hint_folder = files
    loaded = wb.load_pipeline(str(model), controlnet=str(net), config=str(hint_folder), device="cpu")
    assert type(loaded) is type(pipe)
    for part in PARTS:
        if getattr(pipe, part, None) is None:
            continue
        want = (hint_net if part == "controlnet" else getattr(pipe, part)).state_dict()
        got = getattr(loaded, part).state_dict()
        assert want.keys() == got.keys(), part
        assert all(torch.equal(want[k], got[k]) for k in want), part
    assert checkpoint_family(model) is preset_family(preset)  # by the file's keys, not its name
    report = wb.inspect_file(model)
    assert report["kind"] == "checkpoint" and report["complete"] and report["family"] == preset_family(preset).NAME


def test_a_single_file_draws_the_image_its_folder_draws(files):
    folder = files[2]
    control = control_for(f"toy:{CAPTION}", 32)
    from_file = wb.generate(load_file(files), CAPTION, control, [3], steps=3)[0]
    from_folder = wb.generate(wb.load_pipeline(str(folder), device="cpu"), CAPTION, control, [3], steps=3)[0]
    assert np.array_equal(np.asarray(from_file), np.asarray(from_folder))  # same weights, configs, process: same pixels


def test_rows_name_the_model_by_file_name_hash_and_prediction_type(files, tmp_path):
    preset, model = files[0], files[3]
    assert family_for(str(model)) is preset_family(preset)  # a spec's model resolves by the file's keys
    assert spec_defaults(str(model)) == spec_defaults(preset_family(preset).DEFAULT_PROFILE)
    if preset == "tiny-sdxl":  # a spec checks sizes by the family (256-4096 px for SDXL), the tiny draws 8-128
        return
    spec = {"model": str(model), "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2, "seed": [0],
            "guidance": [5.0], "scheduler": "ddim",
            "resolution": 128}  # the smallest size a real SD1.x file makes, the largest the tiny one does
    rows = wb.run_sweep(load_file(files), spec, tmp_path / "run", log=lambda *_: None)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()[:10]
    assert rows[["model_file", "model_hash", "prediction_type"]].values.tolist() == [[model.name, digest, "epsilon"]]
    from PIL import Image
    from a1111_reference import parse_generation_parameters
    a1111 = parse_generation_parameters(Image.open(tmp_path / "run" / rows.image_path[0]).info["parameters"])
    assert (a1111["Model hash"], a1111["Model"]) == (digest, model.stem)  # what A1111 switches checkpoints by
    page = wb.write_report(tmp_path / "run").read_text()
    assert f"Model file {model.name} (A1111 hash {digest}, predicts epsilon)" in page  # the report names it too


def test_prediction_type_is_said_by_the_caller_and_changes_the_image(files):
    control = control_for(f"toy:{CAPTION}", 32)
    v_pipe = load_file(files, prediction_type="v_prediction")
    assert v_pipe.scheduler.config.prediction_type == "v_prediction"
    set_scheduler(v_pipe, "euler")  # a sampler swap keeps it
    assert v_pipe.scheduler.config.prediction_type == "v_prediction"
    eps = wb.generate(load_file(files), CAPTION, control, [0], steps=2, schedule=None)[0]
    v = wb.generate(v_pipe, CAPTION, control, [0], steps=2)[0]
    assert not np.array_equal(np.asarray(eps), np.asarray(v))
    with pytest.raises(ValueError, match="prediction_type 'sample'"):
        load_file(files, prediction_type="sample")


def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text and len(text) < 320, text
    return text


def test_files_that_are_no_base_checkpoint_are_refused_saying_what_they_are(files, tmp_path):
    from safetensors.torch import save_file
    _, _, folder, model, net, _, hint_folder = files
    folder = hint_folder
    tensor = torch.zeros(2, 2)
    cases = {"sd2.safetensors": ({"cond_stage_model.model.ln_final.weight": tensor}, "Stable Diffusion 2.x"),
             "lora.safetensors": ({"lora_unet_x.lora_down.weight": tensor}, "a LoRA"),
             "other.safetensors": ({"weight": tensor}, "not a Stable Diffusion checkpoint")}
    for name, (state, said) in cases.items():
        save_file(state, str(tmp_path / name))
        with pytest.raises(ValueError) as err:
            wb.load_pipeline(str(tmp_path / name), controlnet=str(net), config=str(folder), device="cpu")
        assert said in one_line(err) and name in str(err.value)
    with pytest.raises(ValueError) as err:  # a ControlNet given as the base
        wb.load_pipeline(str(net), controlnet=str(net), config=str(folder), device="cpu")
    assert "a ControlNet: pass it as controlnet=" in one_line(err)
    with pytest.raises(ValueError) as err:  # a base checkpoint given as the ControlNet
        wb.load_pipeline(str(model), controlnet=str(model), config=str(folder), device="cpu")
    assert "no ControlNet file" in one_line(err)
    (tmp_path / "model.ckpt").write_bytes(b"not even a pickle")
    with pytest.raises(ValueError) as err:
        wb.load_pipeline(str(tmp_path / "model.ckpt"), controlnet=str(net), config=str(folder), device="cpu")
    assert "allow_pickle=True" in one_line(err)
    (tmp_path / "text.safetensors").write_text("hello")
    with pytest.raises(ValueError) as err:
        wb.load_pipeline(str(tmp_path / "text.safetensors"), controlnet=str(net), config=str(folder), device="cpu")
    assert "not a readable safetensors file" in one_line(err)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FileNotFoundError, match="neither a folder nor a single-file checkpoint"):
        wb.load_pipeline(str(tmp_path / "notes.txt"), device="cpu")


def test_an_sdxl_controlnet_in_the_original_layout_is_refused_not_half_loaded(tmp_path):
    pipe = preset_family("tiny-sdxl").build_tiny()
    path = save_single_file(ldm_controlnet(tiny_hint_controlnet(pipe)), tmp_path / "xl-ldm.safetensors")
    with pytest.raises(ValueError) as err:
        wb.load_pipeline(str(path), controlnet=str(path), device="cpu")  # as the base: it is a ControlNet
    assert "ControlNet" in one_line(err)
    from workbench.models.single_file import load_controlnet_file
    with pytest.raises(ValueError) as err:
        load_controlnet_file(path, torch.float32)
    assert "diffusers-layout file" in one_line(err)


@pytest.mark.parametrize("family_name", ["sd15", "sdxl"])
def test_the_bundled_configs_describe_the_published_models_offline(family_name, tmp_path):
    """What a real SD1.5 or SDXL file loads into without `config=`: CLIP's real tokenizer, published shapes."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTokenizer
    family = preset_family(family_name)
    folder = write_bundled_config(tmp_path, family, "v_prediction")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]  # CLIP's own ids
    if family_name == "sdxl":
        assert CLIPTokenizer.from_pretrained(folder / "tokenizer_2").pad_token == "!"
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert config["prediction_type"] == "v_prediction"
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
    millions = sum(p.numel() for p in unet.parameters()) / 1e6
    assert round(millions) == {"sd15": 860, "sdxl": 2567}[family_name]  # the published UNets' sizes


@pytest.mark.slow
def test_the_full_size_sd15_rehearsal_loads_from_one_a1111_file_offline(tmp_path):
    """SD1.5's real architecture (random weights) as one A1111 file and lllyasviel's ControlNet file, read with the
    bundled configs and tokenizer only (no config=, no cache, no network); one small image comes out."""
    from workbench.families import sd15
    pipe = sd15.build_random(seed=0, dtype=torch.float16)
    model = save_single_file(a1111_state(pipe), tmp_path / "sd15-rehearsal.safetensors")
    net = save_single_file(ldm_controlnet(pipe.controlnet), tmp_path / "control_v11p_sd15_canny.safetensors")
    unet_state = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    del pipe
    loaded = wb.load_pipeline(str(model), controlnet=str(net), device="cpu")
    assert all(torch.equal(unet_state[k].float(), v.float()) for k, v in loaded.unet.state_dict().items())
    assert len(loaded.tokenizer) == 49408 and loaded.workbench_file["model_file"] == model.name
    image = wb.generate(loaded, CAPTION, control_for(f"toy:{CAPTION}", 64), [0], steps=1)[0]
    assert image.size == (64, 64)

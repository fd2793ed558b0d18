"""`wb.inspect_file` / `python -m workbench inspect` say what a user's file is, before anything loads (issue #38, item 4)."""

import torch
from safetensors.torch import save_file

from workbench import inspect_file
from workbench.__main__ import main
from workbench.families import sd15, sdxl

from lora_files import write_kohya, write_sd15_kohya_lora


def test_a_kohya_lora_says_its_format_parts_rank_alpha_and_whether_it_fits(tiny_pipe, tiny_sdxl_pipe, tmp_path):
    write_kohya(tiny_pipe, tmp_path / "kohya.safetensors", rank=2, alpha=1.0)
    info = inspect_file(tmp_path / "kohya.safetensors", tiny_pipe)
    assert (info["kind"], info["format"], info["components"]) == ("lora", "kohya", ["text_encoder", "unet"])
    assert (info["ranks"], info["alphas"], info["not_fitting"]) == ([2], [1.0], [])
    elsewhere = inspect_file(tmp_path / "kohya.safetensors", tiny_sdxl_pipe)["not_fitting"]
    assert elsewhere and all("wide, the model" in line or "no such layer" in line for line in elsewhere)


def test_the_base_family_is_read_from_the_file(tiny_sdxl_pipe, tmp_path):
    write_kohya(tiny_sdxl_pipe, tmp_path / "xl.safetensors")
    info = inspect_file(tmp_path / "xl.safetensors", tiny_sdxl_pipe)
    assert info["base"] == "sdxl" and "text_encoder_2" in info["components"] and info["not_fitting"] == []
    write_sd15_kohya_lora(tmp_path / "sd15.safetensors", rank=4, alpha=2.0)  # SD1.5's real shapes
    info = inspect_file(tmp_path / "sd15.safetensors")
    assert (info["base"], info["layers"], info["ranks"], info["alphas"]) == ("sd15", 200, [4], [2.0])


def test_lycoris_and_dora_files_are_named_not_refused(tmp_path):
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file({f"{key}.hada_w1_a": torch.ones(8, 2), f"{key}.hada_w1_b": torch.ones(2, 8),
               f"{key}.hada_w2_a": torch.ones(8, 2), f"{key}.hada_w2_b": torch.ones(2, 8),
               f"{key}.alpha": torch.tensor(1.0)}, str(tmp_path / "loha.safetensors"))
    save_file({f"{key}.lora_down.weight": torch.ones(2, 8), f"{key}.lora_up.weight": torch.ones(8, 2),
               f"{key}.dora_scale": torch.ones(1, 8)}, str(tmp_path / "dora.safetensors"))
    assert inspect_file(tmp_path / "loha.safetensors")["format"] == "LyCORIS LoHa"
    assert inspect_file(tmp_path / "dora.safetensors")["format"] == "DoRA"


def test_a_single_file_checkpoint_says_its_family_and_whether_it_is_complete(tmp_path):
    parts = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1),
             "first_stage_model.decoder.conv_in.weight": torch.zeros(1)}
    for name, text_key, family in (("sd15", sd15.CHECKPOINT_KEY, "sd15"), ("sdxl", sdxl.CHECKPOINT_KEY, "sdxl"),
                                   ("sd2", "cond_stage_model.model.ln_final.weight", "sd2 (not supported)")):
        save_file({**parts, text_key: torch.zeros(1)}, str(tmp_path / f"{name}.safetensors"))
        info = inspect_file(tmp_path / f"{name}.safetensors")
        assert (info["kind"], info["family"], info["complete"]) == ("checkpoint", family, True), name
    save_file({"model.diffusion_model.out.2.weight": torch.zeros(1)}, str(tmp_path / "unet-only.safetensors"))
    assert inspect_file(tmp_path / "unet-only.safetensors")["complete"] is False


def test_the_command_prints_it(tiny_pipe, tmp_path, capsys):
    write_kohya(tiny_pipe, tmp_path / "kohya.safetensors")
    assert main(["inspect", str(tmp_path / "kohya.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "format       kohya" in out and "components   ['text_encoder', 'unet']" in out

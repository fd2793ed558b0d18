"""Adapter files that no adapter type here reads (DoRA), or that are damaged, are refused in one line, before any run
folder is made (issues #38 item 3, never degrade silently; #39 item 7, crafted adapters)."""

import pytest
import torch
from safetensors.torch import save_file

from workbench import run_sweep
from workbench.lora import load_lora, loaded_adapters

CAPTION = "a red circle on a blue background"


def layer(pipe) -> tuple[str, int, int]:
    """A kohya name of one attention projection of `pipe`, and its (out, in) sizes."""
    name = next(n for n, _ in pipe.unet.named_modules() if n.endswith("attn1.to_q"))
    out_features, in_features = pipe.unet.get_submodule(name).weight.shape
    return "lora_unet_" + name.replace(".", "_"), out_features, in_features


def files(pipe) -> dict:
    key, out_f, in_f = layer(pipe)
    lora = {f"{key}.lora_down.weight": torch.randn(2, in_f), f"{key}.lora_up.weight": torch.randn(out_f, 2),
            f"{key}.alpha": torch.tensor(1.0)}
    return {
        "loha": ({f"{key}.hada_w1_a": torch.randn(out_f, 2), f"{key}.hada_w1_b": torch.randn(2, in_f),
                  f"{key}.hada_w2_a": torch.randn(out_f, 2), f"{key}.hada_w2_b": torch.randn(2, in_f),
                  f"{key}.alpha": torch.tensor(1.0)}, "LyCORIS LoHa"),
        "lokr": ({f"{key}.lokr_w1": torch.randn(2, 2), f"{key}.lokr_w2": torch.randn(out_f // 2, in_f // 2),
                  f"{key}.alpha": torch.tensor(1.0)}, "LyCORIS LoKr"),
        "dora": ({**lora, f"{key}.dora_scale": torch.randn(1, in_f)}, r"is a DoRA file .*lose its magnitudes"),
        "alpha": ({**lora, f"{key}.alpha": torch.ones(2, 2)}, r"has an alpha of shape \[2, 2\]"),
        "rank0": ({f"{key}.lora_down.weight": torch.randn(0, in_f), f"{key}.lora_up.weight": torch.randn(out_f, 0),
                   f"{key}.alpha": torch.tensor(1.0)}, "has a layer of rank 0"),
    }


@pytest.mark.parametrize("kind", ["loha", "lokr"])
def test_lycoris_files_load_and_unload_leaving_the_model_plain(tiny_pipe, tmp_path, kind):
    """LoHa and LoKr load now (`tests/test_lycoris.py` checks their images); unloading leaves no wrapper behind."""
    from workbench.lora import unload_adapter
    path = tmp_path / f"{kind}.safetensors"
    state, format_name = files(tiny_pipe)[kind]
    save_file(state, str(path))
    assert load_lora(tiny_pipe, path, kind)["format"] == format_name and kind in loaded_adapters(tiny_pipe)
    unload_adapter(tiny_pipe, kind)
    assert kind not in loaded_adapters(tiny_pipe)
    assert not any("base_layer" in n for n, _ in tiny_pipe.unet.named_parameters())  # the shared pipe is plain


@pytest.mark.parametrize("kind", ["dora", "alpha", "rank0", "header"])
def test_a_file_that_is_no_plain_lora_is_one_line_and_loads_nothing(tiny_pipe, tmp_path, kind):
    path = tmp_path / f"{kind}.safetensors"
    if kind == "header":  # a header whose JSON is no tensor table: safetensors' own error type, before
        path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00" + b'{"a": 1}'.ljust(16) + b"xxxx")
        match = "is not a readable safetensors file"
    else:
        state, match = files(tiny_pipe)[kind]
        save_file(state, str(path))
    with pytest.raises(ValueError, match=match) as caught:
        load_lora(tiny_pipe, path, kind)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 400
    assert kind not in loaded_adapters(tiny_pipe)
    spec = {"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2,
            "adapters": {kind: str(path)}, "adapter": [kind], "lora_weight": [1.0]}
    with pytest.raises(ValueError, match=match):
        run_sweep(tiny_pipe, spec, tmp_path / "run", log=lambda *_: None)
    assert not (tmp_path / "run").exists()  # refused before the run folder is made

"""LyCORIS LoHa and LoKr files and kohya LoCon (conv) layers (issue #38, item 3): loaded as peft adapters, scaled by
lora_weight, and drawing what the same update merged into the weights by hand draws; DoRA is refused in one line,
never loaded as a weaker LoRA."""

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.families import preset_family
from workbench.models.control import control_for
from workbench.lora.adapters import activate_lora, adapter_layer_counts, loaded_adapters, unload_adapter

from lora_files import merged_copy, write_kohya, write_locon, write_lycoris

CAPTION = "a red circle on a blue background"
# Adapter branches and merged weights round differently (float32 sums in another order): grey levels, 0-255.
MEAN_TOLERANCE, MAX_TOLERANCE = 0.5, 4


@pytest.fixture(scope="module", params=["tiny", "tiny-sdxl"])
def pipe(request):
    return preset_family(request.param).build_tiny(seed=0)


def pixels(pipe, adapter, weight, control):
    activate_lora(pipe, adapter, weight)
    return np.asarray(wb.generate(pipe, CAPTION, control, [1], steps=3)[0], dtype=np.int16)


@pytest.mark.parametrize("kind", ["loha", "lokr", "locon"])
def test_a_lycoris_file_draws_what_its_update_merged_by_hand_draws(pipe, kind, tmp_path):
    path = tmp_path / f"style-{kind}.safetensors"
    deltas = (write_locon(pipe, path, rank=2, alpha=1.0, std=0.6) if kind == "locon" else
              write_lycoris(pipe, path, kind, rank=2, alpha=1.0, std=0.6))
    info = wb.load_lora(pipe, path, f"style-{kind}")
    assert info["format"] == {"loha": "LyCORIS LoHa", "lokr": "LyCORIS LoKr", "locon": "kohya"}[kind]
    assert info["layers"] == len(deltas)
    counts = adapter_layer_counts(pipe, f"style-{kind}")
    assert sum(counts.values()) == len(deltas)  # linear and conv layers, and the text encoders' (not LoCon's)
    assert set(counts) >= ({"unet"} if kind == "locon" else {"unet", "text_encoder"})
    control = control_for(f"toy:{CAPTION}", 32)
    try:
        base = pixels(pipe, None, 0.0, control)
        for weight in (1.0, 0.5):  # the lora_weight axis scales the update
            activate_lora(pipe, None, 0.0)
            by_hand = np.asarray(wb.generate(merged_copy(pipe, deltas, weight), CAPTION, control, [1], steps=3)[0],
                                 dtype=np.int16)
            loaded = pixels(pipe, f"style-{kind}", weight, control)
            diff = np.abs(loaded - by_hand)
            assert diff.mean() <= MEAN_TOLERANCE and diff.max() <= MAX_TOLERANCE, (weight, diff.mean(), diff.max())
            assert np.abs(loaded - base).mean() > 5 * MEAN_TOLERANCE  # the update is visible, not lost
        assert np.array_equal(pixels(pipe, f"style-{kind}", 0.0, control), base)  # weight 0: the base model
    finally:
        unload_adapter(pipe, f"style-{kind}")


def test_a_sweep_over_a_loha_file_draws_what_generate_draws(tmp_path):
    pipe = preset_family("tiny").build_tiny(seed=0)
    path = tmp_path / "loha.safetensors"
    write_lycoris(pipe, path, "loha", rank=2, alpha=1.0)
    spec = {"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 3, "seed": [1],
            "adapters": {"loha": str(path)}, "adapter": ["loha"], "lora_weight": [0.5]}
    rows = wb.run_sweep(pipe, spec, tmp_path / "run", log=lambda *_: None)
    assert rows[["lora_rank", "lora_alpha"]].values.tolist() == [[2, 1.0]]
    from PIL import Image
    swept = np.asarray(Image.open(tmp_path / "run" / rows.image_path[0]))
    activate_lora(pipe, "loha", 0.5)
    made = np.asarray(wb.generate(pipe, CAPTION, control_for(f"toy:{CAPTION}", 32), [1], steps=3)[0])
    assert np.array_equal(swept, made)


def test_lycoris_files_for_another_base_or_of_other_shapes_are_refused_and_leave_nothing_loaded(tmp_path):
    from safetensors.torch import load_file, save_file
    sd15, sdxl = preset_family("tiny").build_tiny(seed=0), preset_family("tiny-sdxl").build_tiny(seed=0)
    path = tmp_path / "xl.safetensors"
    write_lycoris(sdxl, path, "loha")
    with pytest.raises(ValueError) as err:
        wb.load_lora(sd15, path, "xl")
    assert "name no layer of this pipeline" in str(err.value) and "\n" not in str(err.value)
    assert loaded_adapters(sd15) == []
    write_lycoris(sd15, path, "lokr")
    state = load_file(str(path))
    key = next(k for k in state if k.endswith(".lokr_w2_b"))
    state[key] = torch.zeros(2, 3)  # one layer's factors make another shape
    save_file(state, str(path))
    with pytest.raises(ValueError) as err:
        wb.load_lora(sd15, path, "odd")
    assert "do not fit this pipeline" in str(err.value) and "\n" not in str(err.value)
    assert loaded_adapters(sd15) == [] and sum(adapter_layer_counts(sd15, "odd").values()) == 0


def test_inspect_names_lycoris_files_and_their_ranks(tmp_path):
    sd15 = preset_family("tiny").build_tiny(seed=0)
    for kind, name in (("loha", "LyCORIS LoHa"), ("lokr", "LyCORIS LoKr")):
        path = tmp_path / f"{kind}.safetensors"
        write_lycoris(sd15, path, kind, rank=3, alpha=1.5)
        report = wb.inspect_file(path)
        assert report["format"] == name and report["ranks"] == [3], report


def test_a_dora_file_is_refused_in_one_line_not_loaded_weaker(tmp_path):
    from safetensors.torch import save_file
    sd15 = preset_family("tiny").build_tiny(seed=0)
    path = tmp_path / "dora.safetensors"
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file({f"{key}.lora_down.weight": torch.zeros(2, 64), f"{key}.lora_up.weight": torch.zeros(64, 2),
               f"{key}.dora_scale": torch.ones(64, 1)}, str(path))
    with pytest.raises(ValueError) as err:
        wb.load_lora(sd15, path, "dora")
    assert "a DoRA file" in str(err.value) and "\n" not in str(err.value) and loaded_adapters(sd15) == []


def test_lycoris_and_lora_adapters_share_a_pipeline_each_drawing_what_it_draws_alone(tmp_path):
    """A sweep over a LoHa and a kohya LoRA loads both; each draws what it draws loaded alone. A LoCon file after a
    LyCORIS one (peft cannot wrap its conv layers twice) is refused in one line, and loads the other way round."""
    control = control_for(f"toy:{CAPTION}", 32)
    base = preset_family("tiny").build_tiny(seed=0)
    write_lycoris(base, tmp_path / "loha.safetensors", "loha", std=0.6)
    write_kohya(base, tmp_path / "lora.safetensors", rank=2)
    write_locon(base, tmp_path / "locon.safetensors", std=0.6)
    alone = {}
    for name in ("loha", "lora", "locon"):
        pipe = preset_family("tiny").build_tiny(seed=0)
        wb.load_lora(pipe, tmp_path / f"{name}.safetensors", name)
        alone[name] = pixels(pipe, name, 1.0, control)
    for order in (("loha", "lora"), ("lora", "loha"), ("locon", "loha")):
        pipe = preset_family("tiny").build_tiny(seed=0)
        for name in order:
            wb.load_lora(pipe, tmp_path / f"{name}.safetensors", name)
        for name in order:  # the same process and configuration: the same pixels
            assert np.array_equal(pixels(pipe, name, 1.0, control), alone[name]), (order, name)
    pipe = preset_family("tiny").build_tiny(seed=0)
    wb.load_lora(pipe, tmp_path / "loha.safetensors", "loha")
    with pytest.raises(ValueError) as err:
        wb.load_lora(pipe, tmp_path / "locon.safetensors", "locon")
    assert "load locon.safetensors first" in str(err.value) and "\n" not in str(err.value)
    assert loaded_adapters(pipe) == ["loha"]


def test_lora_summary_reads_lycoris_adapters_too(tmp_path):
    from workbench.lora import lora_summary
    pipe = preset_family("tiny").build_tiny(seed=0)
    deltas = write_lycoris(pipe, tmp_path / "loha.safetensors", "loha", rank=2, alpha=1.0, text=False)
    wb.load_lora(pipe, tmp_path / "loha.safetensors", "loha")
    row = lora_summary(pipe).set_index("adapter").loc["loha"]
    per_layer = {name: 2 * 2 * (delta.shape[0] + delta[0].numel()) for (_, name), delta in deltas.items()}
    assert (row["rank"], row["alpha"], row["scaling"], row["parameters"]) == (2, 1.0, 0.5, sum(per_layer.values()))

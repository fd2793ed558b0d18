"""Rank ladders: each rung is the truncated SVD of the source's update, in the source's format."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from workbench import lora_rank_ladder, norm_kept_table, plot_norm_kept
from workbench.lora.files import lora_layers, read_lora
from lora_files import write_sd15_kohya_lora


def independent_truncation(down, up, scale, k):
    """dW_k from the full matrix's SVD, in float64: what the ladder must match without its QR shortcut."""
    update = scale * up.double().reshape(up.shape[0], -1) @ down.double().reshape(down.shape[0], -1)
    u, s, vh = torch.linalg.svd(update, full_matrices=False)
    return update, u[:, :k] @ torch.diag(s[:k]) @ vh[:k]


@pytest.fixture(scope="module")
def kohya_file(tmp_path_factory):
    """A third party's kohya SD1.5 LoRA: rank 8, alpha 4, fp16, 128 UNet and 72 text-encoder layers."""
    path = tmp_path_factory.mktemp("kohya") / "third_party.safetensors"
    write_sd15_kohya_lora(path, rank=8, alpha=4.0)
    return path


@pytest.mark.slow  # 13 s on an SD1.5-size kohya file; rank ladders of the tiny adapters stay in the default suite
def test_ladder_of_a_kohya_file_matches_an_independent_truncated_svd(kohya_file, tmp_path):
    ladder = lora_rank_ladder(kohya_file, ranks=[1, 2, 4, 8], out_dir=tmp_path)
    source = load_file(str(kohya_file))
    layers = lora_layers(source, {})
    checked = [layer for layer in layers if "te_" in layer.name][::9] + [layer for layer in layers if "unet" in
                                                                         layer.name][::16]
    assert any("lora_te_" in layer.name for layer in checked) and len(checked) >= 12
    for k, path in ladder.items():
        rung = load_file(str(path))
        assert rung.keys() == source.keys() and rung[layers[0].down_key].dtype == torch.float16  # format kept
        for layer in checked:
            assert float(rung[f"{layer.name}.alpha"]) == k and rung[layer.down_key].shape[0] == k
            full, expected = independent_truncation(source[layer.down_key], source[layer.up_key], 4.0 / 8, k)
            got = rung[layer.up_key].double().reshape(full.shape[0], -1) @ \
                rung[layer.down_key].double().reshape(k, -1)  # alpha' / k = 1
            assert torch.linalg.norm(got - expected) <= 2e-3 * torch.linalg.norm(full), (k, layer.name)
        with safe_open(str(path), framework="pt") as f:
            record = json.loads(f.metadata()["workbench_ladder"])
        assert record["rank"] == k and len(record["source_sha256"]) == 64
        assert len(record["norm_kept_per_layer"]) == 200 and 0 < record["norm_kept"] <= 1
    kept = [json.loads(safe_open(str(p), framework="pt").metadata()["workbench_ladder"])["norm_kept"]
            for _, p in sorted(ladder.items())]
    assert kept == sorted(kept) and kept[-1] == pytest.approx(1.0)  # rank 8 is the whole update


def test_norm_kept_curve_rises_to_one_per_group(kohya_file):
    table = norm_kept_table(kohya_file, ranks=[1, 2, 4, 8, 16])
    assert set(table.group) == {"text encoder", "down", "mid", "up", "all"}
    for _, part in table.groupby("group"):
        values = part.sort_values("rank").norm_kept.to_numpy()
        assert np.all(np.diff(values) >= -1e-9) and values[-1] == pytest.approx(1.0) and values[0] < 0.9
    assert plot_norm_kept(table).axes[0].get_ylabel().startswith("norm kept")


def test_a_diffusers_ladder_loads_and_its_full_rung_draws_the_source(tmp_path, square_control):
    from workbench import generate, load_pipeline, train_lora
    from workbench.lora import inspect_lora_file, load_lora
    from workbench.toy.data import make_dataset
    from tolerance import assert_images_close
    pipe = load_pipeline("tiny", device="cpu")
    source = train_lora(pipe, make_dataset(8, size=32, style="zebra"), rank=4, alpha=2.0, steps=3,
                        out_dir=tmp_path, adapter_name="source")
    ladder = lora_rank_ladder(source, ranks=[1, 4], out_dir=tmp_path / "ladder")
    assert inspect_lora_file(ladder[1])["ranks"] == [1] and inspect_lora_file(ladder[1])["alphas"] == [1.0]
    for k, path in ladder.items():
        load_lora(pipe, path, f"ladder{k}")

    def image(adapter):
        pipe.set_adapters([adapter], [1.0])
        [picture] = generate(pipe, "a red circle on a blue background", square_control, 0, steps=2)
        return np.asarray(picture)

    assert_images_close(image("ladder4"), image("source"))  # rank 4 of a rank-4 adapter: the same update
    assert np.abs(image("ladder1").astype(int) - image("source").astype(int)).max() > 0


@pytest.mark.parametrize("ranks,match", [([0], "positive integers"), ([], "positive integers"),
                                         ([2.5], "positive integers")])
def test_bad_ladder_requests(kohya_file, ranks, match):
    with pytest.raises(ValueError, match=match):
        lora_rank_ladder(kohya_file, ranks=ranks)


def test_a_file_without_lora_layers_is_refused(tmp_path):
    from safetensors.torch import save_file
    save_file({"weight": torch.zeros(2, 2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="no LoRA layers"):
        lora_rank_ladder(tmp_path / "plain.safetensors", ranks=[1])
    state, header = read_lora(tmp_path / "plain.safetensors")
    assert list(state) == ["weight"]

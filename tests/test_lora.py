"""LoRA: training on the tiny model, metadata round trip, weight 0 = base, adapters as a sweep axis."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

from workbench import generate, load_pipeline, run_sweep
from workbench.lora import lora_summary, read_lora_metadata, train_lora
from workbench.spec import spec_from_dict
from workbench.toy.data import make_dataset


@pytest.fixture(scope="module")
def lora_pipe(tmp_path_factory):
    """A fresh tiny pipeline with two trained adapters: rank2 (alpha 2) and rank4 (alpha 2)."""
    pipe = load_pipeline("tiny", device="cpu")
    data = make_dataset(16, seed=1, size=32, style="zebra")
    folder = tmp_path_factory.mktemp("lora")
    paths = {"rank2": train_lora(pipe, data, rank=2, steps=8, lr=1e-2, out_dir=folder),
             "rank4": train_lora(pipe, data, rank=4, alpha=2, steps=8, lr=1e-2, out_dir=folder)}
    return pipe, paths


def pixels(pipe, control, adapter=None, weight=1.0):
    if adapter is None:
        pipe.disable_lora()
    else:
        pipe.enable_lora()
        pipe.set_adapters([adapter], adapter_weights=[weight])
    [image] = generate(pipe, "a red circle on a blue background", control, 0, steps=2)
    return np.asarray(image, dtype=np.float32)


def test_weight_zero_is_the_base_model_and_weight_one_differs(lora_pipe, square_control):
    pipe, _ = lora_pipe
    base = pixels(pipe, square_control)
    assert np.array_equal(pixels(pipe, square_control, "rank2", 0.0), base)
    assert np.abs(pixels(pipe, square_control, "rank2", 1.0) - base).mean() > 0.5


def test_rank_and_alpha_survive_saving(lora_pipe):
    _, paths = lora_pipe
    meta = read_lora_metadata(paths["rank4"])
    assert (meta["rank"], meta["alpha"], meta["r"], meta["lora_alpha"]) == (4, 2.0, 4, 2.0)
    assert meta["steps"] == 8 and len(meta["dataset_hash"]) == 16


def test_summary_counts_parameters_and_scaling(lora_pipe):
    pipe, _ = lora_pipe
    summary = lora_summary(pipe).set_index("adapter")
    assert summary.loc["rank4", "parameters"] == 2 * summary.loc["rank2", "parameters"]
    assert summary.loc["rank2", "scaling"] == 1.0 and summary.loc["rank4", "scaling"] == 0.5
    assert 0 < summary.loc["rank2", "percent_of_unet"] < 5


def test_training_is_deterministic(tmp_path):
    data = make_dataset(8, seed=2, size=32, style="zebra")
    from safetensors.torch import load_file
    files = [train_lora(load_pipeline("tiny", device="cpu"), data, rank=2, steps=3, out_dir=tmp_path / str(i), load=False)
             for i in range(2)]
    first, second = (load_file(str(f)) for f in files)
    assert first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)


def test_interrupted_training_resumes_to_the_same_adapter(tmp_path):
    data = make_dataset(8, seed=2, size=32, style="zebra")
    from safetensors.torch import load_file
    straight = train_lora(load_pipeline("tiny", device="cpu"), data, rank=2, steps=6, out_dir=tmp_path / "a", load=False)

    def interrupt_at_step_4(step, loss):
        if step == 4:
            raise KeyboardInterrupt

    pipe = load_pipeline("tiny", device="cpu")
    with pytest.raises(KeyboardInterrupt):
        train_lora(pipe, data, rank=2, steps=6, out_dir=tmp_path / "b", load=False, checkpoint_every=2,
                   callback=interrupt_at_step_4)
    assert (tmp_path / "b" / "rank2.checkpoint.pt").exists() and not getattr(pipe.unet, "peft_config", {})
    resumed = train_lora(pipe, data, rank=2, steps=6, out_dir=tmp_path / "b", load=False, checkpoint_every=2)
    first, second = load_file(str(straight)), load_file(str(resumed))
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert not (tmp_path / "b" / "rank2.checkpoint.pt").exists()  # removed once the adapter is saved
    assert len((tmp_path / "b" / "rank2.losses.csv").read_text().splitlines()) == 7  # header + 6 steps


def test_training_without_loading_leaves_a_plain_unet_that_saves_and_reloads(tmp_path):
    """peft's delete_adapters keeps every target wrapped (`to_q.base_layer.weight`); such a UNet reloaded blank."""
    pipe = load_pipeline("tiny", device="cpu")
    train_lora(pipe, make_dataset(4, size=32), rank=2, steps=1, out_dir=tmp_path / "lora", load=False)
    names = [name for name, _ in pipe.unet.named_parameters()]
    assert not any("base_layer" in n or "lora_" in n for n in names)
    pipe.save_pretrained(tmp_path / "saved", safe_serialization=True)
    pipe.controlnet.save_pretrained(tmp_path / "controlnet", safe_serialization=True)
    again = load_pipeline(str(tmp_path / "saved"), controlnet=str(tmp_path / "controlnet"), device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(pipe.unet.state_dict().values(), again.unet.state_dict().values()))


@pytest.mark.parametrize("rank,match", [(0, "positive integer"), (-2, "positive integer"), (2.5, "positive integer"),
                                        (10_000, "larger than the smallest targeted layer")])
def test_bad_ranks(rank, match):
    pipe = load_pipeline("tiny", device="cpu")
    with pytest.raises(ValueError, match=match):
        train_lora(pipe, make_dataset(2, size=32), rank=rank, steps=1)


def test_bad_datasets(tmp_path):
    pipe = load_pipeline("tiny", device="cpu")
    data = make_dataset(3, size=32)
    with pytest.raises(ValueError, match="3 images but 2 captions"):
        train_lora(pipe, (data.images, data.captions[:2]), rank=2, steps=1, out_dir=tmp_path)
    with pytest.raises(ValueError, match="empty"):
        train_lora(pipe, (data.images[:0], []), rank=2, steps=1, out_dir=tmp_path)


def test_adapters_and_weights_sweep_as_axes(lora_pipe, tmp_path):
    pipe, paths = lora_pipe
    caption = "a red circle on a blue background"
    spec = spec_from_dict({"model": "tiny", "prompt": caption, "control_image": f"toy:{caption}", "steps": 2,
                           "adapters": {k: str(v) for k, v in paths.items()}, "adapter": ["rank2", "rank4"],
                           "lora_weight": [0.0, 0.5, 1.0], "seed": [0, 1]})
    table = run_sweep(pipe, spec, tmp_path, log=lambda m: None)
    assert len(table) == 12 and (table.state == "COMPLETE").all()
    for seed, rows in table[table.lora_weight == 0].groupby("seed"):  # weight 0 = base, whatever the adapter
        first, second = (np.asarray(Image.open(p)) for p in rows.image_path)
        assert np.array_equal(first, second), seed
    assert set(zip(table.adapter, table.lora_rank, table.lora_alpha)) == {("rank2", 2, 2.0), ("rank4", 4, 2.0)}
    effect = table.groupby("lora_weight").lora_effect.mean()
    assert effect[0.0] == 0 and effect[0.5] > 0 and effect[1.0] > effect[0.5]


def test_one_adapter_name_for_two_files_sweeps_each_file(lora_pipe, tmp_path):
    """Two specs may give one name to different files (`r1-s0` of two recipes): each sweep uses its own file."""
    pipe, paths = lora_pipe
    caption = "a red circle on a blue background"

    def sweep(path, folder):
        spec = spec_from_dict({"model": "tiny", "prompt": caption, "control_image": f"toy:{caption}", "steps": 2,
                               "adapters": {"style": str(path)}, "adapter": ["style"], "lora_weight": [1.0],
                               "seed": [0]})
        return run_sweep(pipe, spec, tmp_path / folder, log=lambda m: None)

    first = sweep(paths["rank2"], "first")
    second = sweep(paths["rank4"], "second")   # "style" is loaded, but from the rank-2 file
    alone = sweep(paths["rank4"], "alone")     # the same name and file again: kept, not reloaded
    assert (first.lora_rank.item(), second.lora_rank.item()) == (2, 4)
    assert first.image_sha256.item() != second.image_sha256.item()
    assert second.image_sha256.item() == alone.image_sha256.item()
    from workbench.lora import unload_adapter
    unload_adapter(pipe, "style")


def to_kohya(diffusers_file, out_file, alpha):
    """Rewrite a diffusers LoRA file with kohya/A1111 key names and `.alpha` tensors."""
    import torch
    from safetensors.torch import load_file, save_file
    converted = {}
    for key, tensor in load_file(str(diffusers_file)).items():
        module, part = key.removeprefix("unet.").rsplit(".lora.", 1)  # part: "down.weight" or "up.weight"
        name = "lora_unet_" + module.replace(".", "_")
        converted[f"{name}.lora_{part}"] = tensor
        converted[f"{name}.alpha"] = torch.tensor(float(alpha))
    save_file(converted, str(out_file))


def test_kohya_file_loads_with_rank_and_alpha(lora_pipe, tmp_path, square_control):
    from workbench.lora import inspect_lora_file, load_lora
    pipe, paths = lora_pipe
    kohya = tmp_path / "kohya_style.safetensors"
    to_kohya(paths["rank4"], kohya, alpha=2.0)
    info = load_lora(pipe, kohya, "kohya4")
    assert info == {"format": "kohya", "layers": info["layers"], "ranks": [4], "alphas": [2.0]} and info["layers"] > 0
    # the same weights under another format give the same image
    assert np.abs(pixels(pipe, square_control, "kohya4") - pixels(pipe, square_control, "rank4")).max() <= 1
    assert inspect_lora_file(paths["rank4"])["ranks"] == [4]


def test_load_lora_refusals(lora_pipe, tmp_path):
    from workbench.lora import load_lora
    pipe, paths = lora_pipe
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_lora(pipe, tmp_path / "missing.safetensors", "x")
    (tmp_path / "old.ckpt").write_bytes(b"not really a pickle")
    with pytest.raises(ValueError, match="only safetensors files are loaded"):
        load_lora(pipe, tmp_path / "old.ckpt", "x")
    with pytest.raises(ValueError, match="'rank2' is already loaded"):
        load_lora(pipe, paths["rank2"], "rank2")


def test_file_for_another_base_gets_one_line(tmp_path, capfd):
    """Not diffusers' line per mismatched tensor: the file, the first module, both shapes, the cause."""
    from workbench.lora import load_lora
    from workbench.families.builders import ModelConfig
    from workbench.families.sd15 import build_tiny_pipeline
    wide = build_tiny_pipeline(ModelConfig(unet_channels=(64, 128)))
    path = train_lora(wide, make_dataset(4, size=32), rank=2, steps=1, out_dir=tmp_path, load=False)
    capfd.readouterr()
    with pytest.raises(ValueError) as caught:
        load_lora(load_pipeline("tiny", device="cpu"), path, "wide")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"LoRA file {path.name} does not fit this base model")
    assert re.search(r"the first in down_blocks\.\S+\.to_[qkv] \(file \[2, 128\], model \[2, 64\]\): "
                     r"it was made for a model with 128-wide attention; this one has 64", message), message
    captured = capfd.readouterr()
    assert "size mismatch" not in captured.out + captured.err


def test_spectrum_has_at_most_rank_values(lora_pipe):
    from workbench.lora import lora_delta_spectrum
    pipe, _ = lora_pipe
    spectrum = lora_delta_spectrum(pipe, "rank2")
    assert spectrum.groupby("layer").size().max() == 2 and (spectrum.singular_value >= 0).all()
    with pytest.raises(ValueError, match="not loaded"):
        lora_delta_spectrum(pipe, "rank99")


def test_rank_sweep_trains_once_then_uses_the_cache(tmp_path):
    from workbench.lora import train_lora_ranks
    data = make_dataset(8, seed=3, size=32, style="zebra")
    pipe = load_pipeline("tiny", device="cpu")
    files = train_lora_ranks(pipe, data, ranks=[1, 2], steps=2, cache_dir=tmp_path)
    assert sorted(files) == ["rank1", "rank2"] and set(pipe.get_list_adapters()["unet"]) >= {"rank1", "rank2"}
    stamps = {name: path.stat().st_mtime_ns for name, path in files.items()}
    again = train_lora_ranks(pipe, data, ranks=[1, 2], steps=2, cache_dir=tmp_path)
    assert {name: path.stat().st_mtime_ns for name, path in again.items()} == stamps


@pytest.mark.slow  # 20 s of training: the default suite trains only a few steps (no long training there)
def test_toy_lora_learns_the_outlined_style_within_a_minute_of_training(tmp_path):
    """The issue's bar, end to end on the shipped toy model: 300 steps (about 30 s on 2 cores)
    of a rank-4 adapter on outlined scenes, then held-out prompts drawn with and without it."""
    from dataclasses import replace

    from workbench import make_canny
    from workbench.toy.scores import outline_strength
    from workbench.toy.world import render_scene, sample_scenes
    pipe = load_pipeline("toy", device="cpu")
    train_lora(pipe, make_dataset(256, seed=11, size=64, style="outlined"), rank=4, steps=300, out_dir=tmp_path)
    strength = {}
    for weight in (0.0, 1.0):
        pipe.set_adapters(["rank4"], adapter_weights=[weight])
        scores = []
        for scene in sample_scenes(6, seed=12345, style="outlined"):
            control = make_canny(render_scene(replace(scene, style=None)), resolution=64)
            [image] = generate(pipe, scene.caption, control, 0, steps=20, guidance=5.0)
            scores.append(outline_strength(image, scene))
        strength[weight] = float(np.mean(scores))
    assert strength[0.0] < 0.15, f"the base model draws no outline: {strength}"
    assert strength[1.0] > strength[0.0] + 0.2, f"the adapter draws the outline: {strength}"  # measured: 0.03 -> 0.32


def test_training_works_after_a_sweep_switched_lora_off(tmp_path):
    """A sweep row without an adapter calls disable_lora(); the next train_lora must still train (it raised)."""
    from workbench.lora import activate_lora
    pipe = load_pipeline("tiny", device="cpu")
    train_lora(pipe, make_dataset(4, size=32), rank=2, steps=1, out_dir=tmp_path, adapter_name="first")
    activate_lora(pipe, None, 0.0)
    second = train_lora(pipe, make_dataset(4, size=32), rank=2, steps=2, out_dir=tmp_path, adapter_name="second",
                        load=False)
    assert second.exists() and len((tmp_path / "second.losses.csv").read_text().splitlines()) == 3
    from workbench.lora import lora_disabled
    assert lora_disabled(pipe.unet)  # left as the sweep set it


def test_training_adds_the_same_noise_whatever_sampler_the_pipeline_draws_with(tmp_path):
    """Euler's add_noise knows only the timesteps of its last set_timesteps; training uses DDPM on the same betas."""
    from safetensors.torch import load_file
    from workbench.families.sd15 import build_tiny_pipeline
    from workbench.pipeline import set_scheduler
    from workbench.toy.data import make_dataset
    pipe = build_tiny_pipeline(seed=0)
    data = make_dataset(4, seed=1, size=32, style="outlined")
    files = []
    for name in ("ddim", "euler"):
        set_scheduler(pipe, name)
        pipe.scheduler.set_timesteps(4)  # as a sweep leaves it
        files.append(train_lora(pipe, data, rank=2, steps=2, batch_size=2, out_dir=tmp_path / name, load=False))
    first, second = (load_file(str(f)) for f in files)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)

"""The rank study's plumbing at toy size: adapters per (rank, seed), cached; held-out sweeps; ladder; figure."""

import pytest
import torch

from workbench import load_pipeline, rank_study
from workbench.curves import rank_curve
from workbench.ranks import alpha_for, held_out_captions
from workbench.toy.data import make_dataset


def test_alpha_policies():
    assert alpha_for("r", 8, 1) == (8.0, False)
    assert alpha_for("fixed", 8, 2) == (2.0, False)      # s = 2/8: the LoRA paper's fixed alpha
    assert alpha_for("rslora", 8, 2) == (2.0, True)      # s = 2/sqrt(8)
    assert alpha_for(16, 8, 2) == (16.0, False)
    with pytest.raises(ValueError, match="alpha policy"):
        alpha_for("sqrt", 8, 1)


def test_held_out_captions_are_distinct_and_styled():
    captions = held_out_captions(6, "outlined")
    assert len(set(captions)) == 6 and all(c.endswith(" in outlined style") for c in captions)
    assert held_out_captions(6, "outlined") == captions  # the same scenes every time


def test_style_dataset_adds_prior_and_empty_caption_scenes():
    from workbench.toy.data import style_dataset
    images, captions = style_dataset("outlined", n=4, prior=3, unconditional=2, size=32)
    assert images.shape == (9, 3, 32, 32) and len(captions) == 9
    assert all(c.endswith("in outlined style") for c in captions[:4])
    assert all(c and "style" not in c for c in captions[4:7]) and captions[7:] == ["", ""]
    again, _ = style_dataset("outlined", n=4, prior=3, unconditional=2, size=32)
    assert (again == images).all()  # the same arguments give the same data (and the same cached adapters)
    plain_only, plain_captions = style_dataset("outlined", n=4, size=32)
    assert (plain_only == images[:4]).all() and plain_captions == captions[:4]


def test_small_rank_study_runs_caches_and_plots(tmp_path):
    pipe = load_pipeline("toy", device="cpu")
    data = make_dataset(8, seed=3, size=64, style="outlined")
    settings = dict(ranks=[1, 2], seeds=[0, 1], steps=2, scenes=1, weights=[0.0, 1.0], sample_steps=2,
                    run_dir=tmp_path / "study", cache_dir=tmp_path / "cache", log=lambda m: None)
    study = rank_study(pipe, data, **settings)
    table = study.table
    assert len(table) == 2 * 2 * 2 and (table.state == "COMPLETE").all()  # ranks x seeds x weights, one scene
    assert set(table.adapter) == {"r1-s0", "r1-s1", "r2-s0", "r2-s1"} and set(table.train_seed) == {0, 1}
    assert table.style_strength.between(0, 1).all() and table.colour_fidelity.isin([0.0, 1.0]).all()
    curve = rank_curve(table, "style_strength")
    assert list(curve.index) == [1, 2] and (curve["min"] <= curve["mean"]).all() and (curve["mean"] <= curve["max"]).all()
    assert set(study.ladder_table.lora_rank) == {1, 2}  # the best rank-2 adapter cut to 1, and itself
    assert study.parameters[2] == 2 * study.parameters[1]
    assert len(study.figure.axes) == 4  # two panels, each with its parameter axis
    stamps = {name: path.stat().st_mtime_ns for name, path in study.adapters.items()}
    again = rank_study(pipe, data, **settings)  # cached adapters, resumed sweeps
    assert {name: path.stat().st_mtime_ns for name, path in again.adapters.items()} == stamps
    assert again.table.image_sha256.tolist() == table.image_sha256.tolist()


def test_notebook_02s_study_adapters_are_shipped_and_seed_the_cache(tmp_path):
    """The package ships the 15 adapters notebook 02's defaults would train (about 35 min), keyed as the cache is."""
    import zipfile
    from safetensors import safe_open
    from workbench.lora import training_pairs
    from workbench.lora.files import cache_key, dataset_hash
    from workbench.ranks import SHIPPED_ADAPTERS, cached_adapter
    from workbench.toy.data import style_dataset
    pipe = load_pipeline("toy", device="cpu")
    images, captions = training_pairs(style_dataset("outlined", prior=256, unconditional=128))
    members = {m for m in zipfile.ZipFile(SHIPPED_ADAPTERS).namelist() if not m.startswith("tables/")}
    wanted = {f"{cache_key(pipe.unet, dataset_hash(images, captions), r, float(r), False, 1200, 1e-3, s)}/r{r}-s{s}.safetensors"
              for r in (1, 2, 4, 8, 16) for s in (0, 1, 2)}
    assert wanted == members, "the shipped adapters' keys no longer match notebook 02's recipe"
    assert SHIPPED_ADAPTERS.stat().st_size < 2_000_000
    path = cached_adapter(pipe, (images, captions), dataset_hash(images, captions), 2, 2.0, False, 1200, 1e-3, 1,
                          tmp_path, "r2-s1")  # no training
    assert path.parent.parent == tmp_path and path.exists()
    with safe_open(str(path), framework="pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16 and "workbench_shipped" in f.metadata()


@pytest.mark.parametrize("preset", ["tiny", "tiny-sdxl"])
def test_a_rank_study_on_any_model_scores_with_its_profile_and_names_it(preset, tmp_path):
    """Nothing toy in it: a folder of photos, the profile's metrics (lora_effect and edge F1 offline), the model's name."""
    from workbench import lesson_data
    pipe = load_pipeline(preset, device="cpu")
    data = lesson_data(preset, None, "outlined", 32, folder=tmp_path / "data")
    assert type(data).__name__ == "ImageFolder" and any(c.endswith("in outlined style") for c in data.captions)
    study = rank_study(pipe, data, ranks=[1, 2], seeds=[0, 1], steps=2, scenes=1, weights=[0.0, 1.0], sample_steps=2,
                       run_dir=tmp_path / "study", cache_dir=tmp_path / "cache", log=lambda m: None)
    table = study.table
    assert set(table.model) == {preset} and len(table) == 2 * 2 * 2
    assert "style_strength" not in table and {"lora_effect", "edge_f1"} <= set(table.columns)
    assert (table[table.lora_weight == 0].lora_effect == 0).all()
    assert table[table.lora_weight == 1].lora_effect.notna().all()
    assert set(study.ladder_table.lora_rank) == {1, 2} and study.ladder_table.lora_effect.notna().all()
    assert [ax.get_ylabel() for ax in study.figure.axes[:2]] == ["LoRA effect (pixel distance from weight 0)",
                                                                  "edge F1 (follows the control)"]


def test_a_rank_study_evaluates_on_given_prompts_and_refuses_them_without_controls(tiny_pipe, tmp_path):
    data = make_dataset(4, seed=3, size=32, style="outlined")
    with pytest.raises(ValueError, match="not a toy scene.*pass controls="):
        rank_study(tiny_pipe, data, ["a watercolour harbour"], model="tiny", ranks=[1], seeds=[0], steps=1,
                   cache_dir=tmp_path, log=lambda m: None)
    with pytest.raises(ValueError, match="this pipeline was not loaded by `wb.load_pipeline`"):
        rank_study(tiny_pipe, data, ranks=[1], seeds=[0], steps=1, cache_dir=tmp_path, log=lambda m: None)


def test_notebook_02s_study_loads_its_shipped_scores_instead_of_sweeping(tmp_path):
    """02's study cell at its defaults: adapters and scores from the package, no image drawn, in seconds."""
    from workbench.toy.data import style_dataset
    pipe = load_pipeline("toy", device="cpu")
    said = []
    study = rank_study(pipe, style_dataset("outlined", prior=256, unconditional=128), ranks=[1, 2, 4, 8, 16],
                       seeds=[0, 1, 2], steps=1200, style="outlined", scenes=12, run_dir=tmp_path / "study",
                       cache_dir=tmp_path / "cache", log=said.append)
    assert any("ship with the package" in line for line in said)
    assert not (tmp_path / "study").exists()  # no sweep ran
    assert len(study.table) == 12 * 15 * 4 and set(study.table.lora_rank) == {1, 2, 4, 8, 16}
    assert "image_path" not in study.table and "device" not in study.table  # scores only, no machine's facts
    at_two = study.table[(study.table.lora_rank == 2) & (study.table.lora_weight == 1.0)]
    assert round(at_two.style_strength.mean(), 2) == 0.44  # the number notebook 02 and the README quote


def test_a_shipped_study_round_trips(tiny_pipe, tmp_path, monkeypatch):
    """Ship a study's tables into an archive; the same study elsewhere then loads them, and other settings do not."""
    from workbench.columns import metric_columns
    from workbench.shipped import scores_only, ship_tables
    monkeypatch.setattr("workbench.shipped.SHIPPED", tmp_path / "archive.zip")
    data = make_dataset(4, seed=3, size=32, style="outlined")
    settings = dict(model="tiny", ranks=[1, 2], seeds=[0, 1], steps=1, scenes=1, weights=[0.0, 1.0], sample_steps=2,
                    cache_dir=tmp_path / "cache", log=lambda m: None)
    first = rank_study(tiny_pipe, data, run_dir=tmp_path / "a", **settings)
    scores = metric_columns(first.table)
    ship_tables(first.key, scores_only(first.table, scores), scores_only(first.ladder_table, scores))
    again = rank_study(tiny_pipe, data, run_dir=tmp_path / "b", **settings)
    assert not (tmp_path / "b").exists() and again.key == first.key
    assert again.table.lora_effect.round(6).tolist() == first.table.lora_effect.round(6).tolist()
    other = rank_study(tiny_pipe, data, run_dir=tmp_path / "c", **{**settings, "weights": [0.0, 1.0, 1.25]})
    assert (tmp_path / "c").exists() and other.key != first.key

"""A LoRA's text-encoder part acts in sweeps: prompt embeddings follow the adapter and its weight (issue #36)."""

import numpy as np
import pytest

from workbench import run_sweep
from workbench.families import family_of
from workbench.lora import unload_adapter

from lora_files import write_kohya

PROMPT, SOURCE = "a red circle on a blue background", "toy:a red circle on a blue background"


def levels(path) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


@pytest.mark.parametrize("family", ["tiny_pipe", "tiny_sdxl_pipe"])
def test_text_encoder_part_changes_sweep_images_and_unet_only_adapters_keep_the_cache(family, request, tmp_path,
                                                                                        monkeypatch):
    pipe = request.getfixturevalue(family)
    model = "tiny-sdxl" if family == "tiny_sdxl_pipe" else "tiny"
    write_kohya(pipe, tmp_path / "u.safetensors", text=False, seed=1)
    write_kohya(pipe, tmp_path / "ut.safetensors", text=True, seed=1, text_std=0.5)
    encoded = []
    encode = family_of(pipe).encode
    monkeypatch.setattr(family_of(pipe), "encode", lambda *args: encoded.append(args[1:]) or encode(*args))
    request.addfinalizer(lambda: [unload_adapter(pipe, name) for name in ("u", "ut")])
    table = run_sweep(pipe, {"model": model, "prompt": [PROMPT], "control_image": SOURCE, "steps": [2], "seed": [0],
                             "adapters": {"u": str(tmp_path / "u.safetensors"), "ut": str(tmp_path / "ut.safetensors")},
                             "adapter": ["u", "ut"], "lora_weight": [0.0, 0.5, 1.0]}, tmp_path / "run", log=lambda *_: None)
    image = {(r.adapter, r.lora_weight): levels(r.image_path) for r in table.itertuples()}
    # The two files share their UNet part: only the text-encoder part can tell their images apart.
    assert np.abs(image["u", 1.0] - image["ut", 1.0]).mean() > 1.0
    assert np.abs(image["ut", 0.5] - image["ut", 1.0]).mean() > 0.5
    assert np.array_equal(image["u", 0.0], image["ut", 0.0])  # weight 0: neither part acts
    # One encoding for "u" at every weight (UNet only), one per weight of "ut": 1 + 3.
    assert len(encoded) == 4, encoded


def test_the_cache_key_is_the_text_encoders_weight(tiny_pipe, tmp_path):
    from workbench.lora import load_lora, text_encoder_weight
    write_kohya(tiny_pipe, tmp_path / "u.safetensors", text=False)
    write_kohya(tiny_pipe, tmp_path / "ut.safetensors", text=True)
    load_lora(tiny_pipe, tmp_path / "u.safetensors", "u-key", replace=True)
    load_lora(tiny_pipe, tmp_path / "ut.safetensors", "ut-key", replace=True)
    try:
        assert text_encoder_weight(tiny_pipe, "u-key", 1.0) is None
        assert text_encoder_weight(tiny_pipe, None, 1.0) is None
        assert text_encoder_weight(tiny_pipe, "ut-key", 0.5) == 0.5
        assert text_encoder_weight(tiny_pipe, "ut-key", 0.5, "no-text-encoder") == 0.0
        assert text_encoder_weight(tiny_pipe, "ut-key", 0.5, {"text_encoder": 2}) == 1.0
    finally:
        unload_adapter(tiny_pipe, "u-key")
        unload_adapter(tiny_pipe, "ut-key")


def test_a_folder_drawn_before_the_fix_says_so_and_a_resume_redraws_what_changed(tiny_pipe, tmp_path, request):
    """Rows without `image_scheme` (an older version's) are named by `results` and the report; resuming redraws the
    rows whose adapter has text-encoder layers, and keeps those of a UNet-only adapter."""
    import json

    from workbench import load_results, write_report
    from workbench.__main__ import main
    from workbench.results import image_scheme, notes_on_old_rows
    write_kohya(tiny_pipe, tmp_path / "u.safetensors", text=False, seed=1)
    write_kohya(tiny_pipe, tmp_path / "ut.safetensors", text=True, seed=1, text_std=0.5)
    request.addfinalizer(lambda: [unload_adapter(tiny_pipe, name) for name in ("u", "ut")])
    spec = {"model": "tiny", "prompt": [PROMPT], "control_image": SOURCE, "steps": [2], "seed": [0],
            "adapters": {"u": str(tmp_path / "u.safetensors"), "ut": str(tmp_path / "ut.safetensors")},
            "adapter": ["u", "ut"], "lora_weight": [0.0, 1.0]}
    run = tmp_path / "run"
    run_sweep(tiny_pipe, spec, run, log=lambda *_: None)
    log = run / "results.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(row["image_scheme"] == 2 for row in rows)
    assert [image_scheme({"image_scheme": v}) for v in (float("inf"), float("nan"), "2", True, 3)] == [1, 1, 1, 1, 3]
    log.write_text("".join(json.dumps({k: v for k, v in row.items() if k != "image_scheme"}) + "\n" for row in rows))

    notes = notes_on_old_rows(load_results(run))
    assert sorted(notes) == [f"1 rows drawn before the text-encoder fix with adapter {name!r}: a resumed sweep redraws "
                             "them where its adapter has text-encoder layers" for name in ("u", "ut")]
    assert "drawn before the text-encoder fix" in write_report(run).read_text()
    assert main(["results", str(run)]) == 0

    said = []
    table = run_sweep(tiny_pipe, spec, run, log=said.append)
    assert said == ["1 finished trials were drawn before the text-encoder fix (their adapter's text-encoder layers "
                    "did not act); drawing them again"]
    redrawn = table.set_index(["adapter", "lora_weight"]).image_scheme
    assert redrawn["ut", 1.0] == 2 and redrawn.isna().sum() == 3  # "u" has no text-encoder layers: kept as drawn

"""Growing a sweep: new values into a finished run folder make only the missing images."""

import pytest
import yaml

from sweep_helpers import check_run, start_sweep
from workbench import load_results, run_sweep
from workbench.spec import expand, spec_from_dict

CAPTION = "a red circle on a blue background"


def grid(scales, seeds, **more):
    return spec_from_dict({"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2,
                           "conditioning_scale": scales, "seed": seeds, **more})


def test_a_2x2_sweep_grown_to_3x3_makes_5_images_not_9(tiny_pipe, tmp_path):
    small, big = grid([0.0, 1.0], [0, 1]), grid([0.0, 0.5, 1.0], [0, 1, 2])
    first = run_sweep(tiny_pipe, small, tmp_path, log=lambda m: None)
    made = []
    grown = run_sweep(tiny_pipe, big, tmp_path, callback=lambda p: made.append((p.total, p.skipped)),
                      log=lambda m: None)
    assert made[-1] == (5, 4) and len(grown) == 9 and (grown.state == "COMPLETE").all()
    assert set(first.image_sha256) <= set(grown.image_sha256)  # the 4 old images are reused, not redrawn
    assert len(list((tmp_path / "images").glob("*.png"))) == 9
    specs = sorted(p.name for p in (tmp_path / "specs").glob("*.yaml"))
    assert specs == ["1.yaml", "2.yaml"] and "# spec 2, added 20" in (tmp_path / "specs" / "2.yaml").read_text()
    assert yaml.safe_load((tmp_path / "spec.yaml").read_text())["seed"] == [0, 1, 2]  # the latest
    assert len(load_results(tmp_path)) == 9
    assert len(load_results(tmp_path, spec=1)) == 4 and len(load_results(tmp_path, spec=small)) == 4
    assert len(load_results(tmp_path, spec=2)) == 9
    again = run_sweep(tiny_pipe, small, tmp_path, log=lambda m: None)  # an earlier spec resumes: nothing new
    assert sorted(again.image_sha256) == sorted(first.image_sha256)
    assert len(list((tmp_path / "specs").glob("*.yaml"))) == 2


def test_growing_with_other_adapters_is_refused(tiny_pipe, tmp_path):
    from workbench.lora import random_lora
    run_sweep(tiny_pipe, grid([1.0], [0]), tmp_path / "run", log=lambda m: None)
    path = random_lora(tiny_pipe, 2, tmp_path / "extra.safetensors")
    assert not getattr(tiny_pipe.unet, "peft_config", None)
    with pytest.raises(ValueError, match="holds images of another model or other adapters"):
        run_sweep(tiny_pipe, grid([1.0], [0], adapters={"extra": str(path)}), tmp_path / "run", log=lambda m: None)
    assert not (tmp_path / "run" / "specs").exists()  # nothing recorded for a refused spec
    assert not getattr(tiny_pipe.unet, "peft_config", None)  # nor loaded: refused before the adapters load


@pytest.mark.integration  # a growing sweep in another process, killed and resumed (25 s)
def test_killed_during_growth_then_resumed_loses_and_duplicates_nothing(tmp_path):
    small, big = grid([0.0, 1.0], [0, 1], steps=4), grid([0.0, 0.5, 1.0], [0, 1, 2], steps=4)
    small.save(tmp_path / "small.yaml")
    big.save(tmp_path / "big.yaml")
    run_dir = tmp_path / "run"
    assert start_sweep(tmp_path / "small.yaml", run_dir).wait(timeout=300) == 0
    crashed = start_sweep(tmp_path / "big.yaml", run_dir, WORKBENCH_FAULT="after_image")
    crashed.communicate(timeout=300)
    assert crashed.returncode == -9
    resumed = start_sweep(tmp_path / "big.yaml", run_dir)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr.decode()[-2000:]
    check_run(run_dir, len(expand(big)))
    assert len(list((run_dir / "specs").glob("*.yaml"))) == 2  # the killed growth's spec, recorded once

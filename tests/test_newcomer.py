"""What a newcomer following the README tripped on (issue #43), each fixed and held here."""

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from workbench import SweepSpec, expand, load_results, run_sweep
from workbench.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
CAPTION = "a red circle on a blue background"
ONE_CELL = {"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2, "seed": [0, 1]}


def test_a_process_with_no_share_finishes_with_no_rows_and_says_so(tiny_pipe, tmp_path):
    """One cell (one scale, two seeds) for two processes: the second has nothing to draw."""
    said = []
    table = run_sweep(tiny_pipe, ONE_CELL, tmp_path, rank=1, world_size=2, log=said.append)
    assert table.empty and any("process 1 of 2 has no share" in line for line in said), said
    assert len(run_sweep(tiny_pipe, ONE_CELL, tmp_path, rank=0, world_size=2, log=said.append)) == 2


def test_numpy_arrays_tuples_and_scalars_are_axes_through_sweepspec(tiny_pipe, tmp_path):
    spec = SweepSpec(model="tiny", prompt=CAPTION, control_image=f"toy:{CAPTION}", steps=np.int64(2),
                     conditioning_scale=np.arange(0, 1.01, 0.5), seed=(0, 1), guidance=5)
    assert spec.conditioning_scale == [0.0, 0.5, 1.0] and spec.seed == [0, 1] and spec.guidance == [5]
    assert type(spec.conditioning_scale[0]) is float and type(spec.steps[0]) is int
    assert len(expand(spec)) == 6
    table = run_sweep(tiny_pipe, spec, tmp_path, log=lambda *_: None)
    assert len(table) == 6 and (table.state == "COMPLETE").all()
    assert not (tmp_path / "specs").exists()  # one spec: no growth log, no duplicate copies
    assert yaml.safe_load((tmp_path / "spec.yaml").read_text())["conditioning_scale"] == [0.0, 0.5, 1.0]


def readme_cli_spec() -> str:
    """The YAML block of the README's "Sweeps from the command line" section."""
    text = (ROOT / "README.md").read_text()
    return re.search(r"```yaml\n(# spec\.yaml:.*?)```", text, re.S).group(1)


def test_the_readme_cli_spec_runs_from_a_fresh_folder(tmp_path, monkeypatch, capsys):
    """The README's commands as written: copy the adapters, then sweep its spec (fewer steps and seeds here)."""
    readme = (ROOT / "README.md").read_text()
    assert "python -m workbench adapters runs/lora" in readme
    spec = yaml.safe_load(readme_cli_spec())
    spec.update(steps=[2], seed=[0])  # the README's 20 steps and 4 seeds take a minute; the files are the point
    monkeypatch.chdir(tmp_path)
    assert main(["adapters", "runs/lora"]) == 0
    Path("spec.yaml").write_text(yaml.safe_dump(spec))
    assert main(["sweep", "spec.yaml", "--run-dir", "runs/x"]) == 0
    table = load_results("runs/x")
    assert len(table) == 3 * 2 * 3 and (table.state == "COMPLETE").all()
    assert set(table.adapter) == {"rank4", "rank8"} and set(table.lora_rank) == {4, 8}


def test_a_missing_lora_file_is_refused_before_the_run_folder_is_made(tiny_pipe, tmp_path):
    spec = {**ONE_CELL, "adapters": {"style": "nowhere/style.safetensors"}, "adapter": ["style"], "lora_weight": [1.0]}
    with pytest.raises(FileNotFoundError, match=r"'nowhere/style.safetensors' does not exist \(adapter 'style'\)"):
        run_sweep(tiny_pipe, spec, tmp_path / "run", log=lambda *_: None)
    assert not (tmp_path / "run").exists()


def test_errors_a_newcomer_met_say_what_to_do(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text("model: toy\nprompt: [a\nseed: 1\n")
    assert main(["sweep", str(tmp_path / "broken.yaml"), "--run-dir", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err
    assert "at line 3, column 5" in error and "\\n" not in error and error.count("\n") == 1, error
    (tmp_path / "typo.yaml").write_text(f"model: tyo\nprompt: [{CAPTION}]\ncontrol_image: 'toy:{CAPTION}'\n")
    assert main(["sweep", str(tmp_path / "typo.yaml"), "--run-dir", str(tmp_path / "r")]) == 2
    assert "model 'tyo' is neither" in (error := capsys.readouterr().err) and "did you mean 'toy'?" in error
    assert "`base`" not in error


def test_missing_weights_name_every_model_at_once_with_sizes(recwarn):
    from workbench import ModelNotAvailableError, load_pipeline
    with pytest.raises(ModelNotAvailableError) as caught:
        load_pipeline("sd15", device="cpu")
    message = str(caught.value)
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5' (about 4.3 GB)" in message
    assert "lllyasviel/sd-controlnet-canny' (about 1.45 GB)" in message and "about 5.75 GB in all" in message
    assert "`hf download" in message and "huggingface-cli download" in message
    assert not [w for w in recwarn if "local_dir_use_symlinks" in str(w.message)]


def test_plot_diff_says_it_takes_dicts(tmp_path):
    import pandas as pd

    from workbench import plot_diff
    with pytest.raises(ValueError, match=r"`a` selects a cell as a dict \{column: value\}.*got 'conditioning_scale'"):
        plot_diff(pd.DataFrame({"seed": [0]}), "conditioning_scale", 0)


def test_a_refused_mlflow_file_store_is_one_line(tiny_pipe, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    from workbench import export_mlflow
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    run_sweep(tiny_pipe, {**ONE_CELL, "seed": [0]}, tmp_path / "run", log=lambda *_: None)
    with pytest.raises(ValueError, match=r"MLflow refused the tracking store 'file:.*MLFLOW_ALLOW_FILE_STORE=true"):
        export_mlflow(tmp_path / "run", tracking_uri=(tmp_path / "mlruns").as_uri(), log=lambda *_: None)

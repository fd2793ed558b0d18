"""The run folder's one door (issue #39, items 1-2): `store.run_store.RunStore` confines every path to the folder, and
every reader of a shared folder (growth, the folder record, the panel, plot_diff) goes through it; input images are
shrunk to a pixel budget at their own bit depth before any float conversion."""

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench import run_sweep
from workbench.store.run_store import RunStore
from workbench.store.safe_files import PlantedFile

ROOT = Path(__file__).resolve().parents[1]
CAPTION = "a red circle on a blue background"
SPEC = {"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2, "seed": [0, 1]}


def planted_link(tmp_path: Path, name: str, text: str) -> tuple[Path, Path]:
    """(an empty run folder, a private file) with `name` in the folder a link to that file holding `text`."""
    victim, run = tmp_path / "private", tmp_path / "run"
    victim.write_text(text)
    run.mkdir()
    (run / name).symlink_to(victim)
    return run, victim


def test_a_store_path_never_leaves_its_folder(tmp_path):
    store = RunStore(tmp_path / "run")
    (tmp_path / "run").mkdir()
    for name in ("/etc/passwd", "../outside.txt", "images/../../outside.txt"):
        with pytest.raises(PlantedFile, match="is not a name inside run folder"):
            store.path(name)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "run" / "images").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PlantedFile, match="'images' in run folder .* is a symbolic link"):
        store.write("images", "x.png", data=b"not through the link")
    assert not any((tmp_path / "elsewhere").iterdir())
    assert store.path("specs", "1.yaml") == tmp_path / "run" / "specs" / "1.yaml"


def cli_sweep(spec: dict, run_dir: Path, tmp_path: Path, name: str) -> subprocess.CompletedProcess:
    """`python -m workbench sweep` in a subprocess (a FIFO that hung it fails the test at the timeout)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "workbench", "sweep", str(path), "--run-dir", str(run_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_growing_a_folder_skips_planted_spec_files_and_never_hangs(tmp_path):
    folder = tmp_path / "run"
    assert cli_sweep(SPEC, folder, tmp_path, "first").returncode == 0
    secret = tmp_path / "id_rsa"
    secret.write_text("model: tiny\nprompt: PRIVATE KEY\n")  # even a link to a valid spec is not read
    (folder / "specs").mkdir(exist_ok=True)
    (folder / "specs" / "7.yaml").symlink_to(secret)
    os.mkfifo(folder / "specs" / "8.yaml")
    done = cli_sweep({**SPEC, "seed": [0, 1, 2]}, folder, tmp_path, "more")
    assert done.returncode == 0, done.stderr[-800:]  # no hang on the FIFO
    assert "skipped '7.yaml'" in done.stderr and "skipped '8.yaml'" in done.stderr
    texts = [p.read_text() for p in (folder / "specs").glob("*.yaml") if p.is_file() and not p.is_symlink()]
    assert texts and not any("PRIVATE KEY" in text for text in texts)
    assert secret.read_text() == "model: tiny\nprompt: PRIVATE KEY\n"


def test_a_planted_folder_record_is_refused_in_one_line(tiny_pipe, tmp_path):
    run, private = planted_link(tmp_path, "workbench.json", '{"trial_id_scheme": 2, "folder_id": "theirs"}')
    with pytest.raises(PlantedFile, match="'workbench.json' in run folder .* is a symbolic link"):
        run_sweep(tiny_pipe, SPEC, run, log=lambda *_: None)
    assert private.read_text() == '{"trial_id_scheme": 2, "folder_id": "theirs"}'


def test_the_panel_and_plot_diff_draw_no_picture_a_forged_row_points_at(tiny_pipe, tmp_path):
    from workbench import load_results
    from workbench.analysis.plots import plot_diff
    from workbench.teaching.panel import compare
    private = tmp_path / "holiday.png"
    Image.new("RGB", (32, 32), (255, 0, 255)).save(private)
    run_sweep(tiny_pipe, {**SPEC, "seed": [0], "guidance": [3.0, 5.0]}, tmp_path / "run", log=lambda *_: None)
    table = load_results(tmp_path / "run")
    assert plot_diff(table, {"guidance": 3.0}, {"guidance": 5.0}) is not None  # the folder's own images draw
    table.loc[0, "image_path"] = str(private)  # a forged row: the path, not the hash
    figure = compare(table, 0, 1)
    drawn = [np.asarray(image.get_array()) for ax in figure.axes for image in ax.get_images()]
    assert not any((image[..., 0] == 255).all() and (image[..., 2] == 255).all() for image in drawn)
    forged = table.assign(image_path=[str(private)] * len(table))  # every path forged, every hash kept
    with pytest.raises(ValueError, match="no pair of images whose sha256 matches its rows"):
        plot_diff(forged, {"guidance": 3.0}, {"guidance": 5.0})


def test_a_large_16_bit_image_is_shrunk_at_its_own_depth_before_any_float(monkeypatch, tmp_path):
    from workbench.models import control
    monkeypatch.setattr(control, "PIXEL_BUDGET", 10_000)
    ramp = (np.arange(400 * 300, dtype=np.uint32).reshape(300, 400) % 65536).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")  # a 16-bit grey PNG, 120,000 pixels
    tracemalloc.start()
    image = control.load_image(tmp_path / "deep.png")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert image.mode == "RGB" and image.width * image.height <= 10_000
    assert abs(image.width / image.height - 4 / 3) < 0.05  # the shape is kept
    assert peak < 400 * 300 * 8 / 2  # never the whole image as float64 (960 kB)
    small = Image.fromarray(ramp[:50, :60])
    assert control.within_budget(small) is small  # an image within the budget is left as it is


def test_a_planted_search_journal_is_refused_and_a_planted_optuna_lock_cannot_stall_it(tmp_path):
    from workbench.studies.search import open_study
    run, victim = planted_link(tmp_path, "search.journal", "mine\n")
    with pytest.raises(PlantedFile, match="'search.journal' in run folder .* is a symbolic link"):
        open_study(run, ["maximize"], None)
    assert victim.read_text() == "mine\n"
    (run / "search.journal").unlink()
    (run / "search.journal.lock").symlink_to(victim)  # optuna would wait for it to go, forever
    assert len(open_study(run, ["maximize"], None).trials) == 0 and victim.read_text() == "mine\n"

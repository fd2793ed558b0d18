"""Someone else's run folder (issue #39): formulas, control codes, swapped images and planted files do no harm."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from workbench import run_sweep
from workbench.__main__ import main
from workbench.store.results import finished_trial_ids, verified_image
from workbench.store.safe_text import csv_cell, printable

ROOT = Path(__file__).resolve().parents[1]
CAPTION = "a red circle on a blue background"
SPEC = {"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2, "seed": [0, 1]}


@pytest.fixture
def folder(tiny_pipe, tmp_path):
    run_sweep(tiny_pipe, SPEC, tmp_path / "run", log=lambda *_: None)
    return tmp_path / "run"


def forge(folder: Path, **changes) -> None:
    """Rewrite the folder's first row with `changes`, as anyone who can write to a shared folder can."""
    log = folder / "results.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    rows[0].update(changes)
    log.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_csv_cells_that_would_be_formulas_get_a_quote_and_numbers_stay_numbers(folder, capsys):
    forge(folder, prompt='=HYPERLINK("http://x.invalid","click")', error="+cmd|' /C calc'!A0", negative_prompt="@SUM(1)")
    assert main(["results", str(folder)]) == 0
    table = pd.read_csv(folder / "results.csv")
    assert set(table.prompt) == {"'" + '=HYPERLINK("http://x.invalid","click")', CAPTION}
    assert "'@SUM(1)" in set(table.negative_prompt) and table.seed.dtype.kind == "i" and table.edge_f1.dtype.kind == "f"
    assert [csv_cell(v) for v in ("-1", "\tx", "\rx", "plain", -1.5)] == ["'-1", "'\tx", "'\rx", "plain", -1.5]


def test_control_codes_from_a_folder_are_printed_as_visible_escapes(folder, capsys):
    osc52 = "\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[2J\x9b31m"  # clipboard write, clear screen, a C1 CSI
    forge(folder, state="FAILED", error=f"boom {osc52}", image_path="", image_sha256="")
    assert main(["results", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out
    assert "boom \\x1b]52;c;ZWNobyBwd25lZA==\\x07\\x1b[2J\\x9b31m" in out
    assert printable("a\nb\tc") == "a\nb\\x09c"


def test_resume_draws_again_a_damaged_or_swapped_image_and_says_how_many(tiny_pipe, folder):
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    first, second = (folder / row["image_path"] for row in rows)
    first.write_bytes(second.read_bytes())  # swapped under its row: the file exists, its hash is another's
    assert finished_trial_ids(folder) == {rows[1]["trial_id"]}
    said = []
    table = run_sweep(tiny_pipe, SPEC, folder, log=said.append)
    assert "1 finished trials have no image matching their row (missing, damaged or replaced): drawing them again" \
        in said
    assert len(table) == 2 and all(verified_image(folder, row) for row in table.to_dict("records"))


def test_a_link_fifo_or_huge_sparse_file_in_an_images_place_is_not_read(folder, tmp_path):
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    image = folder / rows[0]["image_path"]
    secret = tmp_path / "private.png"
    secret.write_bytes(image.read_bytes())  # the same bytes: only the link itself is wrong
    image.unlink()
    image.symlink_to(secret)
    assert verified_image(folder, rows[0]) is None  # a link is not followed, whatever it points at
    image.unlink()
    os.mkfifo(image)
    code = "import sys; from workbench.store.results import verified_image; import json; " \
           f"print(verified_image(__import__('pathlib').Path({str(folder)!r}), json.loads({json.dumps(json.dumps(rows[0]))})))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "None", done.stderr[-500:]  # no hang on a FIFO
    image.unlink()
    with open(image, "wb") as f:
        f.truncate(600 * 2**20)  # 600 MB that take no disk: refused by size before any byte is read
    assert verified_image(folder, rows[0]) is None


def test_a_forged_row_cannot_draw_another_picture_into_a_grid(folder, tmp_path):
    """The row names a private picture by a link in images/ and carries that picture's hash: it is not drawn."""
    import hashlib

    import numpy as np
    from PIL import Image

    from workbench import load_results, plot_grid
    from workbench.analysis.plots import row_image
    private = tmp_path / "private.png"
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(private)
    planted = folder / "images" / "planted.png"
    planted.symlink_to(private)
    forge(folder, image_path="images/planted.png", image_sha256=hashlib.sha256(private.read_bytes()).hexdigest())
    table = load_results(folder)
    forged = table[table.image_path.str.endswith("planted.png")].iloc[0].to_dict()
    assert row_image(forged) is None  # refused: a link, whatever its hash
    honest = table[~table.image_path.str.endswith("planted.png")].iloc[0].to_dict()
    assert row_image(honest).shape == (32, 32, 3)
    plot_grid(table, row="seed", col="conditioning_scale")  # draws the forged cell empty, without failing


def test_mlflow_keeps_its_database_and_artifacts_inside_the_folder(tiny_pipe, tmp_path):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    import mlflow

    from workbench import export_mlflow
    from workbench.analysis.export import sqlite_uri
    odd = tmp_path / "shared?x=1"  # unquoted, `?` started a query: the database went to tmp_path / "shared"
    run_sweep(tiny_pipe, {**SPEC, "seed": [0]}, odd, log=lambda *_: None)
    counts = export_mlflow(odd, log=lambda *_: None)
    assert counts["exported"] == 1 and (odd / "mlflow.db").is_file() and not (tmp_path / "shared").exists()
    planted = tmp_path / "planted"
    run_sweep(tiny_pipe, {**SPEC, "seed": [0]}, planted, log=lambda *_: None)
    mlflow.set_tracking_uri(sqlite_uri(planted / "mlflow.db"))  # someone's database, sending artifacts elsewhere
    mlflow.create_experiment("planted", artifact_location=(tmp_path / "elsewhere").as_uri())
    with pytest.raises(ValueError, match=r"artifacts go to 'file://.*elsewhere', outside the folder: refused"):
        export_mlflow(planted, log=lambda *_: None)
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("planted", [".lock.rank0", "results.jsonl", "report.html", "results.csv"])
def test_a_link_planted_where_the_workbench_writes_never_writes_through(tiny_pipe, folder, tmp_path, planted):
    """A resume (locks, the log), a report or a results export into a folder with a planted link."""
    from workbench import write_report
    from workbench.store.safe_files import PlantedFile
    victim = tmp_path / "bashrc"
    victim.write_text("alias ls='ls --color'\n")
    target = folder / planted
    target.unlink(missing_ok=True)
    target.symlink_to(victim)
    refused = pytest.raises(PlantedFile, match=f"'{planted}' in run folder .* is a symbolic link")
    if planted in (".lock.rank0", "results.jsonl"):
        with refused:
            run_sweep(tiny_pipe, {**SPEC, "seed": [0, 1, 2]}, folder, log=lambda *_: None)
    elif planted == "report.html":
        with refused:
            write_report(folder)
    else:
        assert main(["results", str(folder)]) == 2  # the command stops with the one-line message
    assert victim.read_text() == "alias ls='ls --color'\n" and target.is_symlink()


def test_report_statistics_are_bounded_whatever_a_forged_log_holds(folder):
    """40 numeric columns and 40 unit axes in a forged row would make 40 x 40 x 40 series; the page draws 200."""
    from workbench.analysis.report import MAX_SERIES, report_data
    from workbench import load_results
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    for i, row in enumerate(rows):
        row.update({f"score{k}": float(i + k) for k in range(40)})
        row.update({f"u{k}.scale": float(i) for k in range(40)})
    (folder / "results.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    data = report_data(folder.resolve(), load_results(folder), embed=False)
    assert len(data["stats"]) == MAX_SERIES and any(f"first {MAX_SERIES} of" in note for note in data["notes"])


def test_a_report_does_not_copy_a_planted_spec_link_or_hang_on_a_fifo(folder, tmp_path):
    from workbench import write_report
    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN PRIVATE KEY----- not for the shared folder")
    (folder / "specs").mkdir()
    (folder / "specs" / "1.yaml").symlink_to(secret)
    os.mkfifo(folder / "specs" / "2.yaml")
    code = f"from workbench import write_report; print(write_report({str(folder)!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-800:]  # no hang on the FIFO
    assert "skipped '1.yaml'" in done.stderr and "skipped '2.yaml'" in done.stderr
    assert "PRIVATE KEY" not in (folder / "report.html").read_text()

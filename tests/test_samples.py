"""The shipped photos (`sample:` sources): fixed files, credited, and usable wherever a control image is: a spec file,
the sweep, the panel, `load_image` and `make_canny`; non-square ones keep their aspect ratio, uncropped in the grid."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import workbench as wb
from workbench.spec.samples import SAMPLES, sample

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_sample_is_the_file_its_record_names(name):
    record = SAMPLES[name]
    assert hashlib.sha256(record.path.read_bytes()).hexdigest() == record.sha256
    with Image.open(record.path) as image:
        assert image.size == (record.width, record.height)
    assert wb.load_image(f"sample:{name}").size == (record.width, record.height)


def test_the_readme_credits_each_sample_with_its_licence():
    readme = (ROOT / "README.md").read_text()
    for record in SAMPLES.values():
        line = next((line for line in readme.splitlines() if line.startswith(f"| `sample:{record.name}` |")), "")
        assert record.licence in line and record.credit.split(" (")[0] in line, record.name


def test_an_unknown_sample_is_refused_with_the_names():
    with pytest.raises(ValueError, match=r"unknown sample photo 'cofee' \(did you mean 'coffee'\?\); samples: sample:"):
        sample("sample:cofee")
    with pytest.raises(ValueError, match="unknown sample photo"):
        wb.make_canny("sample:nothing")


def test_a_spec_file_sweeps_a_photo_uncropped(tiny_pipe, tmp_path):
    (tmp_path / "spec.yaml").write_text("model: tiny\nprompt: [a red circle on a blue background]\nseed: [0]\nsteps: [2]\n"
                                        "control_image: sample:coffee\nconditioning_scale: [0.0, 1.0]\n")
    spec = wb.load_spec(tmp_path / "spec.yaml")
    assert spec.resolved_units()[0].image == "sample:coffee"  # a name, not a path beside the spec file
    table = wb.run_sweep(tiny_pipe, spec, tmp_path / "run")
    assert (table.state == "COMPLETE").all() and set(zip(table.width, table.height)) == {(48, 32)}
    figure = wb.plot_grid(table, row="conditioning_scale", col="seed")
    shown = figure.axes[0].images[0].get_array()
    assert shown.shape[:2] == (32, 48)  # the whole image, not a square crop
    import matplotlib.pyplot as plt
    plt.close(figure)


def test_the_panel_takes_a_sample(tiny_pipe, tmp_path):
    panel = wb.SweepPanel(tiny_pipe, control_image="sample:camera", run_root=tmp_path, model="tiny",
                          prompt="a red circle on a blue background")
    panel.steps.value, panel.seeds.value, panel.scale_count.value = 2, "0", 2
    panel.run_button.click()
    panel.wait(120)
    assert len(panel.table) == 2 and (panel.table.state == "COMPLETE").all()
    assert set(panel.table.control_image) == {"sample:camera"}


def test_a_greyscale_sample_draws_an_rgb_control():
    edges = wb.make_canny("sample:camera", resolution=64)
    assert edges.mode == "RGB" and edges.size == (64, 64) and np.asarray(edges).max() == 255

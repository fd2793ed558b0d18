"""SweepPanel driven headlessly: set values, click Run/Stop, check rows, grid and messages."""

import pytest

import workbench.engine.run as run_module  # where a batch's pipeline call is made
import workbench.sweep as sweep_module
from workbench.widgets import SweepPanel, compare, parse_seeds

CAPTION = "a red circle on a blue background"


def make_panel(pipe, tmp_path, **kwargs):
    panel = SweepPanel(pipe, run_root=tmp_path, model="tiny", prompt=CAPTION, **kwargs)
    panel.steps.value, panel.seeds.value, panel.scale_count.value = 2, "0-1", 2
    return panel


def test_run_button_fills_the_table_and_grid(tiny_pipe, tmp_path):
    panel = make_panel(tiny_pipe, tmp_path)
    panel.run_button.click()
    panel.wait(120)
    assert len(panel.table) == 4 and (panel.table.state == "COMPLETE").all()
    assert panel.progress.value == panel.progress.max == 4
    grid = panel.grid_image.value
    assert grid[:8] == b"\x89PNG\r\n\x1a\n" and "COMPLETE" in panel.table_html.value
    assert "4 images" in panel.message.value
    panel.row_picker.value = "conditioning_scale"  # re-plot without re-running
    panel.col_picker.value = "seed"
    assert panel.grid_image.value != grid


def test_rerun_resumes_in_the_same_folder(tiny_pipe, tmp_path):
    panel = make_panel(tiny_pipe, tmp_path)
    panel.run_button.click()
    panel.wait(120)
    first = panel.run_dir
    panel.run_button.click()
    panel.wait(120)
    assert panel.run_dir == first and len(panel.table) == 4


def test_a_changed_grid_grows_the_same_folder(tiny_pipe, tmp_path):
    panel = make_panel(tiny_pipe, tmp_path)
    panel.run_button.click()
    panel.wait(120)
    first, old = panel.run_dir, set(panel.table.image_sha256)
    panel.seeds.value, panel.scale_count.value = "0-2", 3  # 2 x 2 -> 3 x 3: 5 new images
    panel.run_button.click()
    panel.wait(120)
    assert panel.run_dir == first and len(panel.table) == 9 and old <= set(panel.table.image_sha256)
    assert len(list((first / "images").glob("*.png"))) == 9 and "9 images" in panel.message.value


def test_stop_button_stops_after_a_batch(tiny_pipe, tmp_path, monkeypatch):
    panel = make_panel(tiny_pipe, tmp_path)
    panel.scale_count.value = 10  # 20 images: a batch of 16, then 4
    real = sweep_module.call_pipeline

    def clicked_while_generating(*args):
        panel.stop_button.click()  # the user presses Stop while the first batch is on its way
        return real(*args)

    monkeypatch.setattr(run_module, "call_pipeline", clicked_while_generating)
    panel.run_button.click()
    panel.wait(120)
    assert len(panel.table) == 16 and "stopped" in panel.message.value  # one batch of 16


@pytest.mark.parametrize("field,value,match", [("seeds", "0-x", "seeds"), ("lora_weights", "a, b", "LoRA weights"),
                                               ("lora_weights", "0.5", "need an adapter")])
def test_bad_input_shows_a_message_not_a_traceback(tiny_pipe, tmp_path, field, value, match):
    panel = make_panel(tiny_pipe, tmp_path)
    getattr(panel, field).value = value
    panel.run_button.click()
    assert match in panel.message.value and "color:#c0392b" in panel.message.value
    assert panel._thread is None


def test_parse_seeds():
    assert parse_seeds("0-3, 42") == [0, 1, 2, 3, 42]
    with pytest.raises(ValueError, match="backwards"):
        parse_seeds("5-2")


def test_compare_titles_the_differences(tiny_pipe, tmp_path):
    panel = make_panel(tiny_pipe, tmp_path)
    panel.run_button.click()
    panel.wait(120)
    fig = compare(panel.table, 0, 3)
    assert "conditioning_scale" in fig.axes[0].get_title() and "seed" in fig.axes[1].get_title()


def test_search_mode_finds_a_scale_and_plots_it_live(tiny_pipe, tmp_path):
    panel = make_panel(tiny_pipe, tmp_path)
    panel.mode.value, panel.target.value, panel.budget.value = "Search", "edge_recall>=0.0", 4
    panel.run_button.click()
    panel.wait(120)
    result = panel.search_result
    assert result is not None and result.best == {"conditioning_scale": 0.0} and result.images == 4
    assert panel.grid_image.value[:8] == b"\x89PNG\r\n\x1a\n" and panel.message.value.count("best conditioning_scale")
    assert (panel.run_dir / "search.json").exists() and panel.run_dir.name.startswith("search-")


def test_search_mode_shows_a_bad_target(tiny_pipe, tmp_path):
    panel = make_panel(tiny_pipe, tmp_path)
    panel.mode.value, panel.target.value = "Search", "edge_f1 about 0.9"
    panel.run_button.click()
    assert "a target reads 'column&gt;=value'" in panel.message.value and panel._thread is None


def test_the_panel_shows_the_seed_statistics_the_report_shows(tiny_pipe, tmp_path):
    from workbench.statistics import cell_stats
    from workbench.widgets import seed_statistics_html
    panel = make_panel(tiny_pipe, tmp_path)
    panel.seeds.value = "0-3"
    panel.run_button.click()
    panel.wait(120)
    html = panel.stats_html.value
    assert "edge_f1 over seeds" in html and "p vs first (Wilcoxon, Holm)" in html
    cells = cell_stats(panel.table, "edge_f1", by=["conditioning_scale"])
    assert f"{cells.ci_high.iloc[-1]:.3f}" in html  # the same numbers as cell_stats (and report.html)
    assert seed_statistics_html(panel.table, "seed") == ""  # seeds are what the statistics run over


def test_the_schedules_control_adds_the_axis_only_when_chosen(tiny_pipe, tmp_path):
    panel = make_panel(tiny_pipe, tmp_path)
    assert "control_schedule" not in panel.spec().parameters()  # "constant" alone: the spec as it always was
    panel.schedules.value = ("constant", "ramp@0.5")
    assert panel.spec().control_schedule == ["constant", "ramp@0.5"]
    assert (panel.steps.value, panel.guidance.value) == (2, 5.0)  # the tiny model's profile gave guidance 5


def test_a_cell_sweep_waits_for_the_panels_sweep_on_the_same_pipeline(tiny_pipe, tmp_path, monkeypatch):
    """The panel's thread and a notebook cell share `pipe`: the second sweep waits, and says so, instead of mixing."""
    import threading
    from workbench import run_sweep
    panel = make_panel(tiny_pipe, tmp_path / "panel")
    started, release = threading.Event(), threading.Event()
    real = sweep_module.call_pipeline

    def slow_first_batch(*args, **kwargs):
        started.set()
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "call_pipeline", slow_first_batch)
    panel.run_button.click()
    assert started.wait(30)
    said, done = [], threading.Event()
    spec = {"model": "tiny", "prompt": CAPTION, "steps": 2, "seed": [5]}
    cell = threading.Thread(target=lambda: (run_sweep(tiny_pipe, spec, tmp_path / "cell", log=said.append), done.set()))
    cell.start()
    assert not done.wait(2) and any("waiting for it to finish" in line for line in said)
    release.set()
    panel.wait(120)
    cell.join(120)
    assert done.is_set() and len(panel.table) == 4

"""Plots from synthetic results tables: labels, failed cells, seeds, facets, guards, metric curves."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from workbench.curves import plot_metric
from workbench.plots import MAX_CELLS, plot_grid


@pytest.fixture
def table(tmp_path):
    rows = []
    for weight in (0.0, 1.0):
        for scale in (0.0, 0.5, 1.0):
            for seed in (0, 1):
                path = tmp_path / f"{weight}-{scale}-{seed}.png"
                Image.new("RGB", (8, 8), (int(200 * scale), 50 * seed, int(100 * weight))).save(path)
                failed = weight == 1.0 and scale == 1.0
                rows.append({"lora_weight": weight, "conditioning_scale": scale, "seed": seed, "adapter": "rank4",
                             "state": "FAILED" if failed else "COMPLETE", "image_path": "" if failed else str(path),
                             "error": "RuntimeError: boom" if failed else "", "edge_f1": scale / 2 + seed * 0.1})
    return pd.DataFrame(rows)


def test_grid_has_a_cell_per_value_pair_and_labels(table):
    fig = plot_grid(table, row="lora_weight", col="conditioning_scale", control=Image.new("RGB", (8, 8)))
    assert len(fig.axes) == 2 * (3 + 1)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:4] == ["control", "0.0", "0.5", "1.0"]
    assert fig._supxlabel.get_text() == "conditioning_scale" and fig._supylabel.get_text() == "lora_weight"


def test_failed_cells_are_marked_with_their_error(table):
    fig = plot_grid(table, row="lora_weight", col="conditioning_scale")
    failed_ax = fig.axes[5]  # row 1.0, column 1.0
    assert "FAILED: RuntimeError: boom" in failed_ax.get_xlabel() and not failed_ax.images
    assert fig.axes[0].images  # a complete cell shows its image


def test_seeds_all_shows_a_strip(table):
    first = plot_grid(table, "lora_weight", "conditioning_scale", seeds="first").axes[0].images[0].get_array()
    strip = plot_grid(table, "lora_weight", "conditioning_scale", seeds="all").axes[0].images[0].get_array()
    assert strip.shape[1] == 2 * first.shape[1]


def test_facets_give_one_figure_each(table):
    figs = plot_grid(table.assign(adapter=np.where(table.seed == 0, "rank4", "rank8")), "lora_weight",
                     "conditioning_scale", facet="adapter")
    assert [f._suptitle.get_text() for f in figs] == ["adapter = rank4", "adapter = rank8"]


def test_size_guard_and_paging(tmp_path):
    big = pd.DataFrame({"a": np.repeat(range(30), 20), "b": np.tile(range(20), 30), "image_path": ""})
    assert 30 * 20 > MAX_CELLS
    with pytest.raises(ValueError, match="more than 400 cells; pass page"):
        plot_grid(big, "a", "b")
    assert len(plot_grid(big, "a", "b", page=2).axes) == 6 * 20  # the last page holds rows 24-29
    with pytest.raises(ValueError, match="past the last page"):
        plot_grid(big, "a", "b", page=3)


def test_bad_arguments(table):
    with pytest.raises(ValueError, match="column 'rank' is not in the table"):
        plot_grid(table, "rank", "conditioning_scale")
    with pytest.raises(ValueError, match="`seeds`"):
        plot_grid(table, "lora_weight", "conditioning_scale", seeds="some")


def test_saves_png_and_pdf(table, tmp_path):
    fig = plot_grid(table, "lora_weight", "conditioning_scale")
    for name in ("grid.png", "grid.pdf"):
        fig.savefig(tmp_path / name)
        assert (tmp_path / name).stat().st_size > 1000


def test_metric_curve_per_hue_with_spread(table):
    fig = plot_metric(table, x="conditioning_scale", y="edge_f1", hue="lora_weight")
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and len(ax.collections) == 2
    assert ax.get_xlabel() == "conditioning_scale" and ax.get_ylabel() == "edge_f1"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.05, 0.3, 0.55])  # means over the two seeds
    assert len(plot_metric(table, hue=None, spread="ci").axes[0].lines) == 1


def test_adapter_names_sort_naturally():
    import pandas as pd
    from workbench.plots import ordered_values
    assert ordered_values(pd.Series(["rank16", "rank2", "rank1", "rank8"])) == ["rank1", "rank2", "rank8", "rank16"]
    assert ordered_values(pd.Series([1.0, 0.5, 0.0, 0.5])) == [0.0, 0.5, 1.0]


def test_plot_images_wraps_into_rows_of_columns():
    from workbench.plots import plot_images
    images = [np.full((8, 8, 3), i * 20, np.uint8) for i in range(5)]
    figure = plot_images(images, [f"image {i}" for i in range(5)], columns=2)
    shown = [ax for ax in figure.axes if ax.images]
    assert len(figure.axes) == 6 and len(shown) == 5  # 3 rows of 2; the last cell stays empty
    assert [ax.get_title() for ax in shown] == [f"image {i}" for i in range(5)]
    assert len(plot_images(images).axes) == 5
    with pytest.raises(ValueError, match="positive integer, got 0"):
        plot_images(images, columns=0)

"""Seed statistics: intervals that cover, paired tests that are calibrated and honest at small n, on known truths."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from workbench.statistics import cell_stats, compare_cells, holm, seeds_needed, wilson_interval


def table_of(columns: dict, n: int) -> pd.DataFrame:
    """A results table: one row per (value of `scale`, seed), `edge_f1` given per scale as n values."""
    rows = [{"scale": scale, "seed": seed, "edge_f1": float(values[seed]), "state": "COMPLETE"}
            for scale, values in columns.items() for seed in range(n)]
    return pd.DataFrame(rows)


def test_power_pairing_finds_a_tenth_of_the_seed_spread():
    """12 seeds, each with its own level (spread 1); scale 1 adds 0.1 to every seed: p < 0.01 paired."""
    rng = np.random.default_rng(0)
    seed_level = rng.normal(0, 1, 12)
    table = table_of({0.0: seed_level + rng.normal(0, 0.01, 12),
                      1.0: seed_level + 0.1 + rng.normal(0, 0.01, 12)}, 12)
    row = compare_cells(table, "edge_f1", "scale").iloc[0]
    assert row.n_pairs == 12 and row.p_value < 0.01 and row.significant
    assert row.ci_low > 0 and row.mean_diff == pytest.approx(0.1, abs=0.02)
    unpaired = stats.mannwhitneyu(table[table.scale == 0].edge_f1, table[table.scale == 1].edge_f1).pvalue
    assert unpaired > 0.5  # the same data, unpaired: the seeds' spread hides the difference


@pytest.mark.parametrize("test", ["wilcoxon", "permutation", "t"])
def test_calibration_no_difference_is_flagged_about_alpha_of_the_time(test):
    rng = np.random.default_rng(1)
    flagged = 0
    for _ in range(200):
        level = rng.normal(0, 1, 10)
        table = table_of({0.0: level + rng.normal(0, 0.1, 10), 1.0: level + rng.normal(0, 0.1, 10)}, 10)
        flagged += bool(compare_cells(table, "edge_f1", "scale", test=test).significant.iloc[0])
    assert 0.02 <= flagged / 200 <= 0.08, flagged


def test_coverage_of_the_cell_mean_interval_at_eight_seeds():
    rng = np.random.default_rng(2)
    hits = 0
    for replicate in range(200):
        table = table_of({1.0: rng.normal(0.5, 0.1, 8)}, 8)
        row = cell_stats(table, "edge_f1", by=["scale"], seed=replicate).iloc[0]
        hits += row.ci_low <= 0.5 <= row.ci_high
    assert hits / 200 >= 0.90, hits


def test_five_seeds_can_never_be_significant_and_say_so():
    table = table_of({0.0: [0.1, 0.2, 0.3, 0.4, 0.5], 1.0: [0.9, 1.0, 1.1, 1.2, 1.3]}, 5)
    for test in ("wilcoxon", "permutation"):
        row = compare_cells(table, "edge_f1", "scale", test=test).iloc[0]
        assert row.min_p == pytest.approx(0.0625) and row.p_value == pytest.approx(0.0625) and not row.significant


def test_small_cells_get_no_made_up_interval():
    row = cell_stats(table_of({1.0: [0.4, 0.6]}, 2), "edge_f1", by=["scale"]).iloc[0]
    assert row.n == 2 and math.isnan(row.ci_low) and math.isnan(row.ci_high) and row.method == "n < 3: no interval"


def test_a_proportion_gets_wilsons_interval_and_equal_values_a_point():
    share = cell_stats(table_of({1.0: [1, 1, 0, 1, 1, 1, 0, 1]}, 8), "edge_f1", by=["scale"]).iloc[0]
    assert share.method == "Wilson (0/1 values)"
    assert (share.ci_low, share.ci_high) == pytest.approx(wilson_interval(6, 8, 0.95))
    assert 0.4 < share.ci_low < 0.75 < share.ci_high < 1
    flat = cell_stats(table_of({1.0: [0.3] * 6}, 6), "edge_f1", by=["scale"]).iloc[0]
    assert flat.ci_low == flat.ci_high == pytest.approx(0.3) and "all values equal" in flat.method


def test_the_interval_is_reproducible():
    table = table_of({1.0: np.random.default_rng(3).normal(0, 1, 8)}, 8)
    assert cell_stats(table, "edge_f1", by=["scale"]).equals(cell_stats(table, "edge_f1", by=["scale"]))


def test_broken_pairs_are_dropped_and_counted_and_unpaired_data_refused():
    table = table_of({0.0: [0.1, 0.2, 0.3, 0.4], 1.0: [0.5, 0.6, 0.7, 0.8]}, 4)
    table.loc[(table.scale == 1.0) & (table.seed == 2), "state"] = "FAILED"
    row = compare_cells(table, "edge_f1", "scale").iloc[0]
    assert row.n_pairs == 3 and row.dropped == 1
    other_seeds = table_of({0.0: [0.1, 0.2, 0.3]}, 3)
    other_seeds = pd.concat([other_seeds, table_of({1.0: [0.5, 0.6, 0.7]}, 3).assign(seed=lambda t: t.seed + 10)])
    with pytest.raises(ValueError, match="unpaired"):
        compare_cells(other_seeds, "edge_f1", "scale")


def test_baseline_neighbours_and_holm():
    rng = np.random.default_rng(4)
    level = rng.normal(0, 1, 8)
    table = table_of({s: level + s + rng.normal(0, 0.01, 8) for s in (0.0, 0.5, 1.0)}, 8)
    neighbours = compare_cells(table, "edge_f1", "scale")
    assert list(zip(neighbours.a, neighbours.b)) == [(0.0, 0.5), (0.5, 1.0)]
    against = compare_cells(table, "edge_f1", "scale", baseline=0.0)
    assert list(zip(against.a, against.b)) == [(0.0, 0.5), (0.0, 1.0)] and against.significant.all()
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    with pytest.raises(ValueError, match="`test` must be one of"):
        compare_cells(table, "edge_f1", "scale", test="anova")


def test_seeds_needed_follows_the_formula():
    rng = np.random.default_rng(5)
    level = rng.normal(0, 1, 40)
    table = table_of({0.0: level, 1.0: level + 0.05 + rng.normal(0, 0.1, 40)}, 40)
    differences = table[table.scale == 1].edge_f1.to_numpy() - table[table.scale == 0].edge_f1.to_numpy()
    sd = differences.std(ddof=1)
    expected = math.ceil(((1.959964 + 0.841621) * sd / 0.05) ** 2 + 1.959964 ** 2 / 2)
    assert seeds_needed(table, "edge_f1", "scale", effect=0.05) == expected
    assert 25 <= expected <= 50  # sd about 0.1: about 31 + 2 seeds for a shift of half of it


def test_on_a_real_toy_sweep(tmp_path):
    """Scale 0 against 1 on the toy model, 6 seeds: control changes edge F1 beyond any seed's noise."""
    from workbench import load_pipeline, run_sweep
    pipe = load_pipeline("toy", device="cpu")
    table = run_sweep(pipe, {"prompt": ["a red circle on a blue background"], "steps": [4], "seed": list(range(6)),
                             "control_image": "toy:a red circle on a blue background",
                             "conditioning_scale": [0.0, 1.0]}, tmp_path, log=lambda m: None)
    cells = cell_stats(table, "edge_f1", by=["conditioning_scale"])
    assert list(cells.n) == [6, 6] and (cells.ci_low <= cells["mean"]).all() and (cells["mean"] <= cells.ci_high).all()
    row = compare_cells(table, "edge_f1", "conditioning_scale").iloc[0]
    assert row.n_pairs == 6 and row.mean_diff > 0 and row.min_p == pytest.approx(2 / 64)


@pytest.fixture(scope="module")
def eight_seeds(tmp_path_factory):
    """The toy model, scales 0 and 1 x 8 seeds: what notebook 03's "is it real?" section draws."""
    from workbench import load_pipeline, run_sweep
    pipe = load_pipeline("toy", device="cpu")
    folder = tmp_path_factory.mktemp("eight")
    return folder, run_sweep(pipe, {"prompt": ["a red circle on a blue background"], "steps": [4],
                                    "seed": list(range(8)), "control_image": "toy:a red circle on a blue background",
                                    "conditioning_scale": [0.0, 1.0]}, folder, log=lambda m: None)


def test_an_annotated_grid_stars_a_real_difference(eight_seeds):
    from workbench.plots import plot_grid
    folder, table = eight_seeds
    figure = plot_grid(table, row="seed", col="conditioning_scale", annotate="edge_f1")
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert len(titles) == 2 and all("±" in t for t in titles) and titles[1].endswith("★")
    assert "Wilcoxon signed-rank" in figure.texts[-1].get_text() and "p=" in figure.texts[-1].get_text()
    figure.savefig(folder / "annotated.png", dpi=80, bbox_inches="tight")


def test_plot_diff_shows_paired_seeds_and_their_difference(eight_seeds):
    from workbench.plots import plot_diff
    folder, table = eight_seeds
    figure = plot_diff(table, {"conditioning_scale": 0.0}, {"conditioning_scale": 1.0}, max_pairs=3)
    assert len(figure.axes) == 9 and figure.axes[2].get_title().startswith("|a - b|, mean ")
    assert float(figure.axes[2].get_title().split("mean ")[1]) > 0
    figure.savefig(folder / "diff.png", dpi=80, bbox_inches="tight")
    with pytest.raises(ValueError, match="no seed has both"):
        plot_diff(table, {"conditioning_scale": 0.0}, {"conditioning_scale": 7.0})


def test_the_metric_curve_band_is_the_seed_interval_and_says_so(eight_seeds):
    from workbench.curves import plot_metric
    _, table = eight_seeds
    figure = plot_metric(table, x="conditioning_scale", y="edge_f1", hue=None)
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels == ["95% CI over seeds (bootstrap)"]
    band = figure.axes[0].collections[0].get_paths()[0].vertices[:, 1]
    cells = cell_stats(table, "edge_f1", by=["conditioning_scale"])
    assert band.min() == pytest.approx(cells.ci_low.min()) and band.max() == pytest.approx(cells.ci_high.max())

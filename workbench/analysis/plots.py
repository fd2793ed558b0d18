"""Pictures of a results table (one row per image): labelled image grids, image rows, and paired differences.

Plotting is a pure function of the table: any two columns as rows and columns, an
optional third as facets (one figure each), seeds as a strip or the first only.
FAILED rows are drawn as a marked empty cell with their error underneath.
"""

from __future__ import annotations

import re
from pathlib import Path
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

from ..spec.control_schedules import schedule_curve
from ..store.results import verified_image
from .statistics import cell_stats, compare_cells

MAX_CELLS = 400   # one figure with more cells is unreadable; page it (`page=`) or filter the table
PAGE_ROWS = 12    # rows per page when a grid is paged


def show_in_notebooks() -> None:
    """Inside a Jupyter kernel, draw figures inline whatever MPLBACKEND says.

    Docker images and headless servers often set MPLBACKEND=Agg; kernels inherit it, and
    then a notebook shows no figure at all. Switching to the inline backend fixes that.
    """
    from IPython import get_ipython
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return  # a script or a plain terminal: the backend is the user's choice
    backend = plt.get_backend().lower()
    if not any(name in backend for name in ("inline", "ipympl", "widget", "nbagg")):
        shell.run_line_magic("matplotlib", "inline")


# Okabe and Ito's palette, told apart with the common forms of colour blindness (deuteranopia, protanopia,
# tritanopia); the lines of one metric plot also differ in marker (`MARKERS`), a cue that needs no colour.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def new_figure(*args, **kwargs):
    """`plt.subplots`, shown in notebooks whatever the backend, its lines in `PALETTE`."""
    from cycler import cycler
    show_in_notebooks()
    fig, axes = plt.subplots(*args, **kwargs)
    for ax in np.atleast_1d(axes).ravel():
        ax.set_prop_cycle(cycler(color=PALETTE))
    return fig, axes


def check_columns(df: pd.DataFrame, *names: str) -> None:
    for name in names:
        if name is not None and name not in df.columns:
            raise ValueError(f"column {name!r} is not in the table; columns are {list(df.columns)}")


def natural_key(value) -> list:
    """Sort key reading digit runs as numbers, so "rank2" comes before "rank16"."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", str(value))]


def ordered_values(series: pd.Series) -> list:
    """The distinct values of a column, sorted: numbers numerically, text naturally (rank2 before rank16)."""
    values = series.drop_duplicates().tolist()
    if all(isinstance(v, str) for v in values):
        return sorted(values, key=natural_key)
    try:
        return sorted(values)
    except TypeError:  # mixed types
        return sorted(values, key=natural_key)


def cell_image(rows: pd.DataFrame, seeds) -> np.ndarray | None:
    """A cell's picture: its first seed, every seed side by side ("all"), or the first n seeds."""
    done = rows[(rows.get("state", "COMPLETE") == "COMPLETE") & rows.image_path.astype(bool)]
    done = done.sort_values("seed") if "seed" in done else done
    keep = len(done) if seeds == "all" else 1 if seeds == "first" else int(seeds)
    images = [image for row in done.head(keep).to_dict("records") if (image := row_image(row)) is not None]
    return np.concatenate(images, axis=1) if images else None


def pair_images(pair) -> list:
    """The two images of a merged pair of rows (`_a`, `_b` columns), each opened as `row_image` opens one."""
    return [row_image({field: getattr(pair, f"{field}_{side}", None) for field in ("image_path", "image_sha256", "state")})
            for side in ("a", "b")]


def row_image(row: dict) -> np.ndarray | None:
    """A row's image as (H, W, 3) uint8. A row of a run folder (with `image_sha256`) is opened only as the report
    opens it (`results.verified_image`: a regular file in its folder's images/ with that hash), so a forged row
    cannot draw another file into a grid; a table built by hand, without hashes, opens its paths as given."""
    path = Path(str(row.get("image_path") or ""))
    if row.get("image_sha256"):
        path = verified_image(path.parent.parent, row)
        if path is None:
            return None
    return np.asarray(Image.open(path).convert("RGB"))


def draw_failed(ax, rows: pd.DataFrame) -> None:
    """An empty cell crossed in red, with the first error as a caption."""
    ax.set_facecolor("#fbe9e9")
    ax.plot([0, 1], [0, 1], color="#c0392b", transform=ax.transAxes)
    ax.plot([0, 1], [1, 0], color="#c0392b", transform=ax.transAxes)
    errors = rows.get("error", pd.Series(dtype=str)).dropna()
    message = next((e for e in errors if e), "FAILED")
    ax.set_xlabel(textwrap.shorten(f"FAILED: {message}", 60), fontsize=6, color="#c0392b")


def plot_grid(df: pd.DataFrame, row: str = "lora_weight", col: str = "conditioning_scale", facet: str | None = None,
              seeds="first", control: Image.Image | None = None, title: str | None = None,
              page: int | None = None, cell_inches: float = 1.6, annotate: str | None = None):
    """Image grid of a results table: `row` values down, `col` values across, labelled once per axis.

    Args:
        df: the table from `run_sweep` / `load_results`.
        row, col: the columns whose values make the rows and columns.
        facet: a third column; returns a list of figures, one per value.
        seeds: "first" (lowest seed), "all" (a strip of every seed) or an int (the first n).
        control: the control image, drawn left of the first row as a reference.
        page: for grids over MAX_CELLS cells, which page of PAGE_ROWS rows to draw (from 0).
        annotate: a metric (e.g. "edge_f1"): under each column and row header, its mean over the
            cell's seeds and other parameters, +- the half-width of the 95% interval; a header that
            differs from its axis's first value (Wilcoxon, paired over seeds and every other
            parameter, Holm p < 0.05) gets a star, with the p-values in a footnote.
    Returns a matplotlib Figure (a list of Figures with `facet`). Save with fig.savefig("x.png" or "x.pdf").
    """
    check_columns(df, row, col, facet, "image_path")
    if not (seeds in ("first", "all") or (isinstance(seeds, int) and seeds > 0)):
        raise ValueError(f"`seeds` must be 'first', 'all' or a positive int, got {seeds!r}")
    if facet is not None:
        return [plot_grid(df[df[facet] == value], row, col, None, seeds, control,
                          f"{title + ', ' if title else ''}{facet} = {value}", page, cell_inches, annotate)
                for value in ordered_values(df[facet])]
    rows, cols = ordered_values(df[row]), ordered_values(df[col])
    if len(rows) * len(cols) > MAX_CELLS:
        if page is None:
            raise ValueError(f"a {len(rows)}x{len(cols)} grid has more than {MAX_CELLS} cells; pass page=0.. "
                             f"({PAGE_ROWS} rows a page) or filter the table first")
        rows = rows[page * PAGE_ROWS:(page + 1) * PAGE_ROWS]
        if not rows:
            raise ValueError(f"page {page} is past the last page")
    notes = {axis: axis_notes(df, axis, annotate) for axis in (col, row)} if annotate else {col: {}, row: {}}
    strip = 1 if seeds == "first" else df["seed"].nunique() if seeds == "all" else seeds
    extra = 1 if control is not None else 0
    fig, axes = new_figure(len(rows), len(cols) + extra, squeeze=False,
                             figsize=(cell_inches * (len(cols) * min(strip, 4) + extra), cell_inches * len(rows)))
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i, j + extra]
            ax.set_xticks([])
            ax.set_yticks([])
            cell = df[(df[row] == r) & (df[col] == c)]
            image = cell_image(cell, seeds) if len(cell) else None
            if image is not None:
                ax.imshow(image, interpolation="nearest")  # small toy images stay sharp when enlarged
            elif len(cell):
                draw_failed(ax, cell)
            else:
                ax.set_facecolor("#eeeeee")  # no trial for this combination (zip mode, filtering)
            if i == 0:
                ax.set_title(f"{c}{notes[col].get(c, '')}", fontsize=9, pad=22 if is_schedule(col) else 6)
                if is_schedule(col):
                    draw_schedule(ax, c)
            if j == 0:
                ax.set_ylabel(f"{r}{notes[row].get(r, '')}", fontsize=9)
        if extra:
            axes[i, 0].axis("off")
    if extra:
        axes[0, 0].imshow(np.asarray(control), interpolation="nearest")
        axes[0, 0].set_title("control", fontsize=9)
    fig.supxlabel(col, fontsize=10)
    fig.supylabel(row, fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    if annotate:
        footnote = grid_footnote(df, annotate, [col, row])
        fig.text(0.01, -0.02, footnote, fontsize=7, va="top", wrap=True)
    return fig


def is_schedule(column: str) -> bool:
    """True for a ControlNet schedule axis (`control_schedule`, `canny.schedule`)."""
    return column == "control_schedule" or column.endswith(".schedule")


def draw_schedule(ax, value) -> None:
    """A small curve of a schedule's factor over the steps, above a grid column (0 to 1, left to right)."""
    curve = ax.inset_axes([0.05, 1.02, 0.9, 0.16])
    curve.plot(schedule_curve(value, 40), color="#0072B2", linewidth=1.2)
    curve.set_ylim(-0.1, 1.1)
    curve.axis("off")


def axis_notes(df: pd.DataFrame, axis: str, metric: str) -> dict:
    """{axis value: "\nmean ± half-width ★"}: a header's annotation (★ when it differs from the axis's first value)."""
    if axis == "seed" or axis not in df or df[axis].nunique() < 2:  # seeds are what the statistics run over
        return {}
    stats = cell_stats(df, metric, by=[axis]).set_index(axis)
    stars = significant_values(df, axis, metric)
    return {value: f"\n{row['mean']:.2f} ± {(row.ci_high - row.ci_low) / 2:.2f}{' ★' if value in stars else ''}"
            if row.n >= 3 else f"\n{row['mean']:.2f} (n={row.n})" for value, row in stats.iterrows()}


def significant_values(df: pd.DataFrame, axis: str, metric: str) -> dict:
    """{value: Holm p} of the values of `axis` that differ from its first value; {} where nothing pairs."""
    if axis == "seed" or df[axis].nunique() < 2:
        return {}
    try:
        found = compare_cells(df, metric, axis, baseline=ordered_values(df[axis])[0])
    except ValueError:  # unpaired (other seeds), or a table of several sweeps
        return {}
    return dict(zip(found.b[found.significant], found.p_holm[found.significant]))


def grid_footnote(df: pd.DataFrame, metric: str, axes: list[str]) -> str:
    """What the header annotations mean, and each star's p-value."""
    parts = [f"{metric}: mean ± half-width of its 95% interval over seeds (bootstrap)."]
    for axis in axes:
        stars = significant_values(df, axis, metric)
        if stars:
            first = ordered_values(df[axis])[0]
            listed = ", ".join(f"{value} p={p:.3g}" for value, p in stars.items())
            parts.append(f"★ {axis} differs from {first} (Wilcoxon signed-rank, paired over seeds and every other "
                         f"parameter, Holm-corrected): {listed}.")
    return " ".join(parts)


def select(table: pd.DataFrame, where: dict) -> pd.DataFrame:
    """The COMPLETE rows whose columns hold every value of `where`."""
    rows = table[table["state"] == "COMPLETE"] if "state" in table else table
    for column, value in where.items():
        check_columns(rows, column)
        rows = rows[rows[column] == value]
    return rows


def plot_diff(table: pd.DataFrame, a: dict, b: dict, max_pairs: int = 6, cell_inches: float = 1.8):
    """Two cells side by side, seed by seed: image a, image b, and a heat map of their per-pixel difference.

    `a` and `b` select the cells ({"conditioning_scale": 0.5}, ...); their images pair up by
    seed and every other parameter, as `statistics.compare_cells` pairs them. Each heat map is
    |a - b| averaged over the colour channels (0-255), with its mean printed above it.
    """
    from ..store.columns import cell_columns
    for name, where in (("a", a), ("b", b)):
        if not isinstance(where, dict) or not where:
            raise ValueError(f"plot_diff's `{name}` selects a cell as a dict {{column: value}}, e.g. "
                             f"{{'conditioning_scale': 0.5}}; got {str(where)[:60]!r} ({type(where).__name__})")
    first, second = select(table, a), select(table, b)
    keys = [c for c in [*cell_columns(table), "seed"] if c in table and c not in set(a) | set(b)]
    pairs = first.merge(second, on=keys, suffixes=("_a", "_b")).sort_values("seed")
    if pairs.empty:
        raise ValueError(f"no seed has both {a} and {b} with the same other parameters")
    drawn = []  # (pair, its two images), each image opened and hashed once, up to max_pairs
    for pair in pairs.itertuples():
        images = pair_images(pair)
        if all(image is not None for image in images):
            drawn.append((pair, images))
            if len(drawn) == max_pairs:
                break
    if not drawn:  # every image forged or missing: nothing of another file is drawn
        raise ValueError(f"{a} and {b} have no pair of images whose sha256 matches its rows in their run folder")
    fig, axes = new_figure(len(drawn), 3, squeeze=False, figsize=(3 * cell_inches, (cell_inches + 0.35) * len(drawn)))
    label = lambda where: ", ".join(f"{k}={v}" for k, v in where.items())  # noqa: E731
    for ax_row, (pair, images) in zip(axes, drawn):
        images = [image.astype(np.float32) for image in images]
        difference = np.abs(images[0] - images[1]).mean(axis=2)
        for ax, image, title in zip(ax_row, [*images, difference],
                                    [f"{label(a)}\nseed {pair.seed}", f"{label(b)}\nseed {pair.seed}",
                                     f"|a - b|, mean {difference.mean():.1f}"]):
            ax.imshow(image.astype(np.uint8) if image.ndim == 3 else image, interpolation="nearest",
                      cmap=None if image.ndim == 3 else "magma", vmin=0, vmax=255)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    return fig


def plot_images(images, titles=None, cell_inches: float = 1.8, columns: int | None = None):
    """Images with optional titles (control maps, before/after pairs): one row, or rows of `columns`."""
    titles = titles or [""] * len(images)
    columns = len(images) if columns is None else columns
    if not isinstance(columns, int) or columns < 1:
        raise ValueError(f"`columns` must be a positive integer, got {columns!r}")
    rows = -(-len(images) // columns)
    fig, axes = new_figure(rows, columns, squeeze=False, figsize=(cell_inches * columns, (cell_inches + 0.3) * rows))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, title in zip(axes.ravel(), images, titles):
        ax.imshow(np.asarray(image), interpolation="nearest")
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig

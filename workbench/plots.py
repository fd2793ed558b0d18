"""Plots of a results table (one row per image): labelled image grids and metric curves.

Plotting is a pure function of the table: any two columns as rows and columns, an
optional third as facets (one figure each), seeds as a strip or the first only.
FAILED rows are drawn as a marked empty cell with their error underneath.
"""

from __future__ import annotations

import re
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

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


def new_figure(*args, **kwargs):
    """`plt.subplots`, shown in notebooks whatever the backend."""
    show_in_notebooks()
    return plt.subplots(*args, **kwargs)


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
    images = [np.asarray(Image.open(p).convert("RGB")) for p in done.image_path.head(keep)]
    return np.concatenate(images, axis=1) if images else None


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
              page: int | None = None, cell_inches: float = 1.6):
    """Image grid of a results table: `row` values down, `col` values across, labelled once per axis.

    Args:
        df: the table from `run_sweep` / `load_results`.
        row, col: the columns whose values make the rows and columns.
        facet: a third column; returns a list of figures, one per value.
        seeds: "first" (lowest seed), "all" (a strip of every seed) or an int (the first n).
        control: the control image, drawn left of the first row as a reference.
        page: for grids over MAX_CELLS cells, which page of PAGE_ROWS rows to draw (from 0).
    Returns a matplotlib Figure (a list of Figures with `facet`). Save with fig.savefig("x.png" or "x.pdf").
    """
    check_columns(df, row, col, facet, "image_path")
    if not (seeds in ("first", "all") or (isinstance(seeds, int) and seeds > 0)):
        raise ValueError(f"`seeds` must be 'first', 'all' or a positive int, got {seeds!r}")
    if facet is not None:
        return [plot_grid(df[df[facet] == value], row, col, None, seeds, control,
                          f"{title + ', ' if title else ''}{facet} = {value}", page, cell_inches)
                for value in ordered_values(df[facet])]
    rows, cols = ordered_values(df[row]), ordered_values(df[col])
    if len(rows) * len(cols) > MAX_CELLS:
        if page is None:
            raise ValueError(f"a {len(rows)}x{len(cols)} grid has more than {MAX_CELLS} cells; pass page=0.. "
                             f"({PAGE_ROWS} rows a page) or filter the table first")
        rows = rows[page * PAGE_ROWS:(page + 1) * PAGE_ROWS]
        if not rows:
            raise ValueError(f"page {page} is past the last page")
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
                ax.set_title(f"{c}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{r}", fontsize=9)
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
    return fig


def plot_metric(df: pd.DataFrame, x: str = "conditioning_scale", y: str = "edge_f1", hue: str | None = "lora_weight",
                spread: str = "minmax", ax=None):
    """Mean of `y` against `x`, one line per `hue` value, with the spread over seeds shaded.

    spread: "minmax" (the range over seeds) or "ci" (mean +- 1.96 standard errors).
    Effect size against rank at a fixed weight is the same call:
    plot_metric(df[df.lora_weight == 1], x="lora_rank", y="lora_effect", hue=None).
    For y="seconds", warm-up rows (a process's first batch) are left out.
    """
    check_columns(df, x, y, hue)
    if spread not in ("minmax", "ci"):
        raise ValueError(f"`spread` must be 'minmax' or 'ci', got {spread!r}")
    done = df[df["state"] == "COMPLETE"] if "state" in df else df
    if y == "seconds" and "warmup" in done:  # a process's first batch also pays one-time start-up costs
        done = done[done["warmup"] != True]  # noqa: E712 (old rows have no flag: NaN, kept)
    if ax is None:
        _, ax = new_figure(figsize=(5, 3.5))
    groups = [(None, done)] if hue is None else [(v, done[done[hue] == v]) for v in ordered_values(done[hue])]
    for value, group in groups:
        stats = group.groupby(x)[y].agg(["mean", "min", "max", "std", "count"])
        label = None if hue is None else f"{hue} = {value}"
        line, = ax.plot(stats.index, stats["mean"], marker="o", label=label)
        if spread == "minmax":
            low, high = stats["min"], stats["max"]
        else:
            half = 1.96 * stats["std"].fillna(0) / np.sqrt(stats["count"])
            low, high = stats["mean"] - half, stats["mean"] + half
        ax.fill_between(stats.index, low, high, alpha=0.2, color=line.get_color())
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if hue is not None:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure


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


def plot_spectra(spectra: dict, ax=None):
    """Mean singular value by index for each adapter: how much of its rank an adapter uses.

    `spectra` maps adapter names to `lora_delta_spectrum` tables.
    """
    if ax is None:
        _, ax = new_figure(figsize=(5, 3.5))
    for name, table in spectra.items():
        means = table.groupby("index").singular_value.mean()
        ax.plot(means.index + 1, means.values, marker="o", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("singular value index")
    ax.set_ylabel("mean singular value of (alpha/r) B A")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure


def plot_norm_kept(table: pd.DataFrame, ax=None):
    """Share of a LoRA's update kept against rank k, one line per layer group (`ladder.norm_kept_table`).

    Where a line reaches about 1, more rank adds nothing: that is how many directions the
    adapter really uses in those layers.
    """
    check_columns(table, "group", "rank", "norm_kept")
    if ax is None:
        _, ax = new_figure(figsize=(5, 3.5))
    for group in ordered_values(table["group"]):
        part = table[table["group"] == group].sort_values("rank")
        ax.plot(part["rank"], part["norm_kept"], marker="o", label=group,
                linewidth=2.5 if group == "all" else 1.2, color="black" if group == "all" else None)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("rank k of the cut")
    ax.set_ylabel("norm kept  ||dW_k|| / ||dW||")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure


def rank_curve(table: pd.DataFrame, column: str, weight: float = 1.0) -> pd.DataFrame:
    """Per rank at `weight`: the mean of `column` over training seeds, and the lowest and highest seed's mean."""
    rows = table[(table.lora_weight == weight) & (table.state == "COMPLETE")]
    per_seed = rows.groupby(["lora_rank", "train_seed"])[column].mean()
    return per_seed.groupby("lora_rank").agg(["mean", "min", "max"])


def plot_rank_study(table: pd.DataFrame, ladder_table: pd.DataFrame | None = None, parameters: dict | None = None,
                    weight: float = 1.0):
    """Two panels against rank at LoRA weight `weight`: style strength, and colour fidelity (content kept).

    Each shows the mean over training seeds with a band from the worst to the best seed; the
    style panel adds the best adapter cut to each rank by SVD (dashed), and a second axis
    gives an adapter's trainable parameters per rank (grey).
    """
    check_columns(table, "lora_rank", "train_seed", "lora_weight", "style_strength", "colour_fidelity")
    fig, axes = new_figure(1, 2, figsize=(10, 3.8))
    for ax, column, label in ((axes[0], "style_strength", "style strength"),
                              (axes[1], "colour_fidelity", "colour fidelity (share of images)")):
        curve = rank_curve(table, column, weight)
        ax.plot(curve.index, curve["mean"], marker="o", color="C0", label="trained at rank r (mean of seeds)")
        ax.fill_between(curve.index, curve["min"], curve["max"], color="C0", alpha=0.2, label="seed band (min-max)")
        if ladder_table is not None and len(ladder_table) and column in ladder_table:
            cut = ladder_table.groupby("lora_rank")[column].mean()
            ax.plot(cut.index, cut.values, marker="s", linestyle="--", color="C3",
                    label=f"{ladder_table.source.iloc[0]} cut to rank r (SVD)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(curve.index), [str(r) for r in curve.index])
        ax.set_xlabel("LoRA rank r")
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        if parameters:
            twin = ax.twinx()
            ranks = sorted(parameters)
            twin.plot(ranks, [parameters[r] for r in ranks], color="grey", linestyle=":", marker=".")
            twin.set_yscale("log")
            twin.set_ylabel("trainable parameters", color="grey")
            twin.tick_params(axis="y", colors="grey")
    axes[0].legend(fontsize=7, loc="lower right")
    axes[0].set_title(f"style at weight {weight:g}", fontsize=10)
    axes[1].set_title(f"content at weight {weight:g}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_search(table: pd.DataFrame, parameter: str, column: str, target: float | None = None, stat: str = "mean",
                ax=None):
    """A search's candidates: `column` (summarised over seeds) against `parameter`, numbered in the order tried.

    Each point is one candidate (a cell of all seeds, `search_trial` in the table); the dotted
    path joins them in order, and the dashed line is the target.
    """
    check_columns(table, "search_trial", parameter, column)
    done = table[table["state"] == "COMPLETE"] if "state" in table else table
    cells = done.groupby("search_trial").agg(x=(parameter, "first"), y=(column, stat)).sort_index()
    if ax is None:
        _, ax = new_figure(figsize=(5.5, 3.6))
    ax.plot(cells.x, cells.y, ":", color="grey", linewidth=1)
    points = ax.scatter(cells.x, cells.y, c=range(len(cells)), cmap="viridis", zorder=3, s=36)
    for order, (x, y) in enumerate(zip(cells.x, cells.y), start=1):
        ax.annotate(str(order), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if target is not None:
        ax.axhline(target, color="C3", linestyle="--", linewidth=1, label=f"target {target:g}")
        ax.legend(fontsize=8, loc="lower right")
    ax.figure.colorbar(points, ax=ax, label="order tried")
    ax.set_xlabel(parameter)
    ax.set_ylabel(f"{column} ({stat} over seeds)")
    ax.grid(alpha=0.3)
    return ax.figure


def plot_losses(path, window: int = 25, ax=None):
    """A LoRA's training loss from its `<name>.losses.csv` (or the adapter file beside it), with a running mean.

    The noise-prediction loss of one batch jumps with the timesteps drawn, so the running
    mean over `window` steps is the line to read.
    """
    from pathlib import Path
    path = Path(path)
    if path.suffix == ".safetensors":
        path = path.with_name(path.stem + ".losses.csv")
    losses = pd.read_csv(path)
    if ax is None:
        _, ax = new_figure(figsize=(5, 3.2))
    ax.plot(losses["step"], losses["loss"], color="lightgrey", linewidth=0.8, label="one batch")
    ax.plot(losses["step"], losses["loss"].rolling(window, min_periods=1).mean(), color="C0",
            label=f"mean of {window} steps")
    ax.set_xlabel("training step")
    ax.set_ylabel("noise-prediction loss (MSE)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure

"""Labelled image grids from a results table (one row per image, an `image_path` column)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

MAX_CELLS = 400  # one figure with more cells than this is unreadable; filter or page the table


def cell_image(rows: pd.DataFrame, seeds: str = "first") -> np.ndarray | None:
    """The image of one grid cell: its first seed, or every seed side by side ("all")."""
    rows = rows.sort_values("seed") if "seed" in rows else rows
    paths = [p for p in rows["image_path"] if isinstance(p, str) and p]
    if not paths:
        return None
    images = [np.asarray(Image.open(p).convert("RGB")) for p in (paths if seeds == "all" else paths[:1])]
    return np.concatenate(images, axis=1)


def plot_grid(df: pd.DataFrame, row: str, col: str, seeds: str = "first", control: Image.Image | None = None,
              title: str | None = None, cell_inches: float = 1.6):
    """A matplotlib Figure with one image per (row value, column value), axes labelled once.

    Args:
        df: results table with `image_path` and the `row` and `col` columns.
        row, col: column names whose values become the grid's rows and columns.
        seeds: "first" shows each cell's lowest seed; "all" shows every seed as a strip.
        control: the control image, drawn as a reference left of the first row.
    """
    for name in (row, col, "image_path"):
        if name not in df.columns:
            raise ValueError(f"column {name!r} is not in the table; columns are {list(df.columns)}")
    if seeds not in ("first", "all"):
        raise ValueError(f"`seeds` must be 'first' or 'all', got {seeds!r}")
    row_values, col_values = sorted(df[row].unique()), sorted(df[col].unique())
    if len(row_values) * len(col_values) > MAX_CELLS:
        raise ValueError(f"a {len(row_values)}x{len(col_values)} grid has more than {MAX_CELLS} cells; "
                         "filter the table first (df[df[...] == ...])")
    extra = 1 if control is not None else 0
    strip = df["seed"].nunique() if seeds == "all" and "seed" in df else 1
    fig, axes = plt.subplots(len(row_values), len(col_values) + extra, squeeze=False,
                             figsize=(cell_inches * (len(col_values) * strip + extra), cell_inches * len(row_values)))
    for i, r in enumerate(row_values):
        for j, c in enumerate(col_values):
            ax = axes[i, j + extra]
            image = cell_image(df[(df[row] == r) & (df[col] == c)], seeds)
            if image is not None:
                ax.imshow(image, interpolation="nearest")  # toy images are small: keep pixels sharp
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(f"{c}", fontsize=9)
            if j == 0 and not extra:
                ax.set_ylabel(f"{r}", fontsize=9)
        if extra:
            ax = axes[i, 0]
            ax.imshow(np.asarray(control), interpolation="nearest") if i == 0 else ax.axis("off")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title("control", fontsize=9)
            axes[i, 1].set_ylabel(f"{r}", fontsize=9)
    fig.text(0.5 + extra * 0.5 / (len(col_values) + extra), 1.0, col, ha="center", va="bottom", fontsize=10)
    fig.text(0.0, 0.5, row, ha="right", va="center", rotation="vertical", fontsize=10)
    if title:
        fig.suptitle(title, y=1.06, fontsize=11)
    fig.tight_layout()
    return fig

"""Curves of a results table and of LoRA analyses: a metric against a parameter, spectra, the rank study, a search.

Like the grids (`plots.py`), each is a pure function of its table; the metric curve's band is
the seed-bootstrap interval of `statistics.cell_stats`.
"""

from __future__ import annotations

import pandas as pd

from .plots import MARKERS, PALETTE, check_columns, new_figure, ordered_values
from .statistics import cell_stats


def plot_metric(df: pd.DataFrame, x: str = "conditioning_scale", y: str = "edge_f1", hue: str | None = "lora_weight",
                spread: str = "ci", ax=None, confidence: float = 0.95):
    """Mean of `y` against `x` over seeds, one line per `hue` value, with a band the legend names.

    spread: "ci" (the default: a `confidence` interval of the mean over seeds, bootstrapped by
    `statistics.cell_stats`; points with fewer than 3 seeds get no band) or "minmax" (the range
    over seeds). Effect size against rank at a fixed weight is the same call:
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
    band = f"{confidence:.0%} CI over seeds (bootstrap)" if spread == "ci" else "range over seeds"
    banded = bool(len(done)) and done.groupby([x] if hue is None else [x, hue]).size().max() > 1  # one row a point: no band
    for number, (value, group) in enumerate(groups):
        if spread == "ci":
            cells = cell_stats(group, y, by=[x], confidence=confidence).set_index(x).sort_index()
            means, low, high = cells["mean"], cells["ci_low"], cells["ci_high"]
        else:
            cells = group.groupby(x)[y].agg(["mean", "min", "max"])
            means, low, high = cells["mean"], cells["min"], cells["max"]
        line, = ax.plot(means.index, means, marker=MARKERS[number % len(MARKERS)],  # colour and marker tell lines apart
                        label=None if hue is None else f"{hue} = {value}")
        if banded:
            ax.fill_between(means.index, low, high, alpha=0.2, color=line.get_color(),
                            label=band if number == 0 else None)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if banded or hue is not None:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure


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


# What a rank study's columns measure, as axis labels; with the range of the scores in [0, 1]
STUDY_LABELS = {"style_strength": "style strength", "colour_fidelity": "colour fidelity (share of images)",
                "lora_effect": "LoRA effect (pixel distance from weight 0)", "dino_distance": "DINO distance from weight 0",
                "clip_score": "CLIP score (prompt adherence)", "edge_f1": "edge F1 (follows the control)"}
UNIT_RANGE = {"style_strength", "colour_fidelity", "edge_f1"}


def plot_rank_study(table: pd.DataFrame, ladder_table: pd.DataFrame | None = None, parameters: dict | None = None,
                    weight: float = 1.0, style: str = "style_strength", content: str = "colour_fidelity"):
    """Two panels against rank at LoRA weight `weight`: the `style` column (what the LoRA adds) and the
    `content` column (what it must keep); on the toy, style strength and colour fidelity.

    Each shows the mean over training seeds with a band from the worst to the best seed; the
    panels add the best adapter cut to each rank by SVD (dashed), and a second axis
    gives an adapter's trainable parameters per rank (grey).
    """
    check_columns(table, "lora_rank", "train_seed", "lora_weight", style, content)
    fig, axes = new_figure(1, 2, figsize=(10, 3.8))
    for ax, column in ((axes[0], style), (axes[1], content)):
        label = STUDY_LABELS.get(column, column)
        curve = rank_curve(table, column, weight)
        ax.plot(curve.index, curve["mean"], marker="o", color=PALETTE[0], label="trained at rank r (mean of seeds)")
        ax.fill_between(curve.index, curve["min"], curve["max"], color=PALETTE[0], alpha=0.2, label="seed band (min-max)")
        if ladder_table is not None and len(ladder_table) and column in ladder_table:
            cut = ladder_table.groupby("lora_rank")[column].mean()
            ax.plot(cut.index, cut.values, marker="s", linestyle="--", color=PALETTE[5],
                    label=f"{ladder_table.source.iloc[0]} cut to rank r (SVD)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(curve.index), [str(r) for r in curve.index])
        ax.set_xlabel("LoRA rank r")
        ax.set_ylabel(label)
        if column in UNIT_RANGE:
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
        ax.axhline(target, color=PALETTE[5], linestyle="--", linewidth=1, label=f"target {target:g}")
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
    ax.plot(losses["step"], losses["loss"].rolling(window, min_periods=1).mean(), color=PALETTE[0],
            label=f"mean of {window} steps")
    ax.set_xlabel("training step")
    ax.set_ylabel("noise-prediction loss (MSE)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure

"""ipywidgets panels: run a sweep by clicking, watch the grid fill in, re-plot without re-running.

The panel only calls the engine (`run_sweep`) and the plots (`plot_grid`); it writes to a
run folder named after its spec, so a stopped or crashed panel resumes where it was.
The sweep runs in a background thread, so the Stop button is heard while it works.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
from pathlib import Path

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from PIL import Image

from ..analysis.plots import new_figure, plot_grid, row_image
from ..models.profiles import profile
from ..store.growth import load_results
from ..spec.axes import REGISTERED
from ..spec.sweep_spec import AXES, spec_from_dict
from ..engine.sweep import run_sweep

SCHEDULE_CHOICES = ("constant", "linear", "cosine", "step@0.5", "ramp@0.5")  # the panel's; a spec takes any step@F


def parse_seeds(text: str) -> list[int]:
    """"0-3,42" -> [0, 1, 2, 3, 42]; ranges are inclusive."""
    seeds = []
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        match = re.fullmatch(r"(\d+)\s*-\s*(\d+)|(\d+)", part)
        if not match:
            raise ValueError(f"seeds: {part!r} is not an integer or a range like 0-3")
        if match.group(3) is not None:
            seeds.append(int(match.group(3)))
        else:
            low, high = int(match.group(1)), int(match.group(2))
            if high < low:
                raise ValueError(f"seeds: range {part!r} runs backwards")
            seeds.extend(range(low, high + 1))
    if not seeds:
        raise ValueError("seeds: give at least one, e.g. 0-3,42")
    return seeds


def parse_numbers(text: str, name: str) -> list[float]:
    """"0, 0.5, 1" -> [0.0, 0.5, 1.0]."""
    try:
        values = [float(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a comma-separated list of numbers") from None
    if not values:
        raise ValueError(f"{name}: give at least one number")
    return values


def axis_values(text: str, name: str, kind: str) -> list:
    """A registered axis's box, "0.5, 1" -> [0.5, 1.0] (whole numbers for an int axis, words for a text one)."""
    if kind in ("float", "int"):
        numbers = parse_numbers(text, name)
        return [int(v) for v in numbers] if kind == "int" else numbers
    return [v.strip() for v in str(text).split(",") if v.strip()]


class SweepPanel:
    """Controls for a sweep on `pipe`, a Run and a Stop button, a progress bar, a live grid and the table.

    Args:
        pipe: a loaded pipeline.
        control_image: a file path, a shipped photo ("sample:coffee") or "toy:<caption>" (default: the toy scene of
            the prompt).
        adapters: {name: LoRA file} offered as adapters (loaded once, on the first run).
        run_root: run folders go here, one per distinct spec.
    """

    def __init__(self, pipe, control_image: str | None = None, adapters: dict | None = None,
                 run_root: str | Path = "runs/panel", model: str = "toy",
                 prompt: str = "a yellow star on a blue background"):
        self.pipe, self.adapters, self.run_root, self.model = pipe, dict(adapters or {}), Path(run_root), model
        self.control_image = control_image
        self.table = pd.DataFrame()
        self.run_dir: Path | None = None
        self._spec = None  # the spec of the last Run: the grid shows its rows
        self.search_result = None  # what the last Search found (adaptive.SearchResult)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.prompt = w.Text(prompt, description="prompt", layout=w.Layout(width="420px"))
        self.scale_start = w.FloatText(0.0, description="scale from", layout=w.Layout(width="160px"))
        self.scale_stop = w.FloatText(1.0, description="to", layout=w.Layout(width="120px"))
        self.scale_count = w.BoundedIntText(3, min=1, max=50, description="values", layout=w.Layout(width="140px"))
        self.lora_weights = w.Text("0, 1" if self.adapters else "0", description="LoRA weights",
                                   style={"description_width": "initial"})
        self.adapter_select = w.SelectMultiple(options=sorted(self.adapters), value=tuple(sorted(self.adapters)[:1]),
                                               description="adapters", rows=min(4, max(1, len(self.adapters))))
        self.seeds = w.Text("0-1", description="seeds")
        defaults = profile(model, pipe.device.type)  # the model's steps and guidance (the toy's: 20 and 5)
        self.steps = w.BoundedIntText(defaults.steps, min=1, max=500, description="steps")
        self.guidance = w.BoundedFloatText(defaults.guidance, min=0, max=30, description="guidance")
        # ControlNet strength per step (schedules.py); "constant" alone leaves the spec as it always was
        self.schedules = w.SelectMultiple(options=SCHEDULE_CHOICES, value=("constant",), description="schedules",
                                          rows=len(SCHEDULE_CHOICES))
        # An axis added with `register_axis(..., panel=...)` gets a box of comma-separated values; left empty, the
        # spec leaves the axis out (its default applies, and trial ids stay those of a spec without it)
        self.axis_boxes = {name: w.Text("", placeholder=f"{axis.default} (default)", description=name,
                                        style={"description_width": "initial"})
                           for name, axis in REGISTERED.items() if axis.panel}
        # Search mode: the smallest scale in [scale from, to] whose seeds meet the target (adaptive.py)
        self.mode = w.ToggleButtons(options=["Grid", "Search"], value="Grid", description="mode")
        self.target = w.Text("edge_f1>=0.9", description="target")
        self.budget = w.BoundedIntText(40, min=2, max=2000, description="budget (images)",
                                       style={"description_width": "initial"})
        self.run_button = w.Button(description="Run", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.progress = w.IntProgress(value=0, min=0, max=1, description="0 / 0")
        self.message = w.HTML()
        self.row_picker = w.Dropdown(options=[*AXES, *self.axis_boxes], value="seed", description="rows")
        self.col_picker = w.Dropdown(options=[*AXES, *self.axis_boxes], value="conditioning_scale",
                                     description="columns")
        # An Image and an HTML widget, not Output: Output does not capture from a background thread.
        self.grid_image = w.Image(format="png", layout=w.Layout(max_width="720px"))
        self.table_html = w.HTML()
        self.stats_html = w.HTML()  # the seed statistics of the column axis, as report.html shows them
        self.run_button.on_click(self.run)
        self.stop_button.on_click(self.stop)
        self.row_picker.observe(lambda change: self.redraw(), names="value")
        self.col_picker.observe(lambda change: self.redraw(), names="value")
        controls = [self.prompt, w.HBox([self.scale_start, self.scale_stop, self.scale_count]), self.lora_weights]
        if self.adapters:
            controls.append(self.adapter_select)
        controls += [w.HBox([self.seeds, self.steps, self.guidance]), *self.axis_boxes.values(), self.schedules,
                     w.HBox([self.mode, self.target, self.budget]),
                     w.HBox([self.run_button, self.stop_button,
                     self.progress]), self.message, w.HBox([self.row_picker, self.col_picker])]
        self.widget = w.VBox(controls + [self.grid_image, self.stats_html, self.table_html])

    def _ipython_display_(self):
        display(self.widget)

    def spec(self):
        """The SweepSpec the controls describe (raises ValueError naming the bad control)."""
        scales = np.linspace(self.scale_start.value, self.scale_stop.value, self.scale_count.value).round(4).tolist()
        weights = parse_numbers(self.lora_weights.value, "LoRA weights")
        adapters = list(self.adapter_select.value) if self.adapters else [None]
        if any(weight != 0 for weight in weights) and adapters in ([], [None]):
            raise ValueError("LoRA weights other than 0 need an adapter: pick one in `adapters`")
        schedules = list(self.schedules.value) or ["constant"]
        return spec_from_dict({
            "model": self.model, "prompt": [self.prompt.value], "conditioning_scale": scales,
            "lora_weight": weights, "adapter": adapters or [None], "adapters": self.adapters,
            "seed": parse_seeds(self.seeds.value), "steps": [self.steps.value], "guidance": [self.guidance.value],
            "control_image": self.control_image or f"toy:{self.prompt.value}",
            **({} if schedules == ["constant"] else {"control_schedule": schedules}),
            **{name: axis_values(box.value, name, REGISTERED[name].kind)
               for name, box in self.axis_boxes.items() if box.value.strip()}})

    def run(self, _button=None) -> None:
        """Start the sweep (or, in Search mode, the search) the controls describe, in a background thread."""
        if self._thread and self._thread.is_alive():
            return
        try:
            spec = self.spec()
        except (ValueError, FileNotFoundError) as err:
            self.show_message(str(err), error=True)
            return
        if self.mode.value == "Search":
            self._start_search(spec)
            return
        # One folder per model and adapters: a changed grid grows it, reusing every image it has (growth.py).
        key = hashlib.sha256(json.dumps([spec.model, spec.adapters], sort_keys=True, default=str).encode()).hexdigest()
        self.run_dir = self.run_root / key[:12]
        self._spec = spec
        self._stop.clear()
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.show_message(f"running into {self.run_dir}")
        self._thread = threading.Thread(target=self._work, args=(spec,), daemon=True)
        self._thread.start()

    def _work(self, spec) -> None:
        try:
            self.table = run_sweep(self.pipe, spec, self.run_dir, callback=self._on_progress,
                                   should_stop=self._stop.is_set, log=lambda m: self.show_message(m))
            failed = int((self.table.state == "FAILED").sum()) if len(self.table) else 0
            stopped = "stopped; Run again to resume. " if self._stop.is_set() else ""
            self.show_message(f"{stopped}{len(self.table)} images in {self.run_dir}" + (f", {failed} failed" if failed else ""))
            self.redraw()
        except Exception as err:  # shown in the panel, never a traceback wall
            self.show_message(f"{type(err).__name__}: {err}", error=True)
        finally:
            self.run_button.disabled, self.stop_button.disabled = False, True

    def search_spec(self, spec) -> dict:
        """The search the controls describe: the grid's spec with the scale as a range from `scale from` to `to`."""
        data = spec.to_dict()
        data["conditioning_scale"] = {"low": self.scale_start.value, "high": self.scale_stop.value}
        return data

    def _start_search(self, spec) -> None:
        from ..studies.search import parse_target
        try:
            target = parse_target(self.target.value)
        except ValueError as err:
            self.show_message(str(err), error=True)
            return
        data = self.search_spec(spec)
        key = hashlib.sha256(json.dumps([data, str(target), self.budget.value], sort_keys=True,
                                        default=str).encode()).hexdigest()[:12]
        self.run_dir, self._spec = self.run_root / f"search-{key}", None
        self.run_button.disabled = True
        self.show_message(f"searching into {self.run_dir}")
        self._thread = threading.Thread(target=self._search_work, args=(data, target), daemon=True)
        self._thread.start()

    def _search_work(self, data: dict, target) -> None:
        from ..studies.search import search
        try:
            result = search(self.pipe, data, self.run_dir, target=str(target), minimize="conditioning_scale",
                            budget=self.budget.value, log=lambda m: self._on_search_step(m, target))
            self.search_result = result
        except Exception as err:  # shown in the panel, never a traceback wall
            self.show_message(f"{type(err).__name__}: {err}", error=True)
        finally:
            self.run_button.disabled = False

    def _on_search_step(self, message: str, target) -> None:
        """After each candidate: the message, and the live plot of the objective against the scale."""
        from ..analysis.curves import plot_search
        self.show_message(message)
        self.table = load_results(self.run_dir, lora_effect=False)
        if self.table.empty or "search_trial" not in self.table:
            return
        fig = plot_search(self.table, "conditioning_scale", target.column, target=target.value)
        self.show_figure(fig)

    def stop(self, _button=None) -> None:
        """Ask the sweep to stop after the current batch."""
        self._stop.set()
        self.show_message("stopping after the current batch...")

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running sweep ends (for scripts and tests)."""
        if self._thread:
            self._thread.join(timeout)

    def _on_progress(self, progress) -> None:
        self.progress.max = max(1, progress.total)
        self.progress.value = progress.done
        self.progress.description = f"{progress.done} / {progress.total}"
        # this spec's rows (a grown folder holds others too); the grid needs no re-read of every image
        self.table = load_results(self.run_dir, lora_effect=False, spec=self._spec)
        self.redraw()

    def show_figure(self, fig) -> None:
        """Put a matplotlib figure into the panel's image (and free it)."""
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        self.grid_image.value = buffer.getvalue()

    def show_message(self, text: str, error: bool = False) -> None:
        colour = "#c0392b" if error else "#555555"
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        self.message.value = f"<span style='color:{colour}'>{escaped}</span>"

    def redraw(self) -> None:
        """Plot the current table with the picked axes; show the table's main columns."""
        if self.table.empty:
            return
        try:
            fig = plot_grid(self.table, row=self.row_picker.value, col=self.col_picker.value)
        except ValueError as err:
            self.show_message(str(err), error=True)
            return
        self.show_figure(fig)
        columns = [c for c in ("state", "adapter", "lora_weight", "conditioning_scale", "control_schedule", "seed",
                               "edge_f1", "lora_effect", "seconds") if c in self.table]
        self.table_html.value = self.table[columns].to_html(index=False, float_format="{:.3f}".format)
        self.stats_html.value = seed_statistics_html(self.table, self.col_picker.value)


def seed_statistics_html(table: pd.DataFrame, axis: str, metric: str = "edge_f1") -> str:
    """Per value of `axis`: mean, 95% interval over seeds and the paired test against the first value (HTML)."""
    from ..analysis.statistics import cell_stats, compare_cells
    if metric not in table or axis not in table or axis == "seed" or table[axis].nunique() < 2:
        return ""
    cells = cell_stats(table, metric, by=[axis])
    try:
        tests = compare_cells(table, metric, axis, baseline=cells[axis].iloc[0]).set_index("b")
    except ValueError:  # unpaired, or several sweeps' rows
        tests = pd.DataFrame(columns=["p_holm", "significant"])
    cells["p vs first (Wilcoxon, Holm)"] = cells[axis].map(tests["p_holm"]) if len(tests) else None
    cells["differs"] = cells[axis].map(lambda v: "★" if v in tests.index and tests.significant.get(v) else "")
    shown = cells[[axis, "n", "mean", "ci_low", "ci_high", "p vs first (Wilcoxon, Holm)", "differs"]]
    return f"<b>{metric} over seeds</b>" + shown.to_html(index=False, float_format="{:.3f}".format, na_rep="")


def compare(df: pd.DataFrame, a: int, b: int):
    """Two rows of a results table side by side, with the parameters that differ as titles."""
    first, second = df.loc[a], df.loc[b]
    differ = [c for c in AXES if c in df and first[c] != second[c]]
    fig, axes = new_figure(1, 2, figsize=(6, 3.4))
    for ax, row in zip(axes, (first, second)):
        image = row_image(row.to_dict()) if row.get("image_path") else None  # verified, as the report opens it
        if image is not None:
            ax.imshow(image, interpolation="nearest")
        ax.set_title("\n".join(f"{c} = {row[c]}" for c in differ) or "same parameters", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig

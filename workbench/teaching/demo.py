"""The README's main job: a small ControlNet sweep on the default model, saved as a grid and a table."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..models.pipeline import DEFAULT_MODEL, load_pipeline, trained_size
from ..analysis.plots import plot_grid
from ..store.results import export_results
from ..spec.sweep_spec import SweepSpec
from ..models.control import control_for
from ..engine.sweep import run_sweep

DEMO_CAPTION = "a yellow star on a blue background"


def demo_spec(model: str = DEFAULT_MODEL, steps: int = 20) -> SweepSpec:
    """4 conditioning scales x 3 seeds of one toy scene: 12 images."""
    return SweepSpec(model=model, prompt=[DEMO_CAPTION], control_image=f"toy:{DEMO_CAPTION}",
                     conditioning_scale=[0.0, 0.5, 1.0, 1.5], seed=[0, 1, 2], steps=[steps], guidance=[5.0])


def run_demo(out_dir: str | Path = "outputs/demo", model: str = DEFAULT_MODEL, steps: int = 20,
             device: str = "auto") -> pd.DataFrame:
    """Run the demo sweep into `out_dir`/run-<model>-<steps>; write grid.png and results.parquet/.csv there.

    Running it again resumes (finished images are not redone).
    """
    spec = demo_spec(model, steps)
    run_dir = Path(out_dir) / f"run-{re.sub(r'[^A-Za-z0-9]+', '-', model).strip('-')}-{steps}steps"
    pipe = load_pipeline(model, device=device)
    table = run_sweep(pipe, spec, run_dir, log=lambda message: None)
    size = trained_size(pipe)
    control = control_for(spec.control_image, size, spec.canny_low[0], spec.canny_high[0])
    fig = plot_grid(table, row="seed", col="conditioning_scale", control=control,
                    title=f"{DEMO_CAPTION!r} on {model}, {steps} steps")
    for folder in (run_dir, Path(out_dir)):
        fig.savefig(folder / "grid.png", dpi=100, bbox_inches="tight")
        export_results(table, folder)
    return table

"""Which columns of a results table are trial parameters, which define a cell, and which score an image. No torch.

A table has one row per image: the trial's parameters (the spec's axes, the control, the
resolution, each unit's), bookkeeping (state, timings, versions, paths) and scores. Every
module that groups or plots a table asks here, so they agree on what a cell is.
"""

from __future__ import annotations

import pandas as pd

from ..spec.axes import REGISTERED
from ..spec.sweep_spec import AXES
from ..spec.units import is_unit_column

# Numeric columns that are bookkeeping, not scores: never averaged, plotted as metrics or exported as metrics.
BOOKKEEPING = ("index", "seed", "seconds", "width", "height", "warmup", "search_trial", "lora_rank", "lora_alpha",
               "shared_steps", "image_scheme")


def parameter_columns(table) -> list[str]:
    """The columns of a results table that hold trial parameters (axes, the control, resolution, each unit's)."""
    names = [*AXES, *REGISTERED, "control_image", "resolution", *(c for c in table.columns if is_unit_column(c))]
    return [c for c in names if c in table]


def cell_columns(table: pd.DataFrame) -> list[str]:
    """The columns that define a cell: the trial parameters and the model, not the seed."""
    return [c for c in [*parameter_columns(table), "model"] if c in table and c != "seed"]


def metric_columns(table: pd.DataFrame) -> list[str]:
    """Numeric columns that score an image (edge_f1, style_strength, clip_score, lora_effect, ...)."""
    params = set(cell_columns(table))
    return [c for c in table.columns if c not in params and c not in BOOKKEEPING
            and pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])]

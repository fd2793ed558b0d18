"""Send a run folder to an experiment tracker: MLflow here; W&B in three lines (README).

    python -m workbench export RUN_DIR --to mlflow [--tracking-uri URI] [--experiment NAME]

One MLflow run per **cell** (the trials that differ only in seed), nested under one parent
run for the sweep. A cell is what a grid shows and what a tracker should compare: its
parameters are the cell's, its metrics are means over the seeds (with `<metric>_std`, and
each seed's value as a step of `<metric>_by_seed`), and its artifacts are the seeds' images.
One run per trial would fill the tracker with runs that differ only in noise. The parent
run holds the spec, the grid PNG and the whole table as CSV.

Export is idempotent: each run is tagged with its cell's key, and cells already exported
are skipped, so a grown or resumed sweep exports only what is new.

The default tracking store is `sqlite:///RUN_DIR/mlflow.db` with artifacts in
RUN_DIR/mlflow-artifacts (MLflow 3 prefers a database to its older `file:` store; a
`file:` URI works where MLFLOW_ALLOW_FILE_STORE=true is set). Needs the `mlflow` extra:
pip install 'controlnet-lora-workbench[mlflow]'.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from pathlib import Path

import pandas as pd

from .columns import cell_columns, metric_columns
from .results import load_results
from .scoring import fill_scores


def cell_hash(values: dict) -> str:
    """A cell's identity in the tracker: a hash of its parameter values."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def clean(value):
    """A parameter value MLflow can store (it refuses None and NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    return value


def export_mlflow(run_dir: str | Path, tracking_uri: str | None = None, experiment: str | None = None,
                  log=print) -> dict:
    """Log a run folder's cells as MLflow runs under one parent run; return {"exported": n, "skipped": m, ...}."""
    try:
        import mlflow
    except ImportError:
        raise ImportError("exporting to MLflow needs the mlflow extra: pip install "
                          "'controlnet-lora-workbench[mlflow]' (mlflow-skinny)") from None
    run_dir = Path(run_dir).resolve()
    if run_dir.is_dir():
        fill_scores(run_dir)  # a folder from before metrics.jsonl held lora_effect
    table = load_results(run_dir)
    if table.empty:
        raise ValueError(f"run folder {str(run_dir)!r} has no rows to export")
    table = table[table.state == "COMPLETE"]
    tracking_uri = tracking_uri or f"sqlite:///{run_dir / 'mlflow.db'}"
    experiment = experiment or run_dir.name
    mlflow.set_tracking_uri(tracking_uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        location = (run_dir / "mlflow-artifacts").as_uri() if tracking_uri.startswith("sqlite") else None
        mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    done = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    exported_cells = {r.data.tags.get("workbench.cell") for r in done}
    parents = [r for r in done if r.data.tags.get("workbench.sweep") == str(run_dir)]
    params, metrics = cell_columns(table), metric_columns(table)
    counts = {"exported": 0, "skipped": 0, "tracking_uri": tracking_uri, "experiment": experiment}
    parent_id = parents[0].info.run_id if parents else None
    with mlflow.start_run(run_id=parent_id, run_name=None if parent_id else f"sweep {run_dir.name}",
                          tags={"workbench.sweep": str(run_dir)}) as parent:
        if parent_id is None:
            log_sweep_artifacts(mlflow, run_dir, table)
        for values, cell in table.groupby(params, dropna=False, sort=False):
            values = dict(zip(params, values if isinstance(values, tuple) else (values,)))
            key = cell_hash(values)
            if key in exported_cells:
                counts["skipped"] += 1
                continue
            with mlflow.start_run(run_name=cell_name(values, table), nested=True,
                                  tags={"workbench.cell": key, "mlflow.parentRunId": parent.info.run_id}):
                mlflow.log_params({name: clean(value) for name, value in values.items()})
                mlflow.log_param("seeds", ",".join(str(s) for s in sorted(cell.seed)))
                for name in metrics:
                    column = cell[name].dropna()
                    if column.empty:
                        continue
                    mlflow.log_metric(name, float(column.mean()))
                    mlflow.log_metric(f"{name}_std", float(column.std(ddof=0)))
                    for step, value in enumerate(cell.sort_values("seed")[name]):
                        if not math.isnan(value):
                            mlflow.log_metric(f"{name}_by_seed", float(value), step=step)
                for path in cell.image_path:
                    mlflow.log_artifact(path, artifact_path="images")
            counts["exported"] += 1
    log(f"exported {counts['exported']} cells ({counts['skipped']} already there) to {tracking_uri}, "
        f"experiment {experiment!r}")
    return counts


def cell_name(values: dict, table: pd.DataFrame) -> str:
    """The cell's varying parameters, e.g. 'conditioning_scale=0.5 lora_weight=1'."""
    varying = [name for name in values if table[name].astype(str).nunique() > 1]
    return " ".join(f"{name}={values[name]}" for name in varying) or "cell"


def log_sweep_artifacts(mlflow, run_dir: Path, table: pd.DataFrame) -> None:
    """The parent run's artifacts: spec(s), the whole table, and a grid of the two first varying axes."""
    from .plots import plot_grid
    for name in ("spec.yaml", "search.yaml", "search.json"):
        if (run_dir / name).exists():
            mlflow.log_artifact(str(run_dir / name))
    with tempfile.TemporaryDirectory() as folder:
        csv = Path(folder) / "results.csv"
        table.to_csv(csv, index=False)
        mlflow.log_artifact(str(csv))
        varying = [c for c in cell_columns(table) if table[c].astype(str).nunique() > 1]
        if varying:
            figure = plot_grid(table, row=varying[1] if len(varying) > 1 else "seed", col=varying[0])
            if isinstance(figure, list):
                figure = figure[0]
            figure.savefig(Path(folder) / "grid.png", dpi=100, bbox_inches="tight")
            mlflow.log_artifact(str(Path(folder) / "grid.png"))

"""Send a run folder to an experiment tracker: MLflow here; W&B in three lines (README).

    python -m workbench export RUN_DIR --to mlflow [--tracking-uri URI] [--experiment NAME]

One MLflow run per **cell** (the trials that differ only in seed), nested under one parent
run for the sweep. A cell is what a grid shows and what a tracker should compare: its
parameters are the cell's, its metrics are means over the seeds (with `<metric>_std`, and
each seed's value as a step of `<metric>_by_seed`), and its artifacts are the seeds' images.
One run per trial would fill the tracker with runs that differ only in noise. The parent
run holds the spec, the grid PNG and the whole table as CSV.

Export is idempotent: each run is tagged with its cell's key once it is logged whole, and
cells already exported are skipped, so a grown or resumed sweep exports only what is new.

The default tracking store is `sqlite:///RUN_DIR/mlflow.db` with artifacts in
RUN_DIR/mlflow-artifacts (MLflow 3 prefers a database to its older `file:` store; a
`file:` URI works where MLFLOW_ALLOW_FILE_STORE=true is set). Needs the `mlflow` extra:
pip install 'controlnet-lora-workbench[mlflow]'.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from ..store.columns import cell_columns, metric_columns
from ..store.results import verified_image
from ..store.safe_files import read_regular
from ..store.safe_text import csv_safe
from ..store.run_folder import folder_record
from ..engine.scoring import scored_results


def cell_hash(values: dict) -> str:
    """A cell's identity in the tracker: a hash of its parameter values."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


PARAM_LIMIT = 6000  # characters MLflow stores of a parameter value (mlflow.utils.validation.MAX_PARAM_VAL_LENGTH)


def clean(value):
    """A parameter value MLflow can store: None and NaN as "none", a long value cut and marked with its hash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    text = str(value)
    if len(text) > PARAM_LIMIT:
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        return f"{text[:PARAM_LIMIT - 40]}... (sha256 {digest})"
    return value


def sqlite_uri(path: Path) -> str:
    """A sqlite URI for a database file: its absolute path percent-quoted, so a folder named `shared?x=1` or
    `run #2` stays one path (unquoted, SQLAlchemy reads `?` as the start of a query)."""
    return "sqlite:///" + quote(Path(path).absolute().as_posix())


def export_mlflow(run_dir: str | Path, tracking_uri: str | None = None, experiment: str | None = None,
                  log=print) -> dict:
    """Log a run folder's cells as MLflow runs under one parent run; return {"exported": n, "skipped": m, ...}.

    A cell is tagged as exported only once its parameters, metrics and images are all logged, so a
    cell that fails halfway is exported again next time. The folder's parent run and its cells'
    tags carry the folder's identity (`workbench.json`), so two folders exported into one
    experiment never skip each other's cells. MLFLOW_RUN_ID in the environment is ignored here.
    """
    try:
        import mlflow
    except ImportError:
        raise ImportError("exporting to MLflow needs the mlflow extra: pip install "
                          "'controlnet-lora-workbench[mlflow]' (mlflow-skinny)") from None
    run_dir, table = scored_results(run_dir, "export")
    table = table[table.state == "COMPLETE"]
    folder = folder_record(run_dir, create=True)["folder_id"]
    own_store = tracking_uri is None  # the folder's own database: its artifacts must stay in the folder
    tracking_uri = tracking_uri or sqlite_uri(run_dir / "mlflow.db")
    experiment = experiment or run_dir.name
    hijack = os.environ.pop("MLFLOW_RUN_ID", None)  # it would make this folder's parent run another's
    try:
        mlflow.set_tracking_uri(tracking_uri)
        try:
            found = mlflow.get_experiment_by_name(experiment)
        except mlflow.exceptions.MlflowException as err:  # e.g. a file: store, refused unless allowed
            raise ValueError(f"MLflow refused the tracking store {tracking_uri[:80]!r}: "
                             f"{' '.join(str(err).split())[:160]}. Leave out --tracking-uri (a sqlite store in the "
                             "run folder), or for a file: store set MLFLOW_ALLOW_FILE_STORE=true") from None
        location = (run_dir / "mlflow-artifacts").as_uri()
        if found is None:
            mlflow.create_experiment(experiment, artifact_location=location if tracking_uri.startswith("sqlite") else None)
        elif own_store and found.artifact_location != location:
            raise ValueError(f"the run folder's mlflow.db holds experiment {experiment[:60]!r} whose artifacts go to "
                             f"{str(found.artifact_location)[:100]!r}, outside the folder: refused, since a database "
                             "planted in a shared folder could send its images anywhere. Remove mlflow.db, or name "
                             "a store you chose with --tracking-uri")
        mlflow.set_experiment(experiment)
        counts = export_cells(mlflow, run_dir, table, folder, log)
    finally:
        if hijack is not None:
            os.environ["MLFLOW_RUN_ID"] = hijack
    counts.update(tracking_uri=tracking_uri, experiment=experiment)
    log(f"exported {counts['exported']} cells ({counts['skipped']} already there, {counts['failed']} failed: run "
        f"again to retry them) to {tracking_uri}, experiment {experiment!r}")
    return counts


def export_cells(mlflow, run_dir: Path, table: pd.DataFrame, folder: str, log) -> dict:
    """The folder's parent run, and one nested run per cell not yet exported under it."""
    done = mlflow.search_runs(output_format="list")
    parents = [r for r in done if r.data.tags.get("workbench.folder") == folder] or \
        [r for r in done if r.data.tags.get("workbench.sweep") == str(run_dir) and "workbench.folder" not in r.data.tags]
    parent_id = parents[0].info.run_id if parents else None
    exported = {r.data.tags.get("workbench.cell") for r in done if parent_id
                and r.data.tags.get("mlflow.parentRunId") == parent_id}
    params, metrics = cell_columns(table), metric_columns(table)
    counts = {"exported": 0, "skipped": 0, "failed": 0}
    with mlflow.start_run(run_id=parent_id, run_name=None if parent_id else f"sweep {run_dir.name}",
                          tags={"workbench.sweep": str(run_dir), "workbench.folder": folder}) as parent:
        if not (parents and parents[0].data.tags.get("workbench.artifacts") == "logged"):
            log_sweep_artifacts(mlflow, run_dir, table, log)
            mlflow.set_tag("workbench.artifacts", "logged")  # after them: a failed upload is retried next time
        for values, cell in table.groupby(params, dropna=False, sort=False):
            values = dict(zip(params, values if isinstance(values, tuple) else (values,)))
            key = f"{folder[:12]}-{cell_hash(values)}"
            if key in exported or cell_hash(values) in exported:  # the second: a cell tagged before folder ids
                counts["skipped"] += 1
                continue
            try:
                with mlflow.start_run(run_name=cell_name(values, table), nested=True,
                                      tags={"mlflow.parentRunId": parent.info.run_id}):
                    log_cell(mlflow, run_dir, values, cell, metrics)
                    mlflow.set_tag("workbench.cell", key)  # last: only a cell logged whole counts as exported
                counts["exported"] += 1
            except Exception as err:  # noqa: BLE001 (MLflow's errors vary by store); the cell is retried next time
                counts["failed"] += 1
                log(f"cell {cell_name(values, table)} failed to export ({type(err).__name__}: {str(err)[:200]})")
    return counts


def log_cell(mlflow, run_dir: Path, values: dict, cell: pd.DataFrame, metrics: list[str]) -> None:
    """One cell's parameters, its metrics over seeds, and its images (only those the folder vouches for)."""
    mlflow.log_params({name: clean(value) for name, value in values.items()})
    mlflow.log_param("seeds", clean(",".join(str(s) for s in sorted(cell.seed))))
    for name in metrics:
        column = cell[name].dropna()
        if column.empty:
            continue
        mlflow.log_metric(name, float(column.mean()))
        mlflow.log_metric(f"{name}_std", float(column.std(ddof=0)))
        for step, value in enumerate(cell.sort_values("seed")[name]):
            if not math.isnan(value):
                mlflow.log_metric(f"{name}_by_seed", float(value), step=step)
    for row in cell.to_dict("records"):
        path = verified_image(run_dir, row)  # in RUN_DIR/images with the row's sha256, or not uploaded
        if path is not None:
            mlflow.log_artifact(str(path), artifact_path="images")


def cell_name(values: dict, table: pd.DataFrame) -> str:
    """The cell's varying parameters, e.g. 'conditioning_scale=0.5 lora_weight=1'."""
    varying = [name for name in values if table[name].astype(str).nunique() > 1]
    return " ".join(f"{name}={values[name]}" for name in varying) or "cell"


def log_sweep_artifacts(mlflow, run_dir: Path, table: pd.DataFrame, log=print) -> None:
    """The parent run's artifacts: spec(s), the whole table, and a grid of the two first varying axes (a spec or
    search file that is a link or no regular file is skipped, with a line to `log`)."""
    from .plots import plot_grid
    for name in ("spec.yaml", "search.yaml", "search.json"):
        if read_regular(run_dir / name, warn=log) is not None:  # a regular file the workbench wrote: not a link
            mlflow.log_artifact(str(run_dir / name))
    with tempfile.TemporaryDirectory() as folder:
        csv = Path(folder) / "results.csv"
        csv_safe(table).to_csv(csv, index=False)
        mlflow.log_artifact(str(csv))
        varying = [c for c in cell_columns(table) if table[c].astype(str).nunique() > 1]
        if varying:
            figure = plot_grid(table, row=varying[1] if len(varying) > 1 else "seed", col=varying[0])
            if isinstance(figure, list):
                figure = figure[0]
            figure.savefig(Path(folder) / "grid.png", dpi=100, bbox_inches="tight")
            mlflow.log_artifact(str(Path(folder) / "grid.png"))

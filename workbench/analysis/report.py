"""A run folder as one offline HTML page: what a student sends an instructor, and what an instructor projects.

    python -m workbench report RUN_DIR          # writes RUN_DIR/report.html

One self-contained file: the images are embedded (as data URIs, below `EMBED_LIMIT`; above
it they are linked relatively, `images/<id>.png`, so the page works from the folder or a zip
of it), the table travels as JSON, and the page's own script draws everything: no network
request of any kind. It has:
  - axis pickers for rows, columns and facets, chosen from the table's varying columns, and
    a seed picker, like the notebook grid (and mcmonkey's Infinity Grid);
  - each image's parameters and metrics on hover; a click enlarges it;
  - a metric plot: a picked metric against the column axis, one line per row value (the mean
    over seeds);
  - the spec (every spec, for a folder that grew).
The page is the Jinja2 template `templates/report.html.j2`; this module gathers its data.
"""

from __future__ import annotations

import base64
import math
import warnings
from pathlib import Path

import pandas as pd

from ..store.columns import cell_columns, metric_columns
from ..store.results import notes_on_old_rows, verified_image
from ..store.run_store import RunStore
from ..store.safe_text import printable
from ..engine.scoring import scored_results
from .statistics import cell_stats

EMBED_LIMIT = 25_000_000  # bytes of PNG embedded; a bigger sweep links its images instead
TEMPLATES = Path(__file__).parents[1] / "templates"


def json_value(value):
    """A table cell as JSON: NaN and None become null; numpy scalars plain numbers."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def varying_columns(table: pd.DataFrame, columns: list[str]) -> list[str]:
    return [c for c in columns if table[c].astype(str).nunique() > 1]


def report_data(run_dir: Path, table: pd.DataFrame, embed: bool) -> dict:
    """What the page needs: rows (with an image source each), the pickable axes, the metrics, the specs."""
    params = cell_columns(table) + ["seed"]
    metrics = [c for c in metric_columns(table) if table[c].notna().any()]
    rows, left_out = [], []
    for record in table.to_dict("records"):
        path = verified_image(run_dir, record)  # only files in RUN_DIR/images whose sha256 matches the row
        if path is not None:
            source = ("data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()) if embed else \
                path.relative_to(run_dir.absolute()).as_posix()
        else:
            source = None
            if record.get("state") == "COMPLETE":
                left_out.append(str(record.get("trial_id"))[:32])
        rows.append({"src": source, "state": record.get("state"), "trial_id": record.get("trial_id"),
                     **{c: json_value(record.get(c)) for c in params + metrics}})
    warn = lambda message: warnings.warn(message, stacklevel=4)  # noqa: E731
    store = RunStore(run_dir)
    texts = [(p.name, store.read_bytes("specs", p.name, warn=warn)) for p in store.files("specs", "*.yaml")] or \
        [(name, store.read_bytes(name, warn=warn)) for name in ("spec.yaml", "search.yaml")]
    specs = [(name, data.decode("utf-8", "replace")) for name, data in texts if data is not None]  # no links, FIFOs
    axes = varying_columns(table, [c for c in params if c != "seed"]) or ["seed"]
    if left_out:
        warnings.warn(f"{len(left_out)} rows name no image of this folder whose sha256 matches (first: "
                      f"{left_out[0]}); they are left out of the page", stacklevel=3)
    return {"rows": rows, "params": params, "axes": axes + [c for c in params if c not in axes], "varying": axes,
            "metrics": metrics, "specs": specs, "title": run_dir.name, "count": len(rows), "left_out": left_out,
            "notes": model_notes(table) + notes_on_old_rows(table) + series_note(metrics, axes),
            "default_metric": default_metric(run_dir, metrics), "stats": plot_statistics(table, metrics, axes),
            "numeric": [c for c in params if pd.api.types.is_numeric_dtype(table[c])]}


def model_notes(table: pd.DataFrame) -> list[str]:
    """One line per single-file model of the rows: its file name, A1111's short hash and what it predicts."""
    if "model_file" not in table:
        return []
    files = table.dropna(subset=["model_file"]).drop_duplicates(["model_file", "model_hash"])
    return [f"Model file {printable(str(row.model_file))[:120]} (A1111 hash {printable(str(row.model_hash))[:16]}, "
            f"predicts {printable(str(getattr(row, 'prediction_type', 'epsilon')))[:16]})"
            for row in files.itertuples()][:8]


def default_metric(run_dir: Path, metrics: list[str]) -> str | None:
    """The metric the page opens on: edge_f1, else the first the spec asked for, else the first there is."""
    if "edge_f1" in metrics:
        return "edge_f1"
    try:
        from ..spec.metric_registry import REGISTRY, metric_names
        from ..spec.files import load_spec
        asked = [c for name in metric_names(load_spec(run_dir / "spec.yaml").metrics) for c in REGISTRY[name].columns]
    except (OSError, ValueError):
        asked = []
    return next((m for m in asked if m in metrics), metrics[0] if metrics else None)


MAX_SERIES = 200  # metric x axis x line combinations the page's plot offers; a forged results.jsonl decides the counts


def series_of(metrics: list[str], axes: list[str]) -> list[tuple[str, str, str]]:
    """Every (metric, x axis, line axis) the metric plot can show, in order ("(none)": one line)."""
    return [(metric, x, line) for metric in metrics for x in axes for line in ["(none)", *(a for a in axes if a != x)]]


def series_note(metrics: list[str], axes: list[str]) -> list[str]:
    """A line for the page when the metric plot offers only the first MAX_SERIES combinations."""
    total = len(series_of(metrics, [a for a in axes if a != "seed"]))
    return [f"The metric plot offers the first {MAX_SERIES} of {total} combinations of metric, x axis and line "
            "(this folder has many numeric columns or axes)"] if total > MAX_SERIES else []


def plot_statistics(table: pd.DataFrame, metrics: list[str], axes: list[str]) -> dict:
    """The metric plot's points and seed intervals (`statistics.cell_stats`), for at most MAX_SERIES combinations of
    metric, x axis and line axis, over the whole table: {"metric|x|line": [{x, line, mean, lo, hi, n}]}.

    Each series costs one pass over the rows, so the page's work is at most MAX_SERIES passes, however many numeric
    columns and unit axes a (forged) folder holds; `report_data` says when some were left out.
    """
    statistics, axes = {}, [a for a in axes if a != "seed"]  # seeds are what the intervals run over
    for metric, x, line in series_of(metrics, axes)[:MAX_SERIES]:
        by = [x] if line == "(none)" else [x, line]
        cells = cell_stats(table, metric, by=by)
        statistics[f"{metric}|{x}|{line}"] = [
            {"x": json_value(c[x]), "line": "-" if line == "(none)" else json_value(c[line]),
             "mean": json_value(c["mean"]), "lo": json_value(c.ci_low), "hi": json_value(c.ci_high),
             "n": int(c.n)} for _, c in cells.iterrows()]
    return statistics


def write_report(run_dir: str | Path, embed: bool | None = None) -> Path:
    """Write RUN_DIR/report.html (see the module docstring); return its path.

    embed: put the images inside the page (default: when they total under EMBED_LIMIT bytes).
    """
    run_dir, table = scored_results(run_dir, "report")
    if embed is None:
        embed = sum(Path(p).stat().st_size for p in table.image_path if p and Path(p).is_file()) < EMBED_LIMIT
    data = report_data(run_dir, table, embed)
    path = RunStore(run_dir).write("report.html", data=render_page(data))  # a planted link is refused
    return path


def finite(value):
    """`value` with every NaN or infinity, however deep in lists and dicts, as None (JSON's null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def render_page(data: dict) -> str:
    """The report page with `data` in it: autoescaped text, and the data as strict JSON (`tojson`).

    Jinja2's `tojson` writes <, >, & and ' as \\u escapes, so no text in a run folder (a prompt
    holding `</script>` or `<!--<script>`) can end the data block or start markup; the page is
    filled in one pass, so a folder named like a placeholder injects nothing.
    """
    import jinja2
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    environment.policies["json.dumps_kwargs"] = {"sort_keys": False, "allow_nan": False}
    return environment.get_template("report.html.j2").render(title=data["title"], notes=data["notes"], data=finite(data))

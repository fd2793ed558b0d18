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
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import pandas as pd

from .results import load_results

EMBED_LIMIT = 25_000_000  # bytes of PNG embedded; a bigger sweep links its images instead
HIDDEN = ("image_path", "image_sha256", "started_at", "device", "dtype", "error", "flag", "model_fingerprint",
          "torch_version", "diffusers_version", "peft_version", "transformers_version", "workbench_version", "index",
          "warmup", "width", "height", "state")


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
    from .export import cell_columns, metric_columns
    params = cell_columns(table) + ["seed"]
    metrics = [c for c in metric_columns(table) if table[c].notna().any()]
    rows = []
    for record in table.to_dict("records"):
        path = Path(str(record.get("image_path") or ""))
        if record.get("state") == "COMPLETE" and path.is_file():
            source = ("data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()) if embed else \
                path.relative_to(run_dir).as_posix() if path.is_relative_to(run_dir) else path.as_posix()
        else:
            source = None
        rows.append({"src": source, "state": record.get("state"), "trial_id": record.get("trial_id"),
                     **{c: json_value(record.get(c)) for c in params + metrics}})
    specs = [(p.name, p.read_text()) for p in sorted((run_dir / "specs").glob("*.yaml"))] or \
        [(name, (run_dir / name).read_text()) for name in ("spec.yaml", "search.yaml") if (run_dir / name).exists()]
    axes = varying_columns(table, [c for c in params if c != "seed"]) or ["seed"]
    return {"rows": rows, "params": params, "axes": axes + [c for c in params if c not in axes], "varying": axes,
            "metrics": metrics, "specs": specs, "title": run_dir.name, "count": len(rows)}


def write_report(run_dir: str | Path, embed: bool | None = None) -> Path:
    """Write RUN_DIR/report.html (see the module docstring); return its path.

    embed: put the images inside the page (default: when they total under EMBED_LIMIT bytes).
    """
    run_dir = Path(run_dir).resolve()
    table = load_results(run_dir)
    if table.empty:
        raise ValueError(f"run folder {str(run_dir)!r} has no rows to report")
    if embed is None:
        embed = sum(Path(p).stat().st_size for p in table.image_path if p and Path(p).is_file()) < EMBED_LIMIT
    data = report_data(run_dir, table, embed)
    text = PAGE.replace("__TITLE__", html.escape(data["title"]))
    text = text.replace("__DATA__", json.dumps(data).replace("</", "<\\/"))  # no early </script>
    path = run_dir / "report.html"
    path.write_text(text, encoding="utf-8")
    return path


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>__TITLE__ · workbench report</title>
<style>
 body { font: 14px system-ui, sans-serif; margin: 16px; color: #222; }
 h1 { font-size: 20px; margin: 0 0 8px; }
 .pickers label { margin-right: 14px; }
 table.grid { border-collapse: collapse; margin-top: 10px; }
 table.grid th { font-weight: 600; padding: 4px 8px; background: #f3f3f3; font-size: 12px; }
 table.grid td { padding: 3px; text-align: center; }
 table.grid img { width: 128px; height: 128px; image-rendering: pixelated; cursor: zoom-in; display: block; }
 .missing { width: 128px; height: 128px; background: repeating-linear-gradient(45deg,#eee,#eee 6px,#fff 6px,#fff 12px);
            display: flex; align-items: center; justify-content: center; color: #999; font-size: 11px; }
 #tip { position: fixed; pointer-events: none; background: #222; color: #fff; font: 12px monospace; padding: 6px 8px;
        border-radius: 4px; white-space: pre; display: none; z-index: 10; }
 #zoom { position: fixed; inset: 0; background: rgba(0,0,0,.8); display: none; align-items: center;
         justify-content: center; z-index: 20; cursor: zoom-out; }
 #zoom img { width: min(80vw, 80vh); height: min(80vw, 80vh); image-rendering: pixelated; background: #fff; }
 #zoom pre { color: #fff; margin-left: 20px; font-size: 13px; }
 pre.spec { background: #f7f7f7; padding: 8px; overflow: auto; max-height: 300px; }
 h2 { font-size: 16px; margin: 22px 0 6px; }
 svg text { font: 11px system-ui, sans-serif; }
</style></head>
<body>
<h1>__TITLE__</h1>
<div id="summary"></div>
<div class="pickers">
 <label>rows <select id="row"></select></label>
 <label>columns <select id="col"></select></label>
 <label>facet <select id="facet"></select></label>
 <label>facet value <select id="facetValue"></select></label>
 <label>seed <select id="seed"></select></label>
</div>
<div id="grid"></div>
<h2>Metric</h2>
<div class="pickers"><label>metric <select id="metric"></select></label></div>
<div id="plot"></div>
<h2>Spec</h2>
<div id="specs"></div>
<div id="tip"></div>
<div id="zoom"><img alt="enlarged image"><pre></pre></div>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const $ = id => document.getElementById(id);
const fmt = v => v === null || v === undefined ? "-" : (typeof v === "number" && !Number.isInteger(v) ? v.toFixed(3) : String(v));
const values = name => [...new Set(DATA.rows.map(r => fmt(r[name])))].sort((a, b) => {
  const x = parseFloat(a), y = parseFloat(b);
  return isNaN(x) || isNaN(y) ? a.localeCompare(b, undefined, {numeric: true}) : x - y;
});
function fill(select, options, chosen) {
  select.innerHTML = "";
  for (const o of options) { const e = document.createElement("option"); e.value = e.textContent = o; select.appendChild(e); }
  if (chosen !== undefined && options.includes(chosen)) select.value = chosen;
}
function describe(r) {
  return [...DATA.params, ...DATA.metrics].filter(k => r[k] !== null && r[k] !== undefined)
    .map(k => k + " = " + fmt(r[k])).join("\\n") + (r.state === "COMPLETE" ? "" : "\\nstate = " + r.state);
}
function setup() {
  const axes = DATA.axes;
  const varying = DATA.varying;
  fill($("row"), ["(none)", ...axes], varying[1] || "(none)");
  fill($("col"), axes, varying[0]);
  fill($("facet"), ["(none)", ...axes], varying[2] || "(none)");
  fill($("seed"), values("seed"));
  fill($("metric"), DATA.metrics.length ? DATA.metrics : ["(none)"]);
  $("summary").textContent = DATA.count + " images; axes that vary: " + DATA.axes.filter(a => values(a).length > 1).join(", ");
  for (const id of ["row", "col", "facet", "facetValue", "seed", "metric"]) $(id).addEventListener("change", () => {
    if (id === "facet") facetValues();
    draw();
  });
  facetValues();
  for (const [name, text] of DATA.specs) {
    const h = document.createElement("div"); h.textContent = name;
    const p = document.createElement("pre"); p.className = "spec"; p.textContent = text;
    $("specs").append(h, p);
  }
  $("zoom").addEventListener("click", () => { $("zoom").style.display = "none"; });
  draw();
}
function facetValues() {
  const facet = $("facet").value;
  fill($("facetValue"), facet === "(none)" ? ["-"] : values(facet));
}
function matching() {
  const facet = $("facet").value, seed = $("seed").value;
  return DATA.rows.filter(r => fmt(r.seed) === seed && (facet === "(none)" || fmt(r[facet]) === $("facetValue").value));
}
function draw() { drawGrid(); drawPlot(); }
function drawGrid() {
  const row = $("row").value, col = $("col").value, rows = matching();
  const rowValues = row === "(none)" ? ["-"] : values(row), colValues = values(col);
  const table = document.createElement("table"); table.className = "grid";
  const head = table.insertRow(); head.appendChild(document.createElement("th")).textContent = row === "(none)" ? "" : row + " \\\\ " + col;
  for (const c of colValues) head.appendChild(document.createElement("th")).textContent = c;
  for (const rv of rowValues) {
    const tr = table.insertRow(); tr.appendChild(document.createElement("th")).textContent = rv;
    for (const cv of colValues) {
      const td = tr.insertCell();
      const r = rows.find(x => fmt(x[col]) === cv && (row === "(none)" || fmt(x[row]) === rv));
      if (r && r.src) {
        const img = document.createElement("img"); img.src = r.src; img.alt = describe(r).replace(/\\n/g, ", ");
        img.dataset.trial = r.trial_id;
        img.addEventListener("mousemove", e => { const t = $("tip"); t.textContent = describe(r); t.style.display = "block";
          t.style.left = (e.clientX + 14) + "px"; t.style.top = (e.clientY + 14) + "px"; });
        img.addEventListener("mouseleave", () => { $("tip").style.display = "none"; });
        img.addEventListener("click", () => { const z = $("zoom"); z.querySelector("img").src = r.src;
          z.querySelector("pre").textContent = describe(r); z.style.display = "flex"; });
        td.appendChild(img);
      } else {
        const d = document.createElement("div"); d.className = "missing"; d.textContent = r ? r.state : "not run"; td.appendChild(d);
      }
    }
  }
  $("grid").replaceChildren(table);
}
function drawPlot() {
  const metric = $("metric").value, col = $("col").value, row = $("row").value;
  const NS = "http://www.w3.org/2000/svg", W = 560, H = 300, L = 50, B = 36;
  const svg = document.createElementNS(NS, "svg"); svg.setAttribute("width", W); svg.setAttribute("height", H);
  const el = (name, attrs, text) => { const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]); if (text !== undefined) e.textContent = text; svg.appendChild(e); return e; };
  const facet = $("facet").value;
  const rows = DATA.rows.filter(r => r[metric] !== null && r[metric] !== undefined &&
    (facet === "(none)" || fmt(r[facet]) === $("facetValue").value));
  if (metric === "(none)" || !rows.length) { el("text", {x: 10, y: 20}, "no metric to plot"); $("plot").replaceChildren(svg); return; }
  const xs = values(col), groups = row === "(none)" ? ["-"] : values(row);
  const ys = rows.map(r => r[metric]); let lo = Math.min(...ys), hi = Math.max(...ys); if (hi === lo) { hi += 1; lo -= 1; }
  const px = i => L + (xs.length === 1 ? (W - L - 20) / 2 : i * (W - L - 20) / (xs.length - 1));
  const py = v => H - B - (v - lo) / (hi - lo) * (H - B - 14);
  el("line", {x1: L, y1: H - B, x2: W - 10, y2: H - B, stroke: "#999"}); el("line", {x1: L, y1: 10, x2: L, y2: H - B, stroke: "#999"});
  for (const v of [lo, (lo + hi) / 2, hi]) el("text", {x: 4, y: py(v) + 4}, fmt(v));
  xs.forEach((x, i) => el("text", {x: px(i) - 10, y: H - B + 16}, x));
  el("text", {x: W / 2 - 30, y: H - 4}, col); el("text", {x: L + 4, y: 12}, metric + " (mean over seeds)");
  const colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
  groups.forEach((g, gi) => {
    const points = xs.map((x, i) => { const m = rows.filter(r => fmt(r[col]) === x && (row === "(none)" || fmt(r[row]) === g));
      return m.length ? [px(i), py(m.reduce((s, r) => s + r[metric], 0) / m.length)] : null; }).filter(p => p);
    const colour = colours[gi % colours.length];
    el("polyline", {points: points.map(p => p.join(",")).join(" "), fill: "none", stroke: colour, "stroke-width": 2});
    for (const [x, y] of points) el("circle", {cx: x, cy: y, r: 3, fill: colour});
    if (row !== "(none)") el("text", {x: W - 150, y: 20 + 14 * gi, fill: colour}, row + " = " + g);
  });
  $("plot").replaceChildren(svg);
}
setup();
</script>
</body></html>
"""

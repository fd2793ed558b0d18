"""Every notebook runs top to bottom on the toy model, offline, on the CPU; outputs are stripped in git.

And with only its `MODEL` line changed it runs on every family: on `tiny-sdxl` (the SDXL-shaped test model) in the
default suite, on `tiny` and on the SD1.5 hub-cache rehearsal (00 and 01) under `slow`. The model's profile does
the shortening there, never injected parameters.
"""

import json
import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 600  # a hang guard, not a speed test: benchmarks measure speed
FIGURES = Path(__file__).resolve().parents[1] / "outputs" / "notebooks"  # `make readme-images` copies them to docs/
# `make docs` sets this: each executed notebook is also written there as HTML, figures embedded
HTML_DIR = os.environ.get("WORKBENCH_NOTEBOOK_HTML")
DOCS_HTML = Path(__file__).resolve().parents[1] / "docs" / "notebooks"


OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""  # the lab page without the scripts it would fetch from a CDN: require.js, MathJax, mermaid


def formula_image(tex: str) -> str:
    """A display formula ($$...$$) as an inline SVG image, drawn by matplotlib's mathtext at export time."""
    import base64
    import io
    from matplotlib import mathtext
    from matplotlib.font_manager import FontProperties
    svg = io.BytesIO()
    mathtext.math_to_image(f"${' '.join(tex.split())}$", svg, prop=FontProperties(size=15), format="svg")
    encoded = base64.b64encode(svg.getvalue()).decode()
    alt = tex.strip().replace('"', "&quot;")
    return f'<p style="text-align:center"><img alt="{alt}" src="data:image/svg+xml;base64,{encoded}"></p>'


def save_html(notebook, name: str, seconds: float) -> None:
    """Write the executed notebook as one HTML page (for students who cannot run it), when HTML_DIR is set.

    The page works offline, as in a workshop room without a network: its formulas are drawn into it as images, and
    it loads no script or stylesheet from elsewhere (`test_html_copies_load_nothing_from_the_network`)."""
    if not HTML_DIR:
        return
    import copy
    import re

    import jinja2
    from nbconvert import HTMLExporter
    notebook = copy.deepcopy(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = re.sub(r"\$\$(.+?)\$\$", lambda m: formula_image(m.group(1)), cell.source, flags=re.S)
    exporter = HTMLExporter(template_name="lab", template_file="offline.html.j2",
                            extra_loaders=[jinja2.DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})])
    body, _ = exporter.from_notebook_node(notebook)
    note = (f"<p style='font:13px sans-serif;color:#555'>Executed by <code>make docs</code> on the toy model, "
            f"on a 2-core CPU, in {seconds:.0f} s.</p>")
    Path(HTML_DIR).mkdir(parents=True, exist_ok=True)
    (Path(HTML_DIR) / f"{name}.html").write_text(body.replace("</body>", note + "</body>", 1))


def save_largest_figure(notebook, name: str) -> None:
    """Keep the figure of the cell tagged `readme-figure` (chosen for its lesson), else the largest, for the README."""
    import base64
    cells = [c for c in notebook.cells if c.cell_type == "code"]
    chosen = [c for c in cells if "readme-figure" in c.metadata.get("tags", [])]
    pictures = [o["data"]["image/png"] for c in (chosen or cells)
                for o in c.outputs if "image/png" in o.get("data", {})]
    if pictures:
        FIGURES.mkdir(parents=True, exist_ok=True)
        (FIGURES / f"{name}.png").write_bytes(base64.b64decode(max(pictures, key=len)))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One folder for all notebooks, so 03 reuses the adapters 02 trained (the LoRA cache)."""
    return tmp_path_factory.mktemp("notebooks")


# The default suite must not depend on a quiet machine: the LoRA notebooks train fewer steps
# and ranks there (a minute, not four); the full length runs under `slow` and draws the README.
QUICK = {"02_lora.ipynb": {"LORA_STEPS": 20, "RANKS": [1, 2], "TRAIN_SEEDS": [0, 1], "SCENES": 1, "PRIOR": 16,
                           "UNCOND": 8, "BLEND_RANK": 2},
         "03_sweep_lab.ipynb": {"LORA_STEPS": 20}}


@pytest.fixture(scope="module")
def full_length_workdir(tmp_path_factory):
    """The same for the full-length runs, so 03 reuses the adapters 02 trained at full length."""
    return tmp_path_factory.mktemp("notebooks-full")


def execute(path: Path, workdir: Path, model: str | None = None, parameters: dict | None = None):
    """Run a notebook top to bottom; `parameters` are set in a cell after its parameters cell (as papermill does)."""
    notebook = nbformat.read(path, as_version=4)
    cell = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    if model:
        notebook.cells[cell].source = notebook.cells[cell].source.replace('MODEL = "toy"', f'MODEL = "{model}"')
    if parameters:
        injected = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
        notebook.cells.insert(cell + 1, nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]}))
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    started = time.time()
    client.execute()
    return notebook, time.time() - started


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["00_quickstart.ipynb", "00b_diffusion_inside.ipynb", "00c_anatomy.ipynb",
                                          "01_controlnet.ipynb",
                                          "02_lora.ipynb", "03_sweep_lab.ipynb", "04_two_controlnets.ipynb"]


def check_executed(notebook, path: Path, seconds: float) -> None:
    print(f"{path.name}: {seconds:.0f} s")
    images = sum("image/png" in o.get("data", {}) for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert images >= 2, "the notebook should draw its grids and curves"
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    check_quiet(notebook, path)


MAX_LINES, MAX_CHARACTERS = 10, 800  # a cell's printed text, at most: tables show as HTML, long reprs are not shown


def check_quiet(notebook, path: Path) -> None:
    """No executed cell prints more than MAX_LINES lines or MAX_CHARACTERS characters (progress bars, which redraw
    one line, count as their last state); a value with an HTML form (a table) is shown as HTML."""
    for number, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = output.get("data", {})
            if "text/html" in data or "image/png" in data:
                continue
            text = output.get("text", "") if output.output_type == "stream" else data.get("text/plain", "")
            text = "\n".join(line.rsplit("\r", 1)[-1] for line in text.rstrip("\n").split("\n"))
            assert text.count("\n") < MAX_LINES and len(text) <= MAX_CHARACTERS, (
                f"{path.name} cell {number} prints {text.count(chr(10)) + 1} lines, {len(text)} characters: "
                f"{text[:200]!r}")


def toy_lane(path: Path):
    """00 runs in the default suite; 00c trains a ControlNet on the toy for 2 minutes, so it runs under `slow` (and
    `make docs`); the others (4.5 minutes together) run in the integration lane that CI runs after the suite."""
    if path.name.startswith("00_"):
        return path
    return pytest.param(path, marks=pytest.mark.slow if path.name.startswith("00c_") else pytest.mark.integration)


@pytest.mark.parametrize("path", [toy_lane(p) for p in NOTEBOOKS], ids=lambda p: p.name)
def test_notebook_runs_on_the_toy_model(path, workdir):
    notebook, seconds = execute(path, workdir, parameters=QUICK.get(path.name))
    check_executed(notebook, path, seconds)
    if path.name not in QUICK:  # a figure of a shortened run is not the notebook's figure
        save_largest_figure(notebook, path.stem)
        save_html(notebook, path.stem, seconds)


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.name in QUICK], ids=lambda p: p.name)
def test_lora_notebook_at_full_length(path, full_length_workdir, monkeypatch):
    """02 and 03 with their own parameters. 02's rank study trains 15 adapters (35 min here with its sweeps) into the
    repository's runs/lora-cache, which `benchmarks/rank_study.py` also fills; later runs reuse them."""
    monkeypatch.setenv("WORKBENCH_LORA_CACHE", os.environ.get("WORKBENCH_LORA_CACHE",
                                                              str(Path(__file__).resolve().parents[1] / "runs" / "lora-cache")))
    notebook, seconds = execute(path, full_length_workdir)
    check_executed(notebook, path, seconds)
    save_largest_figure(notebook, path.stem)
    save_html(notebook, path.stem, seconds)


@pytest.fixture(scope="module")
def family_workdir(tmp_path_factory):
    """One folder per test model, so 03 finds the lesson data 02 wrote."""
    return lambda model: tmp_path_factory.getbasetemp() / f"notebooks-{model}"


def run_with_only_model_changed(path: Path, model: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    notebook, seconds = execute(path, folder, model=model)
    print(f"{path.name} on {model}: {seconds:.0f} s")
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    check_quiet(notebook, path)
    printed = "".join(o.get("text", "") for o in notebook.cells[1].outputs)
    assert f"profile of {model!r}" in printed, "the parameters cell prints the model's profile"


# The integration lane runs the three short notebooks on tiny-sdxl; the four long ones (150 s together on a 2-core CI
# machine) run with `make test-slow`, as the tiny SD1.5 runs do.
@pytest.mark.integration
@pytest.mark.parametrize("path", [p if p.name.startswith(("00_", "00b_", "00c_")) else pytest.param(p, marks=pytest.mark.slow)
                                  for p in NOTEBOOKS], ids=lambda p: p.name)
def test_notebook_runs_on_tiny_sdxl_with_only_model_changed(path, family_workdir):
    run_with_only_model_changed(path, "tiny-sdxl", family_workdir("tiny-sdxl"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_on_tiny_with_only_model_changed(path, family_workdir):
    run_with_only_model_changed(path, "tiny", family_workdir("tiny"))


@pytest.fixture(scope="module")
def sd15_hub_cache(tmp_path_factory):
    """The SD1.5 hub-cache rehearsal (`tests/hub_cache.py`): the published architecture, random weights."""
    from hub_cache import write_sd15_cache
    from workbench.families.sd15 import SD15_CANNY_ID, SD15_ID
    root = tmp_path_factory.mktemp("notebook-hub")
    write_sd15_cache(root / "hf_home", SD15_ID, SD15_CANNY_ID, root / "work")
    return root / "hf_home"


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.name.startswith(("00_", "01_"))], ids=lambda p: p.name)
def test_notebook_runs_on_the_sd15_hub_cache_through_the_cpu_profile(path, sd15_hub_cache, tmp_path, monkeypatch):
    """00 and 01 with MODEL = "sd15" loading the 860M-parameter architecture from a hub cache: 128 px, 2 steps, 1 seed."""
    monkeypatch.setenv("HF_HOME", str(sd15_hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notebook, seconds = execute(path, tmp_path, model="sd15")
    print(f"{path.name} on the SD1.5 rehearsal: {seconds:.0f} s")
    printed = "".join(o.get("text", "") for o in notebook.cells[1].outputs)
    assert "SHORTENED for a CPU" in printed and "128 px" in printed and "2 steps" in printed


def test_figures_show_when_mplbackend_is_agg(tmp_path, monkeypatch):
    """Docker images often set MPLBACKEND=Agg, and kernels inherit it: the figures must still show."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    path = tmp_path / "figures.ipynb"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import pandas as pd\nimport workbench as wb\n"
        "table = pd.DataFrame({'seed': [0, 1, 0, 1], 'conditioning_scale': [0.0, 0.0, 1.0, 1.0],\n"
        "                      'edge_f1': [0.2, 0.3, 0.9, 0.8]})\n"
        "wb.plot_metric(table, x='conditioning_scale', y='edge_f1', hue=None);\n"
        "wb.plot_images([wb.make_canny(__import__('PIL.Image').Image.new('RGB', (32, 32)))] * 2, ['a', 'b']);",
        metadata={"tags": ["parameters"]})])
    nbformat.write(notebook, path)
    executed, seconds = execute(path, tmp_path)
    check_executed(executed, path, seconds)


def test_sd15_fails_with_the_clear_offline_message(workdir):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    with pytest.raises(CellExecutionError) as caught:
        execute(NOTEBOOKS[0], workdir, model="sd15")
    message = str(caught.value)
    assert "ModelNotAvailableError" in message and "huggingface-cli download" in message
    assert "lllyasviel/sd-controlnet-canny" in message


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_html_copy_is_in_docs_with_its_figures(path):
    """`make docs` writes docs/notebooks/<name>.html; a student without Python reads the lesson there."""
    page = DOCS_HTML / f"{path.stem}.html"
    assert page.exists(), f"{page} is missing: run `make docs`"
    text = page.read_text()
    assert text.count("data:image/png;base64") >= 2 and "Executed by <code>make docs</code>" in text
    markdown = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"]
    assert markdown and markdown[0].source.splitlines()[0].lstrip("# ").split(":")[0][:20] in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_html_copies_load_nothing_from_the_network(path):
    """A workshop room may have no network: no script, stylesheet or image of a copy comes from elsewhere, and its
    formulas are pictures in the page, not TeX waiting for MathJax."""
    import re
    page = (DOCS_HTML / f"{path.stem}.html").read_text()
    outside = re.findall(r"<(?:script|link|img)\b[^>]*\b(?:src|href)=[\"']?(?:https?:)?//[^\"' >]+", page)
    assert not outside, outside[:3]
    formulas = sum(c.source.count("$$") // 2 for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    assert page.count('src="data:image/svg+xml;base64,') >= formulas and "$$" not in page


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_are_stripped_in_git(path):
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None, f"{path.name} has outputs: strip them"
    first_code = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    assert "parameters" in first_code["metadata"].get("tags", []), "the first code cell holds the parameters"

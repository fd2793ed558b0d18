"""A real JupyterLab page in headless Chromium: the SweepPanel renders and runs a 2x2 sweep by clicks.

This catches what headless widget tests cannot: a mismatch between the ipywidgets
kernel package and its JupyterLab front end ("Error displaying widget").
"""

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from chromium import CHROMIUM, CHROMIUM_FLAGS, NEEDS_CHROMIUM

SCREENSHOT_DIR = Path(os.environ.get("WORKBENCH_SCREENSHOTS", Path(__file__).resolve().parents[2] / "outputs" / "browser"))

pytestmark = [*NEEDS_CHROMIUM, pytest.mark.integration]  # 35 s: a JupyterLab server and a browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def panel_notebook(path: Path, run_root: Path) -> None:
    source = f'''import workbench as wb
pipe = wb.load_pipeline("tiny", device="cpu")
panel = wb.SweepPanel(pipe, model="tiny", prompt="a red circle on a blue background", run_root={str(run_root)!r})
panel.steps.value, panel.seeds.value, panel.scale_count.value = 2, "0-1", 2
panel'''
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)],
                                        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                 "language": "python"}})
    nbformat.write(notebook, path)


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on localhost serving tmp_path; yields its URL with the token."""
    port, token = free_port(), secrets.token_hex(16)
    panel_notebook(tmp_path / "panel.ipynb", tmp_path / "runs")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}", "--ServerApp.allow_root=True",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "wb"))
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if server.poll() is not None:
                pytest.fail("jupyter lab exited: " + (tmp_path / "server.log").read_text()[-2000:])
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("jupyter lab did not start in 90 s: " + (tmp_path / "server.log").read_text()[-2000:])
    try:
        yield f"{base}/lab/tree/panel.ipynb?token={token}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_sweep_panel_runs_by_clicks_in_jupyterlab(jupyterlab, tmp_path):
    from playwright.sync_api import sync_playwright
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        try:
            page.goto(jupyterlab, timeout=60_000)
            page.wait_for_selector(".jp-Notebook", timeout=60_000)
            select_kernel = page.locator(".jp-Dialog button", has_text="Select")
            try:  # JupyterLab asks which kernel to start for a notebook it has not opened before
                select_kernel.wait_for(timeout=15_000)
                select_kernel.click()
            except Exception:
                pass  # no dialog: the kernel starts on its own
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            run_button = page.locator(".jupyter-widgets button", has_text="Run").first
            run_button.wait_for(timeout=120_000)
            run_button.click()
            page.wait_for_selector("text=4 / 4", timeout=120_000)
            page.wait_for_function("() => [...document.querySelectorAll('img.widget-image')]"
                                   ".some(img => img.naturalWidth > 100)", timeout=60_000)
            page.wait_for_timeout(500)
            content = page.content()
            assert "Error displaying widget" not in content
            assert "COMPLETE" in content  # the results table rendered in the panel
        finally:
            page.screenshot(path=str(SCREENSHOT_DIR / "jupyterlab-sweep-panel.png"), full_page=True)
            browser.close()
    rows = list((tmp_path / "runs").glob("*/results.jsonl"))
    assert rows and rows[0].read_text().count("\n") == 4

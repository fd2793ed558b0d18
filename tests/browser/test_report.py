"""`workbench report`: one offline HTML page, driven in the real Chromium: pick axes, hover, click, no errors."""

import shutil

import pytest
from chromium import CHROMIUM, CHROMIUM_FLAGS, NEEDS_CHROMIUM

from workbench import run_sweep
from workbench.spec import spec_from_dict

pytestmark = NEEDS_CHROMIUM
CAPTION = "a red circle on a blue background"


@pytest.fixture(scope="module")
def report(tiny_pipe, tmp_path_factory):
    from workbench.report import write_report
    run_dir = tmp_path_factory.mktemp("run")
    spec = spec_from_dict({"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2,
                           "conditioning_scale": [0.0, 0.5, 1.0], "guidance": [3.0, 5.0], "seed": [0, 1]})
    run_sweep(tiny_pipe, spec, run_dir, log=lambda m: None)
    return write_report(run_dir)


def test_report_is_one_offline_page_with_axes_hover_zoom_and_a_plot(report, tmp_path):
    from playwright.sync_api import sync_playwright
    copy = tmp_path / "sent" / "report.html"  # what a student sends: the page alone, away from the run folder
    copy.parent.mkdir()
    shutil.copy(report, copy)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors, requests = [], []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        try:
            page.goto(copy.as_uri())
            page.wait_for_selector("table.grid img")
            assert page.locator("table.grid img").count() == 6  # 3 scales across, 2 guidances down
            loaded = page.evaluate("() => [...document.querySelectorAll('table.grid img')].every(i => i.naturalWidth > 0)")
            assert loaded, "an embedded image did not decode"
            page.select_option("#col", "guidance")
            page.select_option("#row", "conditioning_scale")
            headers = page.locator("table.grid tr").first.inner_text()
            assert headers.split("\t")[1:] == ["3", "5"] and "conditioning_scale" in headers
            page.select_option("#seed", "1")
            first = page.locator("table.grid img").first
            first.hover()
            tip = page.locator("#tip")
            assert tip.is_visible() and "edge_f1 = " in tip.inner_text() and "seed = 1" in tip.inner_text()
            first.click()
            assert page.locator("#zoom").is_visible() and "guidance = " in page.locator("#zoom pre").inner_text()
            page.locator("#zoom").click()
            assert not page.locator("#zoom").is_visible()
            page.select_option("#metric", "edge_f1")
            assert page.locator("#plot svg polyline").count() == 3  # one line per row value
            assert "conditioning_scale" in page.locator("#specs").inner_text()
        finally:
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            browser.close()
    assert not errors, errors
    assert all(url.startswith(("file:", "data:")) for url in requests), [u for u in requests if "file:" not in u][:3]


HOSTILE = 'a red circle </script><!--<script> <img src=x onerror="window.pwned=1"> \u2028 & \' on a blue background'


def test_any_text_in_a_run_folder_stays_text(tiny_pipe, tmp_path):
    """A prompt (or folder name) holding script-closing, comment-opening and event-handler markup: the page works,
    shows it as text, and runs none of it."""
    from playwright.sync_api import sync_playwright

    from workbench.report import write_report
    run_dir = tmp_path / "x__DATA__ {{ title }}</title>"
    spec = spec_from_dict({"model": "tiny", "prompt": [CAPTION, HOSTILE], "control_image": f"toy:{CAPTION}",
                           "steps": 2, "seed": [0], "metrics": ["edge"]})
    run_sweep(tiny_pipe, spec, run_dir, log=lambda m: None)
    page_path = write_report(run_dir)
    assert "</script><!--" not in page_path.read_text().split('<script id="data"')[1].split("</script>")[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("dialog", lambda dialog: errors.append("a dialog opened"))
        try:
            page.goto(page_path.as_uri())
            page.wait_for_selector("table.grid img")
            assert page.locator("table.grid img").count() == 2
            assert page.evaluate("() => window.pwned") is None
            assert page.locator("h1").inner_text() == run_dir.name  # the folder's name, as text
            page.select_option("#col", "prompt")
            assert "onerror" in page.locator("table.grid").inner_text()  # shown, not run
            assert page.locator("img[src='x']").count() == 0
        finally:
            browser.close()
    assert not errors, errors


LONG = "a white star on a purple background in outlined style"


def test_the_metric_plot_has_seed_intervals_all_seeds_and_an_ab_wipe(tiny_pipe, tmp_path):
    """The statistics issue's fixes: intervals from Python, lines only along numbers, an HTML legend, whole labels
    in a tooltip, an "all seeds" view and an A/B wipe between two cells."""
    from playwright.sync_api import sync_playwright

    from workbench.report import write_report
    spec = spec_from_dict({"model": "tiny", "prompt": [CAPTION, LONG], "control_image": f"toy:{CAPTION}", "steps": 2,
                           "conditioning_scale": [0.0, 1.0], "seed": [0, 1, 2], "metrics": ["edge"]})
    run_sweep(tiny_pipe, spec, tmp_path, log=lambda m: None)
    page_path = write_report(tmp_path)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            page.goto(page_path.as_uri())
            page.wait_for_selector("#plot svg")
            assert page.input_value("#metric") == "edge_f1"
            page.select_option("#col", "conditioning_scale")
            page.select_option("#row", "prompt")
            assert page.locator("#plot svg polyline").count() == 2 and page.locator("#plot svg polygon").count() >= 1
            assert "95% interval of the mean over seeds" in page.locator("#legend").inner_text()
            page.select_option("#col", "prompt")  # a category along x: points with bars, no line between prompts
            page.select_option("#row", "conditioning_scale")
            assert page.locator("#plot svg polyline").count() == 0 and page.locator("#plot svg line").count() >= 4
            titles = page.eval_on_selector_all("#plot svg text title", "es => es.map(e => e.textContent)")
            labels = page.eval_on_selector_all("#plot svg text", "es => es.map(e => e.firstChild.textContent)")
            assert LONG in titles and any(t.endswith("\u2026") for t in labels)
            page.select_option("#seed", "all seeds")
            assert page.locator("table.grid .strip").count() == 4 and page.locator("table.grid img").count() == 12
            before = page.eval_on_selector("#imageB", "e => e.style.clipPath")
            page.locator("#wipe").fill("80")
            assert before == "inset(0px 0px 0px 50%)" and "80%" in page.eval_on_selector("#imageB", "e => e.style.clipPath")
            assert page.eval_on_selector("#imageA", "e => e.naturalWidth") > 0
        finally:
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            browser.close()
    assert not errors, errors

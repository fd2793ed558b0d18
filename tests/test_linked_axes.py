"""Linked axes (`link`): groups that step together inside a product, as peers' users ask (issue #37, item 8)."""

import pytest
from PIL import Image

from workbench import load_results, run_sweep, search
from workbench.spec import expand, spec_from_dict
from workbench.studies.search import split_ranges

CAPTION = "a red circle on a blue background"
BASE = {"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2, "seed": [0],
        "negative_prompt": ["", "blurry"], "guidance": [3.0, 7.0], "conditioning_scale": [0.0, 1.0]}
LINKED = {**BASE, "link": [["negative_prompt", "guidance"]]}


def test_a_linked_trial_is_the_same_trial_as_in_the_full_product():
    linked, product = expand(spec_from_dict(LINKED), "f"), expand(spec_from_dict(BASE), "f")
    assert len(linked) == 4 and len(product) == 8
    pairs = {(t.params["negative_prompt"], t.params["guidance"]) for t in linked}
    assert pairs == {("", 3.0), ("blurry", 7.0)}  # stepped together, not crossed
    by_id = {t.trial_id: t.params for t in product}
    assert all(by_id[t.trial_id] == t.params for t in linked)  # same parameters, same id
    assert list(linked[0].params) == list(product[0].params)  # same row order
    assert spec_from_dict(spec_from_dict(LINKED).to_dict()).link == [["negative_prompt", "guidance"]]
    assert "link" not in spec_from_dict(BASE).to_dict()  # specs without it read as they always did


@pytest.mark.parametrize("link, match", [
    ([["negative_prompt", "seed"]], r"as many values each; got \{'negative_prompt': 2, 'seed': 1\}"),
    ([["negative_prompt", "nothing"]], "nothing is not one"),
    ([["guidance"]], "two or more"),
    ([["negative_prompt", "guidance"], ["guidance", "conditioning_scale"]], "'guidance' is in two `link` groups"),
    ("adapter", "a list of groups")])
def test_bad_links_are_refused_by_name(link, match):
    with pytest.raises(ValueError, match=match):
        spec_from_dict({**BASE, "link": link})
    with pytest.raises(ValueError, match="with mode 'zip' every axis is already stepped together"):
        spec_from_dict({**LINKED, "mode": "zip"})


def test_a_linked_sweep_grows_into_the_product_and_writes_both_values(tiny_pipe, tmp_path):
    run = tmp_path / "run"
    first = run_sweep(tiny_pipe, LINKED, run, log=lambda *_: None)
    assert len(first) == 4
    text = Image.open(first[first.negative_prompt == "blurry"].image_path.iloc[0]).info["parameters"]
    assert "Negative prompt: blurry" in text and "CFG scale: 7.0" in text
    said = []
    grown = run_sweep(tiny_pipe, BASE, run, log=said.append)
    assert len(grown) == 8 and len(load_results(run)) == 8  # 4 reused, 4 new: no trial drawn twice
    assert any("growing the sweep" in line for line in said)


def test_search_ranges_over_an_axis_beside_a_linked_group(tiny_pipe, tmp_path):
    spec = {**LINKED, "conditioning_scale": {"low": 0.0, "high": 1.5}}
    result = search(tiny_pipe, spec, tmp_path, target="edge_recall>=0.0", minimize="conditioning_scale", budget=4,
                    log=lambda *_: None)
    assert result.images == 4 and result.best == {"conditioning_scale": 0.0}
    assert set(zip(result.table.negative_prompt, result.table.guidance)) == {("", 3.0), ("blurry", 7.0)}
    with pytest.raises(ValueError, match="is a range and also linked"):
        split_ranges({**LINKED, "guidance": {"low": 1.0, "high": 7.0}})

"""Adaptive search: ranges in a spec, bisection toward a target, optuna's samplers, resume after a kill."""

import json
import re
import math

import pytest

from sweep_helpers import ROOT
from workbench import load_results, plot_search, search
from workbench.adaptive import Range, next_probe, parse_target, split_ranges

CAPTION = "a red circle on a blue background"


def test_targets_and_ranges_are_read_and_checked():
    target = parse_target("edge_f1 >= 0.9")
    assert (target.column, target.op, target.value) == ("edge_f1", ">=", 0.9) and target.met(0.95)
    assert not target.met(0.8) and not target.met(float("nan")) and target.shortfall(0.8) == pytest.approx(0.1)
    fixed, ranges = split_ranges({"conditioning_scale": {"low": 0.0, "high": 1.5, "step": 0.05}, "seed": [0, 1]})
    assert ranges == [Range("conditioning_scale", 0.0, 1.5, False, 0.05)] and fixed["conditioning_scale"] == [0.0]
    for bad, match in [({"conditioning_scale": {"low": 1, "high": 0}}, "low < high"),
                       ({"conditioning_scale": {"low": 0}}, "needs low and high"),
                       ({"prompt": {"low": 0, "high": 1}}, "only numeric axes"),
                       ({"guidance": {"low": 0, "high": 9, "log": True}}, "log scale")]:
        with pytest.raises(ValueError, match=match):
            split_ranges(bad)
    with pytest.raises(ValueError, match="column>=value"):
        parse_target("edge_f1 about 0.9")


def test_bisection_finds_a_monotone_threshold_within_its_budget():
    """Against a known curve f(x) = x: the smallest x with f >= 0.6 on [0, 1.5], in 10 probes."""
    rng, target, done = Range("conditioning_scale", 0.0, 1.5), parse_target("edge_f1>=0.6"), []
    while len(done) < 10:
        value = next_probe(done, target, rng, minimise=True)
        if value is None:
            break
        done.append((value, value))
    meets = [v for v, f in done if f >= 0.6]
    assert done[:2] == [(1.5, 1.5), (0.0, 0.0)]  # the far end, then the near end
    assert 0.6 <= min(meets) < 0.6 + 1.5 / 2 ** 8
    assert next_probe([(1.5, 0.1), (0.0, 0.0)], target, rng, True) is None  # nothing meets: stop
    assert next_probe([(1.5, 0.9), (0.0, 0.7)], target, rng, True) is None  # the near end meets: it is the answer


def search_spec(**more):
    return {"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2,
            "conditioning_scale": {"low": 0.0, "high": 1.5}, "seed": [0, 1], **more}


def test_search_writes_rows_a_study_and_an_answer(tiny_pipe, tmp_path):
    lines = []
    result = search(tiny_pipe, search_spec(), tmp_path, target="edge_recall>=0.0", minimize="conditioning_scale",
                    budget=8, log=lines.append)
    # every scale meets recall >= 0: the far end, then the near end, which is the answer
    assert result.best == {"conditioning_scale": 0.0} and result.images == 4 and len(result.trials) == 2
    table = load_results(tmp_path)
    assert set(table.search_trial) == {0, 1} and len(table) == 4 and (table.state == "COMPLETE").all()
    saved = json.loads((tmp_path / "search.json").read_text())
    assert saved["best"] == {"conditioning_scale": 0.0} and saved["images"] == 4
    assert (tmp_path / "search.journal").exists() and lines[-1].startswith("best conditioning_scale = 0")
    assert plot_search(table, "conditioning_scale", "edge_recall", target=0.0).axes


def test_each_candidate_is_a_plan_for_the_engine(tiny_pipe, tmp_path, monkeypatch):
    """The search hands the engine one plan per candidate (`run_plan`), its rows tagged with the candidate's number;
    it never calls `run_sweep`, and only search.yaml (not a cell's spec) is recorded in the folder."""
    import workbench.engine.sweep as engine
    plans, run_plan = [], engine.run_plan

    def recording(pipe, plan, run_dir, **kwargs):
        plans.append(plan)
        return run_plan(pipe, plan, run_dir, **kwargs)

    def refused(*args, **kwargs):
        raise AssertionError("the search called run_sweep")

    monkeypatch.setattr(engine, "run_plan", recording)
    monkeypatch.setattr(engine, "run_sweep", refused)
    search(tiny_pipe, search_spec(), tmp_path, target="edge_recall>=0.0", minimize="conditioning_scale", budget=8,
           log=lambda *_: None)
    assert [(p.records_spec, p.tags, p.spec.conditioning_scale) for p in plans] == \
        [(False, {"search_trial": 0}, [1.5]), (False, {"search_trial": 1}, [0.0])]  # the far end, then the near end
    assert (tmp_path / "search.yaml").exists() and not (tmp_path / "spec.yaml").exists()
    assert sorted(load_results(tmp_path).search_trial.unique()) == [0, 1]


def test_an_unreachable_target_says_so(tiny_pipe, tmp_path):
    lines = []
    result = search(tiny_pipe, search_spec(), tmp_path, target="edge_f1>=2", minimize="conditioning_scale",
                    budget=8, log=lines.append)
    assert result.best == {} and lines[-1].startswith("no candidate met edge_f1>=2")


def test_two_objectives_use_nsga2_and_report_a_pareto_front(tiny_pipe, tmp_path):
    spec = search_spec(guidance={"low": 1.0, "high": 7.0})
    lines = []
    result = search(tiny_pipe, spec, tmp_path, maximize=["edge_f1", "edge_ssim"], budget=12, log=lines.append)
    saved = json.loads((tmp_path / "search.json").read_text())
    assert len(result.trials) == 6 and saved["pareto_front"] and set(result.best) == {"conditioning_scale", "guidance"}
    # the front, one candidate a line, not one "best"; values to 4 significant digits, never 1.4500000000000002
    assert lines[-1].startswith(f"Pareto front: {len(saved['pareto_front'])} candidates")
    assert sum(line.startswith("  candidate ") for line in lines) == len(saved["pareto_front"])
    assert not any(re.search(r"\.\d*(0{5}|9{5})\d", line) for line in lines), lines  # 1.4500000000000002's tail


@pytest.mark.parametrize("bad,match", [(dict(budget=3), "budget of 3 images"), (dict(stat="mode"), "`stat`"),
                                       (dict(minimize="guidance"), "not a range")])
def test_bad_searches_are_refused_before_anything_runs(tiny_pipe, tmp_path, bad, match):
    arguments = {"target": "edge_f1>=0.5", "minimize": "conditioning_scale", **bad}
    with pytest.raises(ValueError, match=match):
        search(tiny_pipe, search_spec(), tmp_path, **arguments)
    assert not (tmp_path / "search.journal").exists()


def test_a_killed_search_resumes_without_losing_or_repeating_images(tmp_path):
    import subprocess
    import sys
    import os
    import yaml
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(search_spec(steps=3)))
    command = [sys.executable, "-m", "workbench", "search", str(tmp_path / "search.yaml"), "--run-dir",
               str(tmp_path / "run"), "--target", "edge_f1>=0.3", "--minimize", "conditioning_scale", "--budget", "12"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(command, cwd=ROOT, env={**env, "WORKBENCH_FAULT": "after_row"}, capture_output=True)
    assert killed.returncode == -9
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    table = load_results(tmp_path / "run")
    assert table.trial_id.is_unique and (table.state == "COMPLETE").all()
    saved = json.loads((tmp_path / "run" / "search.json").read_text())
    assert saved["images"] == len(table) <= 12
    assert all(math.isfinite(t["objective"]["edge_f1"]) for t in saved["trials"])

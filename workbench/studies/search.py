"""Adaptive search: find a target in few images instead of drawing a whole grid.

A grid spends most of its images where nothing changes. A search asks a question instead:
"the smallest conditioning scale whose mean edge F1 over my seeds is at least 0.9". In the
spec, the searched axis is a range, and every other axis keeps its values:

    conditioning_scale: {low: 0.0, high: 1.5}     # also log: true, step: 0.05
    seed: [0, 1, 2, 3]

    python -m workbench search spec.yaml --run-dir runs/s --target "edge_f1>=0.9" \\
        --minimize conditioning_scale --budget 40

Each candidate is one value per range, drawn at every combination of the spec's other list
axes (its seeds, and any other axis with several values) as one small sweep; the budget counts
those images, all of them. Its
objective is a column of the results table, summarised over the seeds (`--stat` mean,
median or min). How candidates are chosen:
  - one range, one target, and that range minimised (or maximised): bisection, assuming the
    column rises (or falls) with the parameter, as edge F1 does with the scale. Each probe
    halves the bracket between a value that misses the target and one that meets it.
  - anything else: optuna's samplers. TPE for one objective, NSGA-II for two or more
    (`--maximize style_strength --maximize colour_fidelity` gives a Pareto front); targets
    become constraints.
The study lives in the run folder as optuna's crash-safe journal (`search.journal`), every
image is a normal row of the same table with the optuna trial number in `search_trial`,
and a killed search resumes where it stopped. `search.json` holds the answer.
"""

from __future__ import annotations

import json
import math
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from ..spec.shorten import short
from ..store.run_folder import take_lock
from ..store.run_store import RunStore
from ..store.safe_files import check_not_planted, refuse_planted, write_atomic
from ..spec.axes import BUILTIN, REGISTERED, axis_record
from ..spec.files import read_spec_file
from ..spec.sweep_spec import AXES, count_trials, kind_of, spec_from_dict
from ..spec.units import is_unit_key

def searchable() -> tuple[str, ...]:
    """The axes a range can search: those whose record says so (`axes.py`: every numeric one but the seed, registered
    axes that ask for it); a unit's too (canny.scale behaves as conditioning_scale)."""
    return tuple(axis.key for axis in (*BUILTIN, *REGISTERED.values()) if axis.searchable)
OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
STATS = ("mean", "median", "min", "max")
TARGET = re.compile(r"^\s*([\w.]+)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Range:
    """A searched axis: values from `low` to `high` (on a log scale, or in steps of `step`)."""
    name: str
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def suggest(self, trial):
        if axis_record(self.name).kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)

    def snap(self, value: float) -> float:
        """A value on the range's grid (its step), inside the range."""
        if self.step:
            value = self.low + round((value - self.low) / self.step) * self.step
        return float(min(max(value, self.low), self.high))


@dataclass(frozen=True)
class Target:
    """`column op value`, e.g. edge_f1 >= 0.9."""
    column: str
    op: str
    value: float

    def met(self, x: float) -> bool:
        return x is not None and not math.isnan(x) and OPERATORS[self.op](x, self.value)

    def shortfall(self, x: float) -> float:
        """How far `x` misses (<= 0 when met): optuna's constraint value."""
        if x is None or math.isnan(x):
            return 1e9
        return (self.value - x) if self.op in (">=", ">") else (x - self.value)

    def __str__(self):
        return f"{self.column}{self.op}{self.value:g}"


@dataclass
class SearchResult:
    """What a search found: the best values, their objective, the images it took, every candidate."""
    best: dict
    objective: dict
    images: int
    trials: list
    table: pd.DataFrame
    grid_images: int | None = None
    resolution: float | None = None
    notes: list = field(default_factory=list)


def parse_target(text: str) -> Target:
    match = TARGET.match(text)
    if not match:
        raise ValueError(f"a target reads 'column>=value' (or <=, >, <), e.g. 'edge_f1>=0.9'; got {short(text)}")
    return Target(match.group(1), match.group(2), float(match.group(3)))


def split_ranges(data: dict) -> tuple[dict, list[Range]]:
    """A search spec's axes that are ranges ({low, high, log?, step?}), and the spec with each at its low end."""
    fixed, ranges = dict(data), []
    for name, value in data.items():
        if not isinstance(value, dict) or not (name in AXES or name in REGISTERED or is_unit_key(name)):
            continue  # controls, adapters, metric_models: mappings, not ranges
        if any(name in group for group in data.get("link") or [] if isinstance(group, list)):
            raise ValueError(f"`{name}` is a range and also linked (`link`); a search ranges over one axis at a time: "
                             "unlink it, or search another axis")
        if kind_of(name) not in searchable():
            raise ValueError(f"`{name}` is a range, but only numeric axes can be searched: {list(searchable())} "
                             "and <unit>.scale/start/end/low/high")
        unknown = sorted(set(value) - {"low", "high", "log", "step"})
        if unknown or "low" not in value or "high" not in value:
            raise ValueError(f"range `{name}` needs low and high (and optionally log, step); got {short(value)}")
        low, high = float(value["low"]), float(value["high"])
        if not low < high:
            raise ValueError(f"range `{name}` needs low < high, got low={low:g}, high={high:g}")
        if value.get("log") and low <= 0:
            raise ValueError(f"range `{name}` is on a log scale, so low must be > 0, got {low:g}")
        ranges.append(Range(name, low, high, bool(value.get("log", False)), value.get("step")))
        fixed[name] = [low]
    return fixed, ranges


def cell_spec(data: dict, values: dict):
    return spec_from_dict({**data, **{name: [value] for name, value in values.items()}})


def cell_objective(rows: pd.DataFrame, column: str, stat: str) -> float:
    """The cell's objective: `stat` of `column` over its seeds (NaN if a row failed or lacks the column)."""
    if column not in rows or rows.empty or (rows.state != "COMPLETE").any():
        return float("nan")
    return float(getattr(rows[column], stat)())


class Searcher:
    """Runs candidates as cells into one run folder and keeps the optuna study beside them."""

    def __init__(self, pipe, data: dict, ranges: list[Range], run_dir: Path, stat: str, log):
        self.pipe, self.data, self.ranges, self.run_dir, self.stat, self.log = pipe, data, ranges, run_dir, stat, log

    def evaluate(self, number: int, values: dict, columns: list[str]) -> dict:
        """Draw one cell (all seeds) and return {column: objective}: one plan for the engine, its rows tagged with the
        candidate's number (search.yaml, not the cell, is the folder's spec)."""
        from ..engine.plan import Plan
        from ..engine.sweep import run_plan  # the engine loads torch: not at import (`--help` stays fast)
        plan = Plan(cell_spec(self.data, values), records_spec=False, tags={"search_trial": number})
        rows = run_plan(self.pipe, plan, self.run_dir, log=lambda m: None)
        return {column: cell_objective(rows, column, self.stat) for column in columns}


def journal_path(run_dir: Path) -> Path:
    """The study's journal, checked first: optuna opens it following links, so a link or special file planted there
    is refused (one line); optuna's own lock beside it is stale while this process holds the folder's search lock,
    and is removed (a planted one would make optuna wait forever)."""
    store = RunStore(run_dir)
    path = store.path("search.journal")
    check_not_planted(path)
    lock = store.path("search.journal.lock")
    if lock.is_symlink() or lock.is_file():
        lock.unlink()
    elif lock.exists():
        raise refuse_planted(lock, "not a lock optuna made")
    return path


def open_study(run_dir: Path, directions: list[str], sampler):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(journal_path(run_dir))))
    study = optuna.create_study(study_name="workbench-search", storage=storage, directions=directions,
                                sampler=sampler, load_if_exists=True)
    for trial in study.trials:  # a killed search left its last candidate running: count it failed
        if trial.state == optuna.trial.TrialState.RUNNING:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    return study


def finished(study) -> list:
    import optuna
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def bisect(searcher: Searcher, target: Target, rng: Range, minimise: bool, cells: int):
    """Bisection for the smallest (largest) value meeting a target the column reaches monotonically."""
    import optuna
    study = open_study(searcher.run_dir, ["minimize"], optuna.samplers.RandomSampler(seed=0))
    while len(finished(study)) < cells:
        done = [(t.params[rng.name], t.user_attrs[target.column]) for t in finished(study)]
        value = next_probe(done, target, rng, minimise)
        if value is None:
            break
        study.enqueue_trial({rng.name: value}, skip_if_exists=False)
        trial = study.ask()
        trial.suggest_float(rng.name, rng.low, rng.high, log=rng.log)
        result = searcher.evaluate(trial.number, {rng.name: value}, [target.column])[target.column]
        trial.set_user_attr(target.column, result)
        trial.set_user_attr("feasible", target.met(result))
        searcher.log(f"candidate {trial.number}: {rng.name} = {value:.4g} -> {target.column} "
                     f"{searcher.stat} {result:.3f} ({'meets' if target.met(result) else 'misses'} {target})")
        study.tell(trial, value if minimise else -value)
    return study


def next_probe(done: list[tuple[float, float]], target: Target, rng: Range, minimise: bool) -> float | None:
    """The next value to try: the far end, then the near end, then the middle of the bracket."""
    tried = {round(v, 12) for v, _ in done}
    meets = [v for v, f in done if target.met(f)]
    misses = [v for v, f in done if not target.met(f)]
    far, near = (rng.high, rng.low) if minimise else (rng.low, rng.high)
    for end in (far, near):
        if round(end, 12) not in tried:
            return end
    if not meets:
        return None  # even the far end misses: no value in the range meets the target
    best = min(meets) if minimise else max(meets)
    beyond = [v for v in misses if (v < best if minimise else v > best)]
    if not beyond:
        return None  # the near end meets: it is the answer
    edge = max(beyond) if minimise else min(beyond)
    middle = rng.snap((best + edge) / 2)
    return None if round(middle, 12) in tried else middle


def search_with_samplers(searcher: Searcher, targets, minimize, maximize, cells: int, seed: int):
    """TPE (one objective) or NSGA-II (several); targets are constraints."""
    import optuna
    objectives = [(name, "minimize") for name in minimize] + [(name, "maximize") for name in maximize]
    if not objectives:
        raise ValueError("a search needs something to optimise: --minimize or --maximize a parameter or a column")
    constraints = (lambda trial: trial.user_attrs.get("constraints", [0.0])) if targets else None
    sampler = (optuna.samplers.TPESampler(seed=seed, constraints_func=constraints, n_startup_trials=min(5, cells))
               if len(objectives) == 1 else
               optuna.samplers.NSGAIISampler(seed=seed, constraints_func=constraints,
                                             population_size=max(4, min(10, cells // 2))))
    study = open_study(searcher.run_dir, [d for _, d in objectives], sampler)
    params = {r.name for r in searcher.ranges}
    columns = sorted({t.column for t in targets} | {n for n, _ in objectives if n not in params})
    while len(finished(study)) < cells:
        trial = study.ask()
        values = {r.name: r.suggest(trial) for r in searcher.ranges}
        results = searcher.evaluate(trial.number, values, columns)
        for column, value in results.items():
            trial.set_user_attr(column, value)
        trial.set_user_attr("constraints", [t.shortfall(results[t.column]) for t in targets] or [0.0])
        trial.set_user_attr("feasible", all(t.met(results[t.column]) for t in targets))
        scores = [values[n] if n in params else results[n] for n, _ in objectives]
        searcher.log(f"candidate {trial.number}: {described(values)} -> {described(results)}")
        if any(s is None or math.isnan(s) for s in scores):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, scores)
    return study


def search(pipe, spec, run_dir: str | Path, target=(), minimize=(), maximize=(), budget: int = 40,
           stat: str = "mean", seed: int = 0, log=print) -> SearchResult:
    """Search a spec's range axes for values meeting targets; write search.json; return what was found.

    Args:
        pipe: the loaded pipeline.
        spec: a search spec (YAML/JSON file or dict) in which some numeric axes are ranges.
        run_dir: the run folder: images, the table, `search.journal` and `search.json`.
        target: targets such as "edge_f1>=0.9" (a str or a list of them).
        minimize, maximize: parameters (ranges) or table columns to optimise.
        budget: the most images to draw; each candidate costs one image per combination of the spec's
            list axes (seeds, guidances, ...), every one counted.
        stat: how a cell's seeds are summarised: mean, median, min or max.
    """
    run_dir = Path(run_dir)
    data = read_spec_file(spec) if isinstance(spec, (str, Path)) else dict(spec)
    targets = [parse_target(t) for t in ([target] if isinstance(target, str) else target)]
    minimize, maximize = [minimize] if isinstance(minimize, str) else list(minimize), \
        [maximize] if isinstance(maximize, str) else list(maximize)
    if stat not in STATS:
        raise ValueError(f"`stat` must be one of {list(STATS)}, got {short(stat)}")
    fixed, ranges = split_ranges(data)
    if not ranges:
        raise ValueError("a search spec needs at least one range axis, e.g. conditioning_scale: {low: 0, high: 1.5}")
    base = spec_from_dict(fixed)  # checks every other key now, before anything runs
    for name in [*minimize, *maximize]:
        if (name in AXES or name in REGISTERED) and name not in {r.name for r in ranges}:
            raise ValueError(f"`{name}` is optimised but is not a range in the spec; make it one ({{low:, high:}})")
    per_candidate = count_trials(base)  # every list axis, not only the seeds
    cells = budget // per_candidate
    if cells < 2:
        raise ValueError(f"a budget of {budget} images buys {cells} candidate(s) of {per_candidate} images each (every "
                         f"combination of the spec's list axes); give at least {2 * per_candidate}")
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = take_lock(run_dir, "search", "a running search")  # before the journal or search.yaml is touched
    try:
        return run_search(pipe, data, fixed, ranges, run_dir, targets, minimize, maximize, cells, stat, seed, log,
                          {"images": budget, "images_per_candidate": per_candidate, "candidates": cells})
    finally:
        lock.close()


def run_search(pipe, data, fixed, ranges, run_dir, targets, minimize, maximize, cells, stat, seed, log, budget):
    """`search` with the folder's search lock held: write search.yaml, run the candidates, write search.json."""
    write_atomic(run_dir / "search.yaml", yaml.safe_dump(data, sort_keys=False))
    searcher = Searcher(pipe, fixed, ranges, run_dir, stat, log)
    bisection = (len(ranges) == 1 and len(targets) == 1 and not maximize and minimize == [ranges[0].name]) or \
        (len(ranges) == 1 and len(targets) == 1 and not minimize and maximize == [ranges[0].name])
    if bisection:
        study = bisect(searcher, targets[0], ranges[0], bool(minimize), cells)
    else:
        study = search_with_samplers(searcher, targets, minimize, maximize, cells, seed)
    return write_result(study, run_dir, ranges, targets, budget["images_per_candidate"], bisection, log, budget)


def described(values: dict) -> str:
    """Values for a person: 4 significant digits ("scale = 1.45", not 1.4500000000000002)."""
    return ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in values.items())


def write_result(study, run_dir: Path, ranges, targets, per_candidate: int, bisection: bool, log,
                 budget: dict | None = None):
    """Pick the best candidate, write search.json, and print the answer as the last line."""
    from ..store.results import load_results
    done = finished(study)
    trials = [{"number": t.number, "params": t.params,
               "objective": {k: v for k, v in t.user_attrs.items() if k not in ("constraints", "feasible")},
               "feasible": t.user_attrs.get("feasible", True)} for t in done]
    feasible = [t for t in done if t.user_attrs.get("feasible", True)]
    table = load_results(run_dir, lora_effect=False)
    table = table[table.get("search_trial", pd.Series(dtype=float)).notna()] if "search_trial" in table else table
    images = int(table.trial_id.nunique()) if len(table) else 0
    result = SearchResult(best={}, objective={}, images=images, trials=trials, table=table)
    if bisection:
        rng, target = ranges[0], targets[0]
        minimise = study.directions[0].name == "MINIMIZE"
        if feasible:
            best = (min if minimise else max)(feasible, key=lambda t: t.params[rng.name])
            result.best, result.objective = {rng.name: best.params[rng.name]}, {target.column: best.user_attrs[target.column]}
            misses = [t.params[rng.name] for t in done if not t.user_attrs.get("feasible")]
            beyond = [v for v in misses if (v < result.best[rng.name] if minimise else v > result.best[rng.name])]
            if beyond:
                result.resolution = abs(result.best[rng.name] - (max(beyond) if minimise else min(beyond)))
                result.grid_images = (math.floor((rng.high - rng.low) / result.resolution) + 1) * per_candidate
    elif feasible:
        front = study.best_trials
        best = front[0]
        result.best = dict(best.params)
        result.objective = {k: v for k, v in best.user_attrs.items() if k not in ("constraints", "feasible")}
        if len(study.directions) > 1:
            result.notes.append(f"{len(front)} candidates on the Pareto front; search.json lists them")
    summary = {"best": result.best, "objective": result.objective, "images": images, "trials": trials,
               "targets": [str(t) for t in targets], "grid_images": result.grid_images,
               "resolution": result.resolution, "pareto_front": [t.number for t in study.best_trials]
               if len(study.directions) > 1 else None, "budget": budget}
    write_atomic(run_dir / "search.json", json.dumps(summary, indent=2))
    if result.best and len(study.directions) > 1:  # no single best: the Pareto front, one candidate a line
        front = [t for t in study.best_trials if t.user_attrs.get("feasible", True)]
        for t in front:
            log(f"  candidate {t.number}: {described(t.params)} -> "
                f"{described({k: v for k, v in t.user_attrs.items() if k not in ('constraints', 'feasible')})}")
        line = f"Pareto front: {len(front)} candidates (above; search.json lists them); {images} images"
    elif result.best:
        line = f"best {described(result.best)} ({described(result.objective)}); {images} images"
        if result.grid_images:
            line += (f", where a grid at the same resolution ({result.resolution:.3g}) would take "
                     f"{result.grid_images} images")
    else:
        line = f"no candidate met {', '.join(map(str, targets)) or 'the objective'} in {images} images"
    log(line)
    return result

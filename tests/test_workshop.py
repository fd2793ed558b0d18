"""docs/workshop.md: the plans add up, and every notebook has its slot."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "workshop.md").read_text()


def plan(title: str) -> list[tuple[int, int, str]]:
    """The (start, end, row) of each slot of the plan under `title`."""
    section = GUIDE.split(title, 1)[1].split("\n\n**", 1)[0].split("\n## ", 1)[0]
    return [(int(a), int(b), row) for a, b, row in re.findall(r"^\| (\d+)-(\d+) \|(.*)$", section, re.M)]


def test_each_plan_runs_without_gaps_to_its_length():
    for title, length in (("**90 minutes**", 90), ("**3 hours**", 180)):
        slots = plan(title)
        assert slots[0][0] == 0 and slots[-1][1] == length, title
        assert all(end == start for (_, end, _), (start, _, _) in zip(slots, slots[1:])), f"{title}: a gap or overlap"


def test_every_notebook_has_a_slot_in_the_long_plan_and_a_measured_time():
    rows = " ".join(row for _, _, row in plan("**3 hours**"))
    timings = GUIDE.split("## How long each notebook takes", 1)[1].split("\n## ", 1)[0]
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        number = path.stem.split("_")[0]
        assert f" {number} " in rows, f"{path.name} has no slot in the 3-hour plan"
        assert f"| {number} " in timings, f"{path.name} has no measured time"


def seconds(text: str) -> float:
    """The first duration in `text` ("10 s", "2 min", "about 20 minutes"), in seconds."""
    number, unit = re.search(r"(\d+(?:\.\d+)?)\s*(s|seconds?|min|minutes?)\b", text).groups()
    return float(number) * (1 if unit.startswith("s") else 60)


def notebook_run_times() -> dict[str, float]:
    """Each notebook's measured run time on the toy model (the first table row that names it)."""
    timings = GUIDE.split("## How long each notebook takes", 1)[1].split("\n## ", 1)[0]
    found = {}
    for number, toy in re.findall(r"^\| (\d+[a-z]?) [^|]*\| ([^|]*)\|", timings, re.M):
        found.setdefault(number, seconds(toy))
    return found


def exercise_run_times() -> dict[tuple[str, int], float]:
    """Each exercise's measured run time ("-": reading only, 0 s)."""
    table = GUIDE.split("## How long each exercise takes", 1)[1].split("\n## ", 1)[0]
    return {(number, int(exercise)): 0.0 if shown.strip() == "-" else seconds(shown)
            for number, exercise, shown in re.findall(r"^\| (\d+[a-z]?) \| (\d+) \| ([^|]*)\|", table, re.M)}


def notebooks():
    import nbformat
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        yield path.stem.split("_")[0], nbformat.read(path, as_version=4)


def test_every_exercise_has_a_measured_run_time():
    from workbench.student import exercises
    measured = exercise_run_times()
    for number, notebook in notebooks():
        for exercise in exercises(notebook):
            assert (number, exercise) in measured, f"notebook {number}, exercise {exercise}: no measured run time"


def test_every_slot_holds_its_notebook_and_exercises_run_times():
    """A slot is longer than the measured run time of its notebook and the exercises it names."""
    notebook_times, exercise_times = notebook_run_times(), exercise_run_times()
    for title in ("**90 minutes**", "**3 hours**"):
        for start, end, row in plan(title):
            cells = [c.strip() for c in row.split("|")]  # notebook, what, exercises
            if not cells[0]:
                continue  # a recap or a break
            number = cells[0].split()[0]
            named = [int(n) for n in re.findall(r"\d+", cells[2])]
            needed = notebook_times[number] + sum(exercise_times[(number, n)] for n in named)
            assert needed <= (end - start) * 60, f"{title} {start}-{end}: {needed:.0f} s of running alone"


def test_each_stated_time_is_the_measured_one():
    """The run times a notebook states (its opening cell, an exercise's "about N minutes") match the guide's."""
    from workbench.student import exercises
    notebook_times, exercise_times = notebook_run_times(), exercise_run_times()
    for number, notebook in notebooks():
        stated = seconds(notebook.cells[0].source.split("**Time", 1)[1])
        assert 0.7 <= stated / notebook_times[number] <= 1.4, f"notebook {number} states {stated:.0f} s"
        for exercise, question in exercises(notebook).items():
            if re.search(r"\d+\s*(seconds?|minutes?)\b", question):
                stated, measured = seconds(question), exercise_times[(number, exercise)]
                assert 0.75 <= stated / measured <= 1.33, f"{number} exercise {exercise} states {stated:.0f} s"

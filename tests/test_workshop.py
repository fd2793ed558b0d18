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

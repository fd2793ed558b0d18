"""How long each notebook and each of its exercises takes to run, as a student meets them.

Each notebook runs top to bottom on the toy model in a fresh folder (nothing cached but what the package
ships), then each exercise's work runs in the same kernel and is timed:

- an exercise with solution code (solution cells tagged `solution`, or a fenced Python block in the
  solution's text) runs that code;
- an exercise that asks to change a parameter and run again re-runs the lesson's cells with it changed
  (`RERUN` below); the lesson is then restored, untimed, for the next exercise;
- 03's panel exercise presses the panel's Run in Search mode, as the question says;
- an exercise that only reads a figure has no run time.

    python benchmarks/exercise_times.py              # all notebooks, about 22 min on a 2-core CPU
    python benchmarks/exercise_times.py 00 00b 04    # some of them
    python benchmarks/exercise_times.py 02 --skip 02:1   # without 02's 16-minute homework

Prints a markdown table for docs/workshop.md ("How long each exercise takes").
"""

import argparse
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from workbench.student import exercises, solution_code

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

# Exercises that ask the student to change a value and run the lesson again: the values to set.
RERUN = {("00", 1): {"CAPTION": "a red circle on a green background"},
         ("00b", 1): {"GUIDANCE": 1},
         ("00b", 2): {},  # the edited loop does the same work as the loop
         ("00b", 3): {"STEPS": 5}}

# 03's exercise 1, done in the panel as its question says: the search's prompt, range and seeds, LoRA weight 0,
# target 0.8, budget 16.
PANEL_SEARCH = """
panel.prompt.value = star
panel.scale_start.value, panel.scale_stop.value = 0.0, 1.5
panel.seeds.value = ",".join(str(s) for s in SEEDS)
panel.lora_weights.value = "0"
panel.mode.value, panel.target.value, panel.budget.value = "Search", "edge_f1>=0.8", 16
panel.run_button.click()
panel.wait()
print("found:", panel.search_result.best, "in", panel.search_result.images, "images")
"""
CODE = {("03", 1): PANEL_SEARCH}


class Kernel:
    """A notebook's kernel: run its cells, or new code, and time them."""

    def __init__(self, notebook, folder: Path):
        self.notebook = notebook
        self.client = NotebookClient(notebook, timeout=3600, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})

    def run(self, source: str) -> float:
        cell = nbformat.v4.new_code_cell(source)
        started = time.perf_counter()
        self.client.execute_cell(cell, 0)
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if errors:
            raise RuntimeError(f"{source[:60]!r} failed: {errors[0].ename}: {errors[0].evalue[:200]}")
        for output in cell.outputs:
            if output.output_type == "stream":
                print("   ", output.text.strip()[-300:])
        return time.perf_counter() - started

    def run_cells(self, start: int, stop: int | None = None) -> float:
        """Run the notebook's code cells from `start` to `stop`, leaving out the solutions."""
        return sum(self.run(c.source) for c in self.notebook.cells[start:stop] if c.cell_type == "code"
                   and "solution" not in c.metadata.get("tags", []))

    def lesson(self, values: dict | None = None) -> float:
        """Run the parameters cell, then `values`, then every lesson cell up to the exercises."""
        cells = self.notebook.cells
        first = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
        seconds = self.run(cells[first].source)
        if values:
            seconds += self.run("\n".join(f"{name} = {value!r}" for name, value in values.items()))
        return seconds + self.run_cells(first + 1, self.exercises_start())

    def rest(self) -> float:
        """The cells after the exercises that are not solutions (under the hood, the panel)."""
        return self.run_cells(self.exercises_start())

    def exercises_start(self) -> int:
        return next(i for i, c in enumerate(self.notebook.cells) if c.source.startswith("## Exercises"))


def measure(path: Path, skip: set[str] = frozenset()) -> list[tuple[str, str, float | None, str]]:
    """(notebook, exercise, seconds, how) for the notebook itself and each of its exercises."""
    number = path.stem.split("_")[0]
    notebook = nbformat.read(path, as_version=4)
    questions, solutions = exercises(notebook), solution_code(notebook)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        kernel = Kernel(notebook, Path(folder))
        with kernel.client.setup_kernel():
            seconds = kernel.lesson() + kernel.rest()
            rows.append((number, "notebook", seconds, "top to bottom, in a fresh folder"))
            print(f"{path.name}: {seconds:.0f} s", flush=True)
            for exercise in questions:
                key = (number, exercise)
                if f"{number}:{exercise}" in skip:
                    continue
                if key in RERUN:
                    seconds, how = kernel.lesson(RERUN[key]), "the lesson again, " + (
                        ", ".join(f"{k} = {v!r}" for k, v in RERUN[key].items()) or "the loop edited")
                    kernel.lesson()  # back to the lesson's values, untimed
                elif key in CODE:
                    seconds, how = kernel.run(CODE[key]), "in the panel, as asked"
                elif solutions.get(exercise):
                    seconds, how = sum(kernel.run(code) for code in solutions[exercise]), "its solution code"
                else:
                    seconds, how = None, "reading only: no code to run"
                rows.append((number, str(exercise), seconds, how))
                print(f"  exercise {exercise}: " + (f"{seconds:.0f} s" if seconds is not None else how), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebook numbers (00, 00b, ...); all when none")
    parser.add_argument("--skip", nargs="*", default=[], help="exercises not to run, as notebook:number (02:1)")
    args = parser.parse_args()
    paths = [p for p in sorted(NOTEBOOKS.glob("*.ipynb")) if not args.notebooks or p.stem.split("_")[0] in args.notebooks]
    rows = [row for path in paths for row in measure(path, set(args.skip))]
    print("\n| notebook | exercise | run time | what runs |\n|---|---|---|---|")
    for number, exercise, seconds, how in rows:
        shown = "-" if seconds is None else f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"
        print(f"| {number} | {exercise} | {shown} | {how} |")


if __name__ == "__main__":
    main()

"""Student copies of the notebooks: every cell but the solutions (`make student`).

Each exercise's question is a cell of its own; its solution is a separate cell tagged
`solution` (markdown and code alike). A student copy keeps every other cell, outputs
stripped, so students work the exercises before they see the answers:

    python -m workbench.student [notebooks] [outputs/student]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SOLUTION_TAG = "solution"


def exercises(notebook) -> dict[int, str]:
    """Each exercise's number and its question's first line: the cells under "## Exercises" that start "**N.**"."""
    found, inside = {}, False
    for cell in notebook.cells:
        if cell.source.startswith("## "):
            inside = cell.source.startswith("## Exercises")
        elif inside and (match := re.match(r"\*\*(\d+)\.", cell.source)):
            found[int(match.group(1))] = cell.source.splitlines()[0]
    return found


def solution_code(notebook) -> dict[int, list[str]]:
    """Each exercise's solution code: the solution code cells after its "**N.**" answer, and any fenced Python in it."""
    code, number = {}, None
    for cell in notebook.cells:
        if SOLUTION_TAG not in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "markdown" and (match := re.match(r"\*\*(\d+)\.", cell.source)):
            number = int(match.group(1))
            code[number] = re.findall(r"```python\n(.*?)```", cell.source, re.S)
        elif cell.cell_type == "code" and number is not None:
            code[number].append(cell.source)
    return code


def without_solutions(notebook):
    """The notebook with its solution cells removed (a new object; `notebook` is unchanged)."""
    import copy
    copied = copy.deepcopy(notebook)
    copied.cells = [cell for cell in copied.cells if SOLUTION_TAG not in cell.get("metadata", {}).get("tags", [])]
    return copied


def write_student_copies(source: str | Path = "notebooks", out: str | Path = "outputs/student") -> list[Path]:
    """Write a copy of every notebook in `source` without its solution cells into `out`; return the files."""
    import nbformat
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(Path(source).glob("*.ipynb")):
        target = out / path.name
        nbformat.write(without_solutions(nbformat.read(path, as_version=4)), target)
        written.append(target)
    return written


if __name__ == "__main__":
    files = write_student_copies(*sys.argv[1:3])
    print(f"{len(files)} student copies in {files[0].parent if files else sys.argv[2:3]}")

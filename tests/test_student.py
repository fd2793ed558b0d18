"""`make student`: copies of the notebooks with every exercise question and no answer."""

import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def tags(cell) -> list:
    return cell.get("metadata", {}).get("tags", [])


def questions(notebook) -> list[str]:
    """The exercise cells: after the "## Exercises" heading, each a cell of its own that starts "**N.**"."""
    start = next(i for i, c in enumerate(notebook.cells) if c.source.startswith("## Exercises"))
    return [c.source for c in notebook.cells[start:] if c.source.startswith("**") and "solution" not in tags(c)]


def test_every_notebook_has_exercises_each_in_its_own_cell_and_tagged_solutions():
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        assert len(questions(notebook)) >= 2, f"{path.name}: exercise questions, one cell each"
        solutions = [c for c in notebook.cells if "solution" in tags(c)]
        assert len(solutions) >= len(questions(notebook)), f"{path.name}: an answer for every question"
        assert not any("## Solutions" in c.source and "solution" not in tags(c) for c in notebook.cells), path.name


def test_make_student_keeps_every_question_and_no_answer(tmp_path):
    assert "workbench.teaching.student notebooks outputs/student" in (ROOT / "Makefile").read_text()
    done = subprocess.run([sys.executable, "-m", "workbench.teaching.student", str(ROOT / "notebooks"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    for path in NOTEBOOKS:
        teacher, student = (nbformat.read(p, as_version=4) for p in (path, tmp_path / path.name))
        assert questions(student) == questions(teacher)
        answers = [c.source for c in teacher.cells if "solution" in tags(c)]
        kept = [c.source for c in student.cells]
        assert not any(answer in kept for answer in answers), f"{path.name} still holds an answer"
        assert len(student.cells) == len(teacher.cells) - len(answers)  # every other cell kept
        assert "parameters" in tags(next(c for c in student.cells if c.cell_type == "code"))


def test_exercises_and_their_solution_code_are_found():
    from workbench.student import exercises, solution_code
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        found = exercises(notebook)
        assert len(found) >= 2 and list(found) == list(range(1, len(found) + 1)), path.name  # numbered 1, 2, ...
        assert all(line in "".join(questions(notebook)) for line in found.values()), path.name
        assert set(solution_code(notebook)) <= set(found), f"{path.name}: a solution without its exercise"
    lora = nbformat.read(ROOT / "notebooks" / "02_lora.ipynb", as_version=4)
    assert "wb.rank_study(" in solution_code(lora)[1][0]  # the fenced code inside exercise 1's answer

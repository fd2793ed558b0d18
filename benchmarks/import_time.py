"""Start-up cost: `import workbench` and `python -m workbench --help`, lazy against eager, side by side.

"Eager" imports every module the package's `__init__` imported before it became lazy
(control, lora, pipeline, plots, sweep, widgets, ...), which is what each command paid then.
Each command runs in a fresh interpreter, `--repeats` times; the table gives the median
wall time and the peak memory (RSS) of the child process.

    python benchmarks/import_time.py [--repeats 5] [--append-results]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


EAGER = ("import workbench.control, workbench.devices, workbench.errors, workbench.generation, workbench.lora, "
         "workbench.pipeline, workbench.explain, workbench.plots, workbench.results, workbench.spec, "
         "workbench.sweep, workbench.widgets")
COMMANDS = {
    "import workbench (lazy, now)": [sys.executable, "-c", "import workbench"],
    "import workbench (eager, before)": [sys.executable, "-c", EAGER],
    "python -m workbench --help (now)": [sys.executable, "-m", "workbench", "--help"],
    "python -m workbench --help (eager, before)": [sys.executable, "-c",
                                                   EAGER + "; import sys, runpy; sys.argv = ['workbench', '--help'];"
                                                   " runpy.run_module('workbench', run_name='__main__')"],
}


def run_once(command: list[str]) -> tuple[float, float]:
    """Wall seconds and the child's peak RSS in MB for one fresh interpreter.

    A forked child starts with its parent's peak RSS, so this process must stay small
    (no torch) until every child has run.
    """
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{command} failed with status {status}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()
    subprocess.run(COMMANDS["import workbench (eager, before)"], check=True)  # warm the file cache once
    measured = {}
    for _ in range(args.repeats):  # interleaved, so a busy moment hits every command alike
        for name, command in COMMANDS.items():
            measured.setdefault(name, []).append(run_once(command))
    from report import machine, publish  # imports torch: only after the children ran, so none inherits its memory
    lines = [f"### import_time: start-up cost, median of {args.repeats} fresh interpreters", "",
             f"Machine: {machine()}.", "", "| command | seconds | peak RSS (MB) |", "|---|---|---|"]
    medians = {}
    for name, runs in measured.items():
        medians[name] = statistics.median(s for s, _ in runs)
        lines.append(f"| {name} | {medians[name]:.2f} | {statistics.median(m for _, m in runs):.0f} |")
    ratio_import = medians["import workbench (eager, before)"] / medians["import workbench (lazy, now)"]
    ratio_help = medians["python -m workbench --help (eager, before)"] / medians["python -m workbench --help (now)"]
    lines += ["", f"Eager / lazy: import **{ratio_import:.0f}x**, --help **{ratio_help:.0f}x** (goal: --help under 1 s)."]
    publish(lines, args.append_results)


if __name__ == "__main__":
    main()

"""Controllability per condition: each condition's metric without control (scale 0) and at scale 1, side by side.

    python benchmarks/condition_metrics.py            # the toy (canny, mask) and tiny, tiny-sdxl (every condition)

On the toy, its two ControlNets are trained: canny and its mask. The tiny models and their condition networks have
random weights ("tiny"), so their numbers are noise; the table shows every condition's path runs on both families
and what each metric reads without control. Images: `sample:astronaut`, 2 seeds, 20 steps (the profiles' own).
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import workbench as wb  # noqa: E402
from workbench.spec.conditions import CONDITIONS, TINY_WEIGHTS  # noqa: E402
from workbench.spec.metric_registry import condition_column  # noqa: E402

TOY_CAPTION = "a yellow star on a blue background"


def measure(pipe, model: str, name: str, image: str, controlnet: str, seeds: list, steps: int, folder: str) -> tuple:
    """(mean metric at scale 0, at scale 1) of one unit drawing condition `name`."""
    record = CONDITIONS[name]
    spec = wb.SweepSpec(model=model, prompt=[TOY_CAPTION], seed=seeds, steps=[steps],
                        controls={name: {"controlnet": controlnet, "image": image, "preprocess": name}},
                        unit_axes={f"{name}.scale": [0.0, 1.0]}, metrics=[record.metric],
                        metric_models={name: TINY_WEIGHTS} if record.weights else {})
    table = wb.run_sweep(pipe, spec, os.path.join(folder, f"{model}-{name}"))
    column = f"{name}.{condition_column(name)}"
    means = table.groupby(f"{name}.scale")[column].mean()
    return column.split(".", 1)[1], means.get(0.0), means.get(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["toy", "tiny", "tiny-sdxl"])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models:
            if model == "toy":
                pipe = wb.load_pipeline("toy", controlnet=["toy"])
                rows.append((model, "canny", *measure(pipe, model, "canny", f"toy:{TOY_CAPTION}", "toy", [0, 1],
                                                      args.steps, folder)))
                pipe = wb.load_pipeline("toy", controlnet=["toy-mask"])
                rows.append((model, "none", *measure(pipe, model, "none", f"toy-mask:{TOY_CAPTION}", "toy-mask",
                                                     [0, 1], args.steps, folder)))
                continue
            pipe = wb.load_pipeline(model)
            for name in CONDITIONS:
                if name != "none":
                    rows.append((model, name, *measure(pipe, model, name, "sample:astronaut", model, [0, 1],
                                                       args.steps, folder)))
    print("| model | condition | metric | scale 0 | scale 1 |\n|---|---|---|---|---|")
    for model, name, column, off, on in rows:
        print(f"| {model} | {name} | {column} | {off:.3f} | {on:.3f} |")


if __name__ == "__main__":
    main()

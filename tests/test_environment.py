"""environment.yml describes the same environment as pyproject.toml."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def normalise(requirement: str) -> str:
    return requirement.replace(" ", "").lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {normalise(r) for r in project["dependencies"] + extras["dev"] + extras["mlflow"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip_section[0] == "-c constraints.txt"  # pinned as `make` installs it
    assert {normalise(r) for r in pip_section[1:]} == wanted


def test_environment_python_satisfies_requires_python():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python>="))
    minimum = project["requires-python"].removeprefix(">=")
    lowest = python.removeprefix("python>=").split(",")[0]
    assert tuple(map(int, lowest.split("."))) >= tuple(map(int, minimum.split(".")))


def test_constraints_do_not_pin_torch():
    """torch is installed on its own (CPU wheel here, CUDA on GPUs); a pin would fight that."""
    lines = (ROOT / "constraints.txt").read_text().lower().splitlines()
    assert not any(line.startswith(("torch==", "nvidia-", "triton")) for line in lines)

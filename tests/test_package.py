"""The package itself: its own name on the index, a fast import, every public name, the wheel."""

import os
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "diffusers", "peft", "transformers", "matplotlib", "ipywidgets", "pandas")


def run_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300, **kwargs)


def test_distribution_has_its_own_name():
    """`workbench` on the index is an unrelated AWS project; the import name stays `workbench`."""
    import workbench
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == workbench.DISTRIBUTION == "controlnet-lora-workbench"
    readme = (ROOT / "README.md").read_text()
    assert "pip install 'workbench" not in readme and "pip install workbench" not in readme


def test_import_loads_no_heavy_library():
    done = run_python(f"import sys, workbench; print([m for m in {HEAVY!r} if m in sys.modules])")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_cli_help_loads_no_heavy_library():
    code = ("import sys, runpy; sys.argv = ['workbench', '--help']\n"
            "try:\n    runpy.run_module('workbench', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)")
    done = run_python(code)
    assert "sweep" in done.stdout and done.stderr.strip().endswith("[]"), done.stderr


def test_every_public_name_resolves_to_what_it_names():
    """Each name in __all__ imports on first use, and a submodule of the same name never hides it."""
    done = run_python("import workbench as wb, workbench.generation, workbench.sweep\n"
                      "import types\n"
                      "bad = [n for n in wb.__all__ if isinstance(getattr(wb, n), types.ModuleType)]\n"
                      "assert not bad, bad\n"
                      "assert callable(wb.generate) and wb.pipeline.trained_size and wb.__version__\n"
                      "try:\n    wb.no_such_name\nexcept AttributeError as err:\n    print(err)")
    assert done.returncode == 0, done.stderr
    assert "has no attribute 'no_such_name'" in done.stdout


@pytest.mark.slow
def test_wheel_installs_and_runs_the_demo_without_make(tmp_path):
    """The plain-pip route of the README: build a wheel, install it in a fresh venv, run the demo."""
    # Built from a copy of the tracked files, so no build/ folder is left in (or read from) the checkout.
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    source = tmp_path / "source"
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=600)
    [wheel] = (tmp_path / "dist").glob("controlnet_lora_workbench-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + ["torch==2.13.0"], check=True, timeout=900)
    subprocess.run(pip + ["-c", str(ROOT / "constraints.txt"), str(wheel)], check=True, timeout=900)
    subprocess.run(pip + ["--no-deps", "controlnet_aux==0.0.10"], check=True, timeout=600)
    demo = subprocess.run([str(python), "-m", "workbench", "demo", "--out", str(tmp_path / "demo")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert (tmp_path / "demo" / "grid.png").stat().st_size > 10_000
    assert (tmp_path / "demo" / "results.parquet").exists()
    where = subprocess.run([str(python), "-c", "import workbench; print(workbench.__file__)"], capture_output=True,
                           text=True, cwd=tmp_path)
    assert str(env_dir) in where.stdout  # the wheel's copy, toy weights inside it, not this checkout

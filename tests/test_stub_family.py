"""Adding a model family is one module and one line (issue #37): a stub family, end to end, in a copy of the package.

The copy gets `families/stub.py` (a family whose facts are its own: name, presets, sizes, profiles, and which
pipelines it owns; its code borrowed from SD1.5's, since the stub's test model is SD1.5-shaped) and one changed line,
`FAMILY_MODULES`, the family modules' names. A fresh interpreter then loads the stub's test model by its preset, reads its profile, checks a
spec against its sizes and runs a sweep on it. The test lists the files that differ from the package: exactly two.
"""

import difflib
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]

STUB_FAMILY = '''"""A stub family for tests: SD1.5's code under its own facts (name, presets, sizes, profiles, ownership)."""

from .sd15 import *  # noqa: F401,F403 (the code, and facts the stub shares)
from . import sd15

NAME = "stub"
PRESETS = {"stub-tiny": ("stub-tiny", "stub-tiny")}
TINY_PRESET = "stub-tiny"
EMBEDDED: dict = {}
CONTROLNET_PRESETS: dict = {}
RENAMED_IDS: dict = {}
TRAINED_SIZES = {"stub-tiny": 32}
PROFILES = {"stub-tiny": {**sd15.PROFILES["tiny"], "steps": 3, "controlnets": ["stub-tiny", "stub-tiny"]},
            "stub": sd15.PROFILES[sd15.DEFAULT_PROFILE]}  # a real model of the family: any other hub id or folder
DEFAULT_PROFILE = "stub"
CONDITION_CONTROLNETS: dict = {}


def owns_index(model_index: dict) -> bool:
    return model_index.get("_stub_family") is True


def owns(pipe) -> bool:
    return getattr(pipe, "stub_family", False)


def build_tiny(seed: int = 0):
    pipe = sd15.build_tiny(seed)
    pipe.stub_family = True
    return pipe
'''

SCRIPT = '''
import json, sys, tempfile
import workbench as wb
from workbench.families import family_of, denoiser
from workbench.spec import spec_from_dict

pipe = wb.load_pipeline("stub-tiny")
profile = wb.profile("stub-tiny")
try:
    spec_from_dict({"model": "stub-tiny", "resolution": 4096})
    refused = ""
except ValueError as err:
    refused = str(err)
with tempfile.TemporaryDirectory() as folder:
    table = wb.run_sweep(pipe, {"model": "stub-tiny", "prompt": ["a red circle"], "seed": [0, 1],
                               "control_image": "toy:a red circle on a blue background"}, folder, log=lambda *_: None)
    images = [wb.load_image(path).size for path in table.image_path]
print(json.dumps({"family": family_of(pipe).NAME, "denoiser": type(denoiser(pipe)).__name__,
                  "profile": [profile.family, profile.steps, profile.resolution], "refused": refused,
                  "rows": len(table), "steps": sorted(set(table.steps)), "images": images}))
'''


def package_copy(target: Path) -> Path:
    """The package's code and configs copied to `target` (its assets linked, not copied)."""
    shutil.copytree(ROOT / "workbench", target / "workbench",
                    ignore=shutil.ignore_patterns("assets", "__pycache__"))
    (target / "workbench" / "assets").symlink_to(ROOT / "workbench" / "assets")
    return target / "workbench"


def changed_files(original: Path, copy: Path) -> dict[str, list[str]]:
    """{file: its changed lines (+/-)} for every .py file that differs between the two package trees."""
    changes = {}
    for path in sorted(copy.rglob("*.py")):
        relative = path.relative_to(copy)
        before = (original / relative).read_text().splitlines() if (original / relative).exists() else []
        after = path.read_text().splitlines()
        if before != after:
            changes[str(relative)] = [line for line in difflib.unified_diff(before, after, lineterm="", n=0)
                                      if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    return changes


def test_a_stub_family_is_one_module_and_one_line(tmp_path):
    package = package_copy(tmp_path)
    (package / "families" / "stub.py").write_text(STUB_FAMILY)
    init = package / "families" / "__init__.py"
    text = init.read_text()
    assert text.count('FAMILY_MODULES = ("sdxl", "sd15")\n') == 1
    init.write_text(text.replace('FAMILY_MODULES = ("sdxl", "sd15")\n', 'FAMILY_MODULES = ("stub", "sdxl", "sd15")\n'))

    changes = changed_files(ROOT / "workbench", package)
    assert sorted(changes) == ["families/__init__.py", "families/stub.py"]
    assert [line[:1] for line in changes["families/__init__.py"]] == ["-", "+"]  # one line changed: its name added

    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={"PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin",
                                 "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["family"] == "stub" and facts["denoiser"] == "UNet2DConditionModel"
    assert facts["profile"] == ["stub", 3, 32]  # its own profile, read by name
    assert "4096" in facts["refused"] and "stub-tiny" in facts["refused"]  # its own trained size bounds a spec
    assert facts["rows"] == 2 and facts["steps"] == [3]  # a sweep's defaults come from the stub's profile
    assert facts["images"] == [[32, 32], [32, 32]]

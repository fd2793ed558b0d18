"""workbench: ControlNet and LoRA experiments on Stable Diffusion, from Jupyter.

    import workbench as wb
    pipe = wb.load_pipeline()                      # the embedded toy model, offline
    control = wb.make_canny("photo.png", resolution=64)
    images = wb.generate(pipe, "a red circle on a blue background", control, seeds=[0, 1])

The public names below are imported when first used (PEP 562), not at `import workbench`:
torch, diffusers, peft, matplotlib and ipywidgets take seconds to import, and the command
line's `--help`, every accelerate worker and every test subprocess would pay for all of them.
"""

import importlib
import importlib.util
import logging
import sys
from pathlib import Path

# transformers announces at import that torchvision is missing and that it falls back to its PIL
# image processors. workbench never uses those processors (there is no safety checker), so the
# notice is noise; only that module's messages below ERROR are hidden.
logging.getLogger("transformers.utils.import_utils").setLevel(logging.ERROR)

# The import name is `workbench`; the distribution on the package index has a name of its own,
# because `workbench` there is an unrelated project (pip install controlnet-lora-workbench).
DISTRIBUTION = "controlnet-lora-workbench"

# public name -> the module that defines it
_EXPORTS = {
    "load_image": "models.control", "make_canny": "models.control", "make_control": "models.control",
    "conditions": "spec.conditions",
    "pick_device": "models.devices", "pick_dtype": "models.devices",
    "ModelNotAvailableError": "errors",
    "generate": "engine.generation",
    "load_lora": "lora", "lora_delta_spectrum": "lora", "lora_summary": "lora", "train_lora": "lora",
    "train_lora_ranks": "lora", "blend_adapters": "lora", "fused_lora": "lora", "time_fusing": "studies.blend",
    "lora_rank_ladder": "lora", "norm_kept_table": "lora", "convert_lora": "lora", "rank_study": "studies.ranks",
    "DEFAULT_MODEL": "models.pipeline", "load_pipeline": "models.pipeline",
    "controlnet_residuals": "teaching.explain", "inspect_file": "models.inspect",
    "plot_grid": "analysis.plots", "plot_images": "analysis.plots", "plot_metric": "analysis.curves",
    "plot_spectra": "analysis.curves", "plot_norm_kept": "analysis.curves", "plot_rank_study": "analysis.curves",
    "plot_search": "analysis.curves", "plot_losses": "analysis.curves",
    "export_results": "store.results", "load_results": "store.growth", "spec_from_png": "store.png_spec",
    "SweepSpec": "spec", "expand": "spec", "load_spec": "spec", "resolve_spec": "spec",
    "run_sweep": "engine.sweep", "search": "studies.search", "write_report": "analysis.report",
    "export_mlflow": "analysis.export", "SweepPanel": "teaching.panel", "compare": "teaching.panel",
    "cell_stats": "analysis.statistics", "compare_cells": "analysis.statistics", "seeds_needed": "analysis.statistics",
    "plot_diff": "analysis.plots", "profile": "models.profiles", "Profile": "models.profiles", "image_folder": "lora",
    "lesson_data": "teaching.lessons", "blend_table": "studies.blend",
}
# Modules that moved into the layer packages, under their old names (`workbench.sweep`, `workbench.ladder`, ...):
# old code, notebooks and the README's examples import them as before, and get the same module object.
MOVED = {
    "units": "spec.units", "schedules": "spec.control_schedules", "schedulers": "spec.samplers",
    "blocks": "spec.lora_blocks", "sizes": "spec.sizes", "metric_registry": "spec.metric_registry",
    "shorten": "spec.shorten", "results": "store.results", "run_folder": "store.run_folder",
    "growth": "store.growth", "columns": "store.columns", "infotext": "store.infotext", "shipped": "store.shipped",
    "pipeline": "models.pipeline", "profiles": "models.profiles", "devices": "models.devices",
    "memory": "models.memory", "speed": "models.speed", "fingerprint": "models.fingerprint",
    "checkpoints": "models.checkpoints", "control": "models.control", "hubcache": "families.hubcache",
    "model_metrics": "metrics.model_scorers", "sweep": "engine.sweep", "generation": "engine.generation",
    "denoise": "engine.denoise", "scoring": "engine.scoring", "plots": "analysis.plots", "curves": "analysis.curves",
    "statistics": "analysis.statistics", "report": "analysis.report", "export": "analysis.export",
    "adaptive": "studies.search", "ranks": "studies.ranks", "blend": "studies.blend", "demo": "teaching.demo",
    "lessons": "teaching.lessons", "student": "teaching.student", "explain": "teaching.explain",
    "widgets": "teaching.panel", "ladder": "lora.analysis",
}


class _OldModuleNames:
    """`import workbench.sweep` gives `workbench.engine.sweep` itself (not a copy), imported only when asked for.

    A finder and loader for the import system (sys.meta_path); importlib.abc's base classes would cost
    `import workbench` 10 ms, so it only has their three methods.
    """

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.partition(".")
        if package == __name__ and name in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        module = importlib.import_module(f"{__name__}.{MOVED[spec.name.partition('.')[2]]}")
        self._own_spec = module.__spec__  # the import system sets __spec__ on what we return: restore it below
        return module

    def exec_module(self, module):
        module.__spec__ = self._own_spec


sys.meta_path.append(_OldModuleNames())
__all__ = sorted(_EXPORTS)
_PACKAGE_DIR = Path(__file__).parent


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree that was never pip-installed
        return "0+unknown"


def __getattr__(name: str):
    """Import a public name's module on first use (`wb.load_pipeline`, `from workbench import plot_grid`)."""
    if name == "__version__":
        return _installed_version()
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if (_PACKAGE_DIR / f"{name}.py").is_file() or (_PACKAGE_DIR / name / "__init__.py").is_file() or name in MOVED:
        return importlib.import_module(f".{name}", __name__)  # a submodule: wb.pipeline, wb.toy, wb.engine, ...
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | {"__version__"})

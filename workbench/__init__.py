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
import logging
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
    "load_image": "control", "make_canny": "control",
    "pick_device": "devices", "pick_dtype": "devices",
    "ModelNotAvailableError": "errors",
    "generate": "generation",
    "load_lora": "lora", "lora_delta_spectrum": "lora", "lora_summary": "lora", "train_lora": "lora",
    "train_lora_ranks": "lora", "blend_adapters": "lora", "fused_lora": "lora", "time_fusing": "blend",
    "lora_rank_ladder": "lora", "norm_kept_table": "lora", "rank_study": "ranks",
    "DEFAULT_MODEL": "pipeline", "load_pipeline": "pipeline",
    "controlnet_residuals": "explain",
    "plot_grid": "plots", "plot_images": "plots", "plot_metric": "curves", "plot_spectra": "curves",
    "plot_norm_kept": "curves", "plot_rank_study": "curves", "plot_search": "curves", "plot_losses": "curves",
    "export_results": "results", "load_results": "results",
    "SweepSpec": "spec", "expand": "spec", "load_spec": "spec",
    "run_sweep": "sweep", "search": "adaptive", "write_report": "report", "export_mlflow": "export",
    "SweepPanel": "widgets", "compare": "widgets",
    "cell_stats": "statistics", "compare_cells": "statistics", "seeds_needed": "statistics", "plot_diff": "plots",
    "profile": "profiles", "Profile": "profiles", "image_folder": "lora", "lesson_data": "lessons",
    "blend_table": "blend",
}
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
    if (_PACKAGE_DIR / f"{name}.py").is_file() or (_PACKAGE_DIR / name / "__init__.py").is_file():
        return importlib.import_module(f".{name}", __name__)  # a submodule: wb.pipeline, wb.toy, ...
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | {"__version__"})

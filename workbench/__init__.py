"""workbench: ControlNet and LoRA experiments on Stable Diffusion, from Jupyter.

    import workbench as wb
    pipe = wb.load_pipeline()                      # the embedded toy model, offline
    control = wb.make_canny("photo.png", resolution=64)
    images = wb.generate(pipe, "a red circle on a blue background", control, seeds=[0, 1])
"""

import logging

# transformers announces at import that torchvision is missing and that it falls back to its PIL
# image processors. workbench never uses those processors (there is no safety checker), so the
# notice is noise; only that module's messages below ERROR are hidden.
logging.getLogger("transformers.utils.import_utils").setLevel(logging.ERROR)

from .control import load_image, make_canny
from .devices import pick_device, pick_dtype
from .errors import ModelNotAvailableError
from .generate import generate
from .lora import load_lora, lora_delta_spectrum, lora_summary, train_lora, train_lora_ranks
from .pipeline import DEFAULT_MODEL, load_pipeline
from .explain import controlnet_residuals
from .plots import plot_grid, plot_images, plot_metric, plot_spectra
from .results import export_results, load_results
from .spec import SweepSpec, expand, load_spec
from .sweep import run_sweep
from .widgets import SweepPanel, compare

from importlib.metadata import version as _version

__version__ = _version("workbench")
__all__ = ["DEFAULT_MODEL", "ModelNotAvailableError", "SweepPanel", "SweepSpec", "compare", "expand", "export_results", "generate",
           "load_image", "load_lora", "load_pipeline", "load_results", "load_spec", "make_canny", "pick_device", "pick_dtype",
           "controlnet_residuals", "lora_delta_spectrum", "lora_summary", "plot_grid", "plot_images", "plot_metric",
           "plot_spectra",
           "run_sweep", "train_lora", "train_lora_ranks"]

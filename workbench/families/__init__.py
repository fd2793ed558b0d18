"""Model families: everything that differs between Stable Diffusion 1.5 and SDXL, one module each.

A family module (`sd15.py`, `sdxl.py`) answers the same questions, so the sweep, the
generation helper, the metrics, LoRA training and the widgets never ask which family a
pipeline is:

  PIPELINE_CLASS, PRESETS         the diffusers ControlNet pipeline class (its name); preset
                                  names -> (base, ControlNet). Trained sizes are in `sizes.py`.
  owns_index(model_index)         (SDXL) is a diffusers folder's model_index.json SDXL's?
  owns(pipe)                      is a loaded pipeline this family's?
  components                      the weights a fingerprint hashes
  encode(pipe, prompt, negative)  the pipeline-call keywords that carry one prompt's embeddings
  unet_conditioning(pipe, context, rows)
                                  the keywords a bare UNet or ControlNet call needs besides the
                                  text embeddings (SDXL: pooled text and size "time ids")
  text_context(pipe, tokens)      text embeddings for training, from token ids
  tokenize(pipe, captions)        token ids for training
  lora_loader()                   the class whose save_lora_weights writes this family's files
  build_tiny(seed)                a random-weight pipeline from configs, for tests

`family_of(pipe)` and `family_of_index(index)` pick the module; `repeat` batches any family's
embeddings.
"""

from __future__ import annotations

from types import ModuleType

from . import sd15, sdxl

FAMILIES: dict[str, ModuleType] = {"sd15": sd15, "sdxl": sdxl}


def family_of(pipe) -> ModuleType:
    """The family module of a loaded pipeline (SDXL is checked first: it is the more specific)."""
    for family in (sdxl, sd15):
        if family.owns(pipe):
            return family
    raise ValueError(f"{type(pipe).__name__} is not a pipeline workbench knows; families: {sorted(FAMILIES)}")


def family_of_index(model_index: dict) -> ModuleType:
    """The family of a diffusers folder, from its model_index.json (SD1.x when nothing says SDXL)."""
    return sdxl if sdxl.owns_index(model_index) else sd15


def preset_family(name: str) -> ModuleType | None:
    """The family whose PRESETS name `name`, or None."""
    return next((family for family in FAMILIES.values() if name in family.PRESETS), None)


def repeat(embeddings: dict, n: int) -> dict:
    """One prompt's embeddings (any family's keywords), for a batch of n images."""
    return {name: tensor.repeat(n, *([1] * (tensor.dim() - 1))) for name, tensor in embeddings.items()}


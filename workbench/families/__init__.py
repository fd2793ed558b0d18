"""Model families: everything that differs between Stable Diffusion 1.5 and SDXL, one module each.

A family module (`sd15.py`, `sdxl.py`) holds two kinds of thing, and keeps them apart:
  facts  plain constants, read without torch: preset names, hub ids, ids the hub renamed,
         trained sizes, the pipeline class's name, the components a fingerprint hashes. A
         spec is checked against them (`sizes.py`) before anything heavy is imported.
  code   functions that build or call a model; each imports torch and diffusers when called.
The `Family` protocol below lists both. The sweep, generation, metrics, LoRA training and
the widgets ask `family_of(pipe)` and never which family a pipeline is. Adding a family is
one module, and its name on one line (`FAMILY_MODULES`).
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType
from typing import Protocol

from . import sd15  # the family of a model nothing else places (SD1.x); FAMILY_MODULES below imports every family
from .parts import trained_side, unit_controlnets  # noqa: F401 (the parts every family's pipeline has)

# The family modules in this folder, the more specific first: an SDXL pipeline also has what SD1.5's `owns` looks for.
FAMILY_MODULES = ("sdxl", "sd15")
FAMILIES: tuple[ModuleType, ...] = tuple(import_module(f".{name}", __name__) for name in FAMILY_MODULES)
# `metric_models: {depth: tiny}`: a condition's network with random weights from a small config, as the tiny models
# are built (the tests' and the tiny models' depth, seg and pose estimators)
TINY_WEIGHTS = "tiny"
DEFAULT_MODEL = "toy"  # the embedded model (an SD1.5-family pipeline trained by this project): offline, on a CPU


class Family(Protocol):
    """What a family module answers (a module satisfies a Protocol; see the module docstring)."""
    NAME: str                                  # "sd15", "sdxl"
    PIPELINE_CLASS: str                        # the diffusers ControlNet pipeline class's name
    PRESETS: dict[str, tuple[str, str]]        # preset name -> (base, ControlNet)
    TINY_PRESET: str                           # the preset `build_tiny` makes (random weights, for tests)
    EMBEDDED: dict[str, tuple[str, str]]       # embedded presets -> (base folder, ControlNet folder) in assets/
    CONTROLNET_PRESETS: dict[str, str]         # ControlNets that are presets on their own -> folder in assets/
    RENAMED_IDS: dict[str, str]                # hub ids taken off the hub -> their mirror
    TRAINED_SIZES: dict[str, int]              # preset name or hub id -> the side it was trained at, px
    DEFAULT_SIZE: int                          # the trained side of a model of this family not listed above
    BUCKETS: tuple                             # (width, height) sizes it was trained at besides the square, or ()
    CONDITION_CONTROLNETS: dict[str, tuple]    # condition kind -> the hub ids of ControlNets that read it
    PROFILES: dict[str, dict]                  # preset name -> what a spec and training use on a GPU (`profiles`)
    DEFAULT_PROFILE: str                       # the profile of any other hub id or folder of this family
    COMPONENTS: tuple[str, ...]                # the weights a model fingerprint hashes
    DENOISER: str                              # the pipeline attribute of the noise predictor ("unet")
    TEXT_ENCODERS: tuple[str, ...]             # the pipeline attributes of its text encoders
    LORA_MODULES: tuple[str, ...]              # the parts a LoRA file's layers go into (denoiser, text encoders)
    DOWNLOAD_GB: dict[str, float]              # hub id -> what from_pretrained downloads, GB (errors say it)
    KOHYA_SGM_UNET: bool                       # kohya names UNet layers by the original model's blocks
    KOHYA_TEXT_PREFIXES: dict[str, str]        # text encoder component -> kohya's key prefix (lora_te_, lora_te1_)
    KOHYA_BASE_VERSION: str                    # what kohya writes as ss_base_model_version
    CROSS_ATTENTION_DIM: int                   # the width of the text the UNet's cross-attention reads
    CHECKPOINT_KEY: str                        # a key only this family's single-file checkpoints hold
    SINGLE_FILE_PARTS: dict[str, tuple]        # a single file's parts -> (library, class) in diffusers' layout
    TOKENIZER_PADS: dict[str, str]             # tokenizer part -> its pad token
    PARAMETERS_M: dict[str, float]             # each part's parameters in millions (memory plans)
    LBW_BLOCKS: tuple                          # A1111's LoRA Block Weight blocks: (name, part, block, layer)
    OPEN_CLIP_PARTS: dict[str, str]            # text encoder part -> its key prefix, where a file holds OpenCLIP's
    TEXT_ENCODER_IDS: dict[str, int]           # the published text encoders' bos/eos/pad token ids
    LOAD_KWARGS: dict                          # what `from_pretrained` turns off (safety checker, watermark)

    def owns_index(self, model_index: dict) -> bool: ...          # is this model_index.json ours?
    def owns(self, pipe) -> bool: ...                             # is this loaded pipeline ours?
    def encode(self, pipe, prompt: str, negative: str, clip_skip=None) -> dict: ...  # pipeline-call keywords
    def unet_conditioning(self, pipe, context, rows: int) -> dict: ...       # a bare UNet call's extras
    def control_residuals(self, net, x, t, image, condition: dict, guess=False, scale=1.0) -> list: ...  # flat
    def predict_noise(self, denoiser, x, t, residuals, condition: dict): ...  # the denoiser, residuals added
    def loop_conditioning(self, pipe, embeddings: dict, rows: int, height: int, width: int) -> dict: ...  # `denoise`
    def tokenize(self, pipe, captions: list[str]) -> list: ...              # token ids for training
    def text_context(self, pipe, tokens: list, image_sizes=None) -> tuple: ...  # (embeddings, extras)
    def lora_loader(self): ...                 # the class whose save_lora_weights writes our files
    def pipeline_class(self): ...              # the diffusers class itself
    def denoiser_class(self): ...              # the denoiser's class (built from a config)
    def controlnet_class(self): ...            # its ControlNets' class (from_pretrained, from_unet)
    def build_tiny(self, seed: int = 0): ...   # a random-weight pipeline from configs, for tests
    def build_random(self, seed: int = 0, dtype=None, device: str = "cpu"): ...  # full size, random


PRESETS = {name: pair for family in FAMILIES for name, pair in family.PRESETS.items()}
TINY_PRESETS = tuple(family.TINY_PRESET for family in FAMILIES)
EMBEDDED = {name: folders for family in FAMILIES for name, folders in family.EMBEDDED.items()}
CONTROLNET_PRESETS = {name: folder for family in FAMILIES for name, folder in family.CONTROLNET_PRESETS.items()}
RENAMED_IDS = {old: new for family in FAMILIES for old, new in family.RENAMED_IDS.items()}
DOWNLOAD_GB = {model_id: size for family in FAMILIES for model_id, size in family.DOWNLOAD_GB.items()}


def family_of(pipe) -> ModuleType:
    """The family module of a loaded pipeline."""
    for family in FAMILIES:
        if family.owns(pipe):
            return family
    raise ValueError(f"{type(pipe).__name__} is not a pipeline workbench knows; families: "
                     f"{[family.NAME for family in FAMILIES]}")


def denoiser(pipe):
    """The network of a loaded pipeline that predicts the noise each step (its family's DENOISER: a UNet here)."""
    return getattr(pipe, family_of(pipe).DENOISER)


def trained_size(pipe) -> int:
    """The image side the pipeline was trained at, in px (diffusers' default size): sample_size x VAE factor."""
    return trained_side(pipe, denoiser(pipe))


def controlnet_from_denoiser(pipe, **config):
    """A new, untrained ControlNet copied from the pipeline's denoiser (its encoder and middle block), as
    ControlNet training starts; `config` overrides, e.g. conditioning_embedding_out_channels."""
    return family_of(pipe).controlnet_class().from_unet(denoiser(pipe), **config)


def condition_controlnets(kind: str) -> dict[str, tuple]:
    """{family name: hub ids of its ControlNets that read condition `kind`} (an empty tuple: none known)."""
    return {family.NAME: family.CONDITION_CONTROLNETS.get(kind, ()) for family in FAMILIES}


def trained_buckets(pipe) -> tuple:
    """The (width, height) buckets a loaded pipeline's family was trained at (SDXL's), or () for one size."""
    return family_of(pipe).BUCKETS


def family_of_index(model_index: dict) -> ModuleType:
    """The family of a diffusers folder, from its model_index.json (SD1.x when nothing says otherwise)."""
    return next((family for family in FAMILIES if family.owns_index(model_index)), sd15)


def preset_family(name: str) -> ModuleType | None:
    """The family whose PRESETS name `name`, or None."""
    return next((family for family in FAMILIES if name in family.PRESETS), None)


def known_family(name: str) -> ModuleType | None:
    """The family of a preset, or of a hub id a family lists (its presets' ids, renamed ids); else None."""
    return next((family for family in FAMILIES if name in family.TRAINED_SIZES or name in family.RENAMED_IDS
                  or name in family.PRESETS), None)


def model_folder(model: str):
    """The folder a model name points at, read from disk only: a folder, or a hub id's cached snapshot (else None)."""
    from pathlib import Path

    from .hubcache import cached_snapshot
    folder = Path(str(model)).expanduser()
    if not folder.is_dir() and str(model).count("/") == 1:
        folder = cached_snapshot(str(model)) or folder
    return folder if folder.is_dir() else None


def family_of_keys(keys) -> ModuleType | None:
    """The family whose single-file checkpoints hold these keys (by a key only it has), else None."""
    keys = set(keys)
    return next((family for family in FAMILIES if family.CHECKPOINT_KEY in keys), None)


def checkpoint_family(path) -> ModuleType | None:
    """The family of a single-file .safetensors checkpoint, read from its header's keys (never its name); None when
    the file is not one or not readable (loading it then says why)."""
    from pathlib import Path
    if Path(str(path)).suffix.lower() != ".safetensors" or not Path(str(path)).is_file():
        return None
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            return family_of_keys(f.keys())
    except Exception:  # a damaged file: its loading names the problem
        return None


def family_for(model: str) -> ModuleType:
    """The family of a model name as a spec gives it, without loading anything: a preset or listed hub id, a
    single-file checkpoint's keys, a folder's or a cached hub snapshot's model_index.json, else SD1.x."""
    import json
    from_file = checkpoint_family(model) if isinstance(model, str) else None
    if from_file is not None:
        return from_file
    family, folder = known_family(model), model_folder(model)
    if family is not None or folder is None:
        return family or sd15
    try:
        return family_of_index(json.loads((folder / "model_index.json").read_text()))
    except (OSError, ValueError):
        return sd15


def family_profile(family, model: str) -> dict:
    """`family`'s GPU profile of `model`: the preset's own, else the family's default (`workbench.profiles`)."""
    return dict(family.PROFILES.get(model, family.PROFILES[family.DEFAULT_PROFILE]))


def base_profile(model: str) -> tuple:
    """(family module, its GPU profile of `model`): the family read from the model's files where its name does not
    say."""
    family = family_for(model)
    return family, family_profile(family, model)


SPEC_KEYS = ("steps", "guidance", "scheduler")  # what a spec that leaves them out takes from its model's profile


def spec_model(model) -> str:
    """The model name whose defaults a spec takes: the default model for one that is no name (the spec's check
    refuses such a model later, naming it; these defaults never run)."""
    return model if isinstance(model, str) and model.strip() else DEFAULT_MODEL


def named_spec_defaults(model) -> dict | None:
    """`spec_defaults` of a model its name alone places (a preset, a hub id a family lists, the default model), read
    from no file; None for a folder, a single file or another hub id, which `spec_defaults` must look at."""
    model = spec_model(model)
    family = known_family(model)
    return None if family is None else spec_values(family_profile(family, model))


def spec_defaults(model) -> dict:
    """The steps, guidance and scheduler of a spec for `model` that leaves them out: its GPU profile's, whatever the
    machine, so one spec gives the same trial ids everywhere (the toy's: 20, 5.0, ddim, as always)."""
    return spec_values(base_profile(spec_model(model))[1])


def spec_values(profile: dict) -> dict:
    """A profile's steps, guidance and scheduler as a spec's axes (one value each)."""
    return {name: [profile[name]] for name in SPEC_KEYS}


def repeat(embeddings: dict, n: int) -> dict:
    """One prompt's embeddings (any family's keywords), for a batch of n images."""
    return {name: tensor.repeat(n, *([1] * (tensor.dim() - 1))) for name, tensor in embeddings.items()}

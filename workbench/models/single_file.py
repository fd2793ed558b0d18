"""Single-file checkpoints: a whole model in one .safetensors file, the layout model sites publish (A1111's).

    wb.load_pipeline("models/dreamshaper_8.safetensors")                        SD1.x, Canny ControlNet of SD1.5
    wb.load_pipeline("sdxl_finetune.safetensors", controlnet="canny.safetensors")
    wb.load_pipeline("anime.safetensors", prediction_type="v_prediction")       a v-prediction fine-tune

Three steps, all offline:
  1. The family comes from the file's keys (`families.checkpoint_family`), never its name. SD 2.x files,
     ControlNets, LoRAs and other files given as a base are refused, saying what they are.
  2. A folder of diffusers configs is written for it: the family's bundled configs (configs/sd15, configs/sdxl),
     CLIP's tokenizer (configs/clip) and the scheduler the base model ships; `config=` (a folder or hub id in
     diffusers layout) replaces it, as for a fine-tune with another architecture.
  3. diffusers' `from_single_file` (the reference reader) renames the weights into that layout.

The file's keys do not say whether the model predicts the noise or v; `prediction_type` says so (default
"epsilon") and rows record it. Rows name the model by its file name and A1111's short hash (`file_hash`).
Only .safetensors loads by default; a .ckpt pickle can run code as it loads, so it needs `allow_pickle=True`.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

from .fingerprint import file_sha256

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
PREDICTION_TYPES = ("epsilon", "v_prediction")
SD2_KEY = "cond_stage_model.model.ln_final.weight"  # an OpenCLIP text encoder alone: SD 2.x, not supported
CONTROLNET_KEYS = ("input_hint_block.0.weight", "controlnet_cond_embedding.conv_in.weight")


def is_single_file(name) -> bool:
    """True for a path to a file with a checkpoint suffix (.safetensors, or a pickle's .ckpt/.pt/.pth/.bin)."""
    path = Path(str(name)).expanduser()
    return path.suffix.lower() in SINGLE_FILE_SUFFIXES and path.is_file()


def file_hash(path: str | Path) -> str:
    """A1111's short model hash: the first 10 hex digits of the file's sha256 (what its "Model hash" field holds)."""
    return file_sha256(Path(path))[:10]


def read_keys(path: Path, allow_pickle: bool) -> dict:
    """The file's tensors' names and shapes, from a safetensors header; a pickle is loaded (only when allowed)."""
    if path.suffix.lower() != ".safetensors":
        if not allow_pickle:
            raise ValueError(f"{path.name!r} is a pickle checkpoint ({path.suffix}), which can run code as it loads: "
                             "use the model's .safetensors release, or pass allow_pickle=True if you trust its source.")
        import torch
        warnings.warn(f"loading {path.name} with allow_pickle=True: a pickle can run any code as it loads", stacklevel=4)
        state = torch.load(path, map_location="cpu", weights_only=False)
        state = state.get("state_dict", state)
        return {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except SafetensorError as err:
        raise ValueError(f"{path.name!r} is not a readable safetensors file ({str(err).splitlines()[0][:100]}); "
                         "download it again.") from None


def what_else(shapes: dict) -> str:
    """What a file that is not a base checkpoint is, in a few words (for refusals)."""
    keys = list(shapes)
    if SD2_KEY in shapes:
        return "a Stable Diffusion 2.x checkpoint (OpenCLIP text encoder), which workbench does not support"
    if any(k.endswith(CONTROLNET_KEYS) for k in keys):
        return "a ControlNet: pass it as controlnet="
    if any("lora_" in k or "hada_" in k or "lokr_" in k for k in keys):
        return "a LoRA: load it with wb.load_lora or a spec's adapters"
    return f"not a Stable Diffusion checkpoint ({len(keys)} tensors, none of SD1.x's or SDXL's text encoder keys)"


def checkpoint_family(path: Path, shapes: dict):
    """The family module of a base checkpoint, by its keys; refuse anything else in one line."""
    from ..families import family_of_keys
    family = family_of_keys(shapes)
    if family is None:
        raise ValueError(f"{path.name!r} is {what_else(shapes)}. A base model file must be an SD1.x or SDXL "
                         "single-file checkpoint (.safetensors).")
    return family


def check_controlnet(path: Path, shapes: dict) -> None:
    """Refuse a file given as a ControlNet that is none, or that diffusers cannot read, in one line."""
    if not any(k.endswith(CONTROLNET_KEYS) for k in shapes):
        raise ValueError(f"controlnet {path.name!r} is no ControlNet file (no hint encoder keys); it is "
                         f"{what_else(shapes).removeprefix('a ControlNet: pass it as controlnet=')}")
    if any(k.endswith("input_hint_block.0.weight") for k in shapes) and any("label_emb" in k for k in shapes):
        raise ValueError(f"controlnet {path.name!r} is an SDXL ControlNet in the original layout, which diffusers "
                         "does not read: use the model's diffusers-layout file (diffusion_pytorch_model.safetensors).")


def controlnet_family(path: Path, shapes: dict):
    """The family whose bundled config a ControlNet file fits, by the text width its cross-attention reads."""
    from ..families import FAMILIES
    widths = {shape[1] for key, shape in shapes.items() if key.endswith("attn2.to_k.weight")}
    family = next((f for f in FAMILIES if widths == {f.CROSS_ATTENTION_DIM}), None)
    if family is None:
        raise ValueError(f"controlnet {path.name!r} reads text {sorted(widths)} wide, which fits no bundled config "
                         "(768 SD1.x, 2048 SDXL): pass config= a folder holding its diffusers config.json.")
    return family


def write_bundled_config(folder: Path, family, prediction_type: str) -> Path:
    """A diffusers config folder for a single file of `family`: model_index.json, each part's config, tokenizers."""
    from ..families.clip_tokenizer import write_clip_tokenizer
    configs = Path(__file__).parents[1] / "configs" / family.NAME

    def bundled(name: str) -> dict:
        return {k: v for k, v in json.loads((configs / f"{name}.json").read_text()).items() if k != "_source"}

    index = {"_class_name": family.PIPELINE_CLASS, **{part: list(kind) for part, kind in family.SINGLE_FILE_PARTS.items()}}
    (folder / "model_index.json").write_text(json.dumps(index))
    for part, (library, class_name) in family.SINGLE_FILE_PARTS.items():
        if part in family.TOKENIZER_PADS:
            write_clip_tokenizer(folder / part, pad_token=family.TOKENIZER_PADS[part])
            continue
        (folder / part).mkdir()
        if part == "scheduler":
            config, name = {**bundled("scheduler"), "prediction_type": prediction_type}, "scheduler_config.json"
        elif library == "transformers":
            config = {**bundled(part), **family.TEXT_ENCODER_IDS, "architectures": [class_name],
                      "model_type": "clip_text_model"}
            name = "config.json"
        else:
            config, name = {"_class_name": class_name, **bundled(part)}, "config.json"
        (folder / part / name).write_text(json.dumps(config))
    (folder / "controlnet").mkdir()
    (folder / "controlnet" / "config.json").write_text(json.dumps({"_class_name": family.controlnet_class().__name__,
                                                                   **bundled("controlnet")}))
    return folder


@contextmanager
def quiet_loading():
    """No warnings or log lines from the reader while a file loads (diffusers logs each part's dtype advice)."""
    from diffusers.utils import logging as diffusers_logging
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        diffusers_logging.set_verbosity(level)


@contextmanager
def config_folder(family, config: str | Path | None, prediction_type: str):
    """The diffusers configs a single file loads into: `config` (a folder, or a cached or reachable hub id), else the
    family's bundled ones, written to a temporary folder for the load."""
    if config is None:
        with tempfile.TemporaryDirectory(prefix="workbench-config-") as folder:
            yield write_bundled_config(Path(folder), family, prediction_type)
        return
    folder = Path(str(config)).expanduser()
    if folder.is_dir():
        yield folder
        return
    from huggingface_hub import constants, snapshot_download

    from ..errors import model_not_available
    try:
        yield Path(snapshot_download(str(config), allow_patterns=["*.json", "*.txt"],
                                     local_files_only=bool(constants.HF_HUB_OFFLINE)))
    except OSError as err:
        raise model_not_available(str(config), "config", type(err).__name__) from None


def open_clip_text_encoder(path: Path, folder: Path, prefix: str, dtype):
    """A text encoder a file holds in OpenCLIP's layout (SDXL's second), read by its keys under `prefix` whatever its
    width (diffusers picks the encoder by its width, which a model whose two encoders are as wide gets wrong)."""
    import torch
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from safetensors import safe_open
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection
    config = CLIPTextConfig.from_pretrained(folder)
    model = CLIPTextModelWithProjection(config)
    if path.suffix.lower() == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    else:  # allowed, and warned about, by read_keys
        state = torch.load(path, map_location="cpu", weights_only=False)
        state = state.get("state_dict", state)
    model.load_state_dict(convert_open_clip_checkpoint(model, state, prefix=prefix), strict=True)
    return model.to(dtype).eval()


def misfit(path: Path, what: str, err: Exception) -> ValueError:
    """One line for weights that do not fit their configs."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
    return ValueError(f"{path.name!r} does not fit {what} ({first}); if it is a model of another architecture, "
                      "pass config= a folder or hub id in diffusers layout that describes it.")


def load_controlnet_file(path: str | Path, dtype, config: str | Path | None = None, allow_pickle: bool = False):
    """A ControlNet from one file (lllyasviel's `control_v11p_sd15_canny.safetensors`, or a diffusers-layout file):
    its family's bundled config, or `config` (a folder holding config.json, or a pipeline folder with controlnet/)."""
    from ..families import FAMILIES
    path = Path(path).expanduser()
    shapes = read_keys(path, allow_pickle)
    check_controlnet(path, shapes)
    family = controlnet_family(path, shapes) if config is None else None
    # with a config given, the file's family is not read: the default family's class (SD1.x's, SDXL's are one class)
    controlnet_class = (family or FAMILIES[-1]).controlnet_class()
    with config_folder(family, config, "epsilon") as folder:
        folder = folder / "controlnet" if (folder / "controlnet" / "config.json").is_file() else folder
        try:
            with quiet_loading():
                return controlnet_class.from_single_file(str(path), config=str(folder), torch_dtype=dtype,
                                                        local_files_only=True)
        except (ValueError, RuntimeError, KeyError, OSError, NotImplementedError) as err:
            raise misfit(path, f"the {family.NAME if family else 'given'} ControlNet config", err) from None


def load_checkpoint_pipeline(path: str | Path, controlnet, dtype, config: str | Path | None = None,
                             prediction_type: str = "epsilon", allow_pickle: bool = False):
    """A ControlNet pipeline from a single-file checkpoint of SD1.x or SDXL, around a loaded `controlnet`."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type {prediction_type!r} is not one of {PREDICTION_TYPES}")
    path = Path(path).expanduser()
    family = checkpoint_family(path, read_keys(path, allow_pickle))
    with config_folder(family, config, prediction_type) as folder:
        extra = {part: open_clip_text_encoder(path, folder / part, prefix, dtype)
                 for part, prefix in family.OPEN_CLIP_PARTS.items()}
        try:
            with quiet_loading():
                pipe = family.pipeline_class().from_single_file(
                    str(path), config=str(folder), controlnet=controlnet, torch_dtype=dtype, local_files_only=True,
                    **family.LOAD_KWARGS, **extra)
        except (ValueError, RuntimeError, KeyError, OSError, NotImplementedError) as err:
            raise misfit(path, f"the {family.NAME} layout", err) from None
    pipe.scheduler.register_to_config(prediction_type=prediction_type)
    pipe.workbench_file = {"model_file": path.name, "model_hash": file_hash(path), "prediction_type": prediction_type}
    return pipe

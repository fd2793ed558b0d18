"""Stable Diffusion 1.x: one CLIP text encoder, prompt embeddings only, 512 px (the toy 64, tiny 32).

Facts first (no torch), then the code that builds or calls a model, importing torch when called.
"""

from __future__ import annotations

import json
from pathlib import Path

from .parts import control_residuals, predict_noise  # noqa: F401 (a UNet's ControlNet residuals: the Family protocol)

# ---- facts ----------------------------------------------------------------------------------------

NAME = "sd15"
PIPELINE_CLASS = "StableDiffusionControlNetPipeline"
SD15_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD15_CANNY_ID = "lllyasviel/sd-controlnet-canny"
# Preset names: (base, controlnet). "toy" is embedded; "tiny" is random weights from a config.
PRESETS = {"toy": ("toy", "toy"), "tiny": ("tiny", "tiny"), "sd15": (SD15_ID, SD15_CANNY_ID)}
TINY_PRESET = "tiny"
# The embedded toy model, in the package's assets/ (base folder, ControlNet folder), and its
# second ControlNet, which reads silhouettes.
EMBEDDED = {"toy": ("toy", "toy/controlnet")}
CONTROLNET_PRESETS = {"toy-mask": "toy/controlnet-mask"}
# runwayml took its SD1.5 repository off the hub in 2024; this is the community mirror.
RENAMED_IDS = {"runwayml/stable-diffusion-v1-5": SD15_ID}
# Trained sides in px: SD1.5's model card (512 x 512), the toy's card (64), the tiny test model (32).
TRAINED_SIZES = {"toy": 64, "tiny": 32, "sd15": 512, SD15_ID: 512, SD15_CANNY_ID: 512}
DEFAULT_SIZE = 512  # hub ids and folders without a readable config are taken to be SD1.x
BUCKETS: tuple = ()  # trained at one size: a photo keeps its aspect ratio, short side at the resolution
# The ControlNets that read each condition (`spec/conditions.py`, by kind), the first the one a lesson loads.
CONDITION_CONTROLNETS = {
    "canny": ("lllyasviel/control_v11p_sd15_canny", SD15_CANNY_ID),
    "depth": ("lllyasviel/control_v11f1p_sd15_depth",),
    "openpose": ("lllyasviel/control_v11p_sd15_openpose",),
    "seg": ("lllyasviel/control_v11p_sd15_seg", "lllyasviel/sd-controlnet-seg"),
    "lineart": ("lllyasviel/control_v11p_sd15_lineart",),
    "softedge": ("lllyasviel/control_v11p_sd15_softedge",),
    "scribble": ("lllyasviel/control_v11p_sd15_scribble",),
}
# The pipeline's parts by role: the code outside `families/` asks for them through these names only.
DENOISER = "unet"  # the network that predicts the noise (SD3 and Flux name theirs "transformer")
TEXT_ENCODERS = ("text_encoder",)
LORA_MODULES = (DENOISER, *TEXT_ENCODERS)  # where a LoRA file's layers go (diffusers' _lora_loadable_modules)
COMPONENTS = ("unet", "controlnet", "vae", "text_encoder")
# What from_pretrained downloads, in GB (fp32 safetensors, from the model cards' file lists): SD1.5's UNet 3.44,
# text encoder 0.49 and VAE 0.33; a ControlNet v1.0/v1.1 1.45.
DOWNLOAD_GB = {SD15_ID: 4.3, SD15_CANNY_ID: 1.45, "lllyasviel/sd-controlnet-seg": 1.45,
               "lllyasviel/control_v11p_sd15_canny": 1.45}
# The safety checker is off: it needs extra hub weights and blacks out images, which would
# corrupt sweep metrics. Filter images yourself before publishing.
LOAD_KWARGS = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
CONFIGS = Path(__file__).parents[1] / "configs" / "sd15"  # the published architecture, for random builds
# kohya's LoRA layout for this family (`lora/convert.py`): UNet layers by diffusers' module names, the text encoder's
# prefix, and the base name kohya's sd-scripts writes into a file's header.
KOHYA_SGM_UNET = False
KOHYA_TEXT_PREFIXES = {"text_encoder": "lora_te_"}
KOHYA_BASE_VERSION = "sd_v1"
# Parameters of each part, in millions (the published configs in configs/sd15/, counted; a memory plan's weights)
PARAMETERS_M = {"unet": 859.5, "text_encoder": 123.1, "vae": 83.7, "controlnet": 361.3}
CROSS_ATTENTION_DIM = 768  # the text width the UNet's attn2 reads (configs/sd15/unet.json): a LoRA's to_k says it
# A single-file (A1111) checkpoint of this family: its text encoder's position embedding, as diffusers recognises it.
CHECKPOINT_KEY = "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"
# The LoRA Block Weight extension's blocks for this family (A1111's `<lora:name:w:lbw=...>`, 17 weights): each is
# (its name, our part, diffusers block, layer in it): BASE is the text encoder, IN the down blocks' attention layers,
# OUT the up blocks'.
LBW_BLOCKS = (("BASE", "text_encoder", None, None), ("IN01", "down", 0, 0), ("IN02", "down", 0, 1),
              ("IN04", "down", 1, 0), ("IN05", "down", 1, 1), ("IN07", "down", 2, 0), ("IN08", "down", 2, 1),
              ("MID", "mid", None, None), ("OUT03", "up", 1, 0), ("OUT04", "up", 1, 1), ("OUT05", "up", 1, 2),
              ("OUT06", "up", 2, 0), ("OUT07", "up", 2, 1), ("OUT08", "up", 2, 2), ("OUT09", "up", 3, 0),
              ("OUT10", "up", 3, 1), ("OUT11", "up", 3, 2))
# A single-file checkpoint loads into this diffusers layout (`models/single_file.py`): each part's class, its bundled
# config in configs/sd15/, and a tokenizer's pad token (CLIP's files are written from configs/clip).
SINGLE_FILE_PARTS = {"unet": ("diffusers", "UNet2DConditionModel"), "vae": ("diffusers", "AutoencoderKL"),
                     "text_encoder": ("transformers", "CLIPTextModel"), "tokenizer": ("transformers", "CLIPTokenizer"),
                     "scheduler": ("diffusers", "PNDMScheduler")}
TOKENIZER_PADS = {"tokenizer": "<|endoftext|>"}
OPEN_CLIP_PARTS: dict[str, str] = {}  # text encoders a single file holds in OpenCLIP's layout (SDXL's second)
# The published text encoders' token ids (0, 2, 1: a known quirk; CLIP then pools at the argmax id)
TEXT_ENCODER_IDS = dict(bos_token_id=0, eos_token_id=2, pad_token_id=1)

# What a spec or a training run uses on each model on a GPU (`workbench.profiles` adds a lesson's settings); keys are
# preset names, and DEFAULT_PROFILE serves any other hub id or folder of this family. The toy and the test model are
# lessons' own models: their profiles hold their lesson settings too.
PROFILES = {
    # The toy: exactly the spec defaults it always had, so its trial ids never change; LoRA as notebook 02 trains it.
    "toy": dict(resolution=64, steps=20, guidance=5.0, scheduler="ddim", seeds=[0, 1, 2], lora_steps=1200,
                lora_batch=8, lora_lr=1e-3, mixed_precision="no", gradient_checkpointing=False,
                metrics=["edge", "toy"], report_metric="style_strength", content_metric="colour_fidelity",
                controlnets=["toy", "toy-mask"], ranks=[1, 2, 4, 8, 16], train_seeds=[0, 1, 2], scenes=12,
                second_condition="none"),
    # The random test model: the toy's sampling defaults (its tests' ids stay), a few LoRA steps.
    "tiny": dict(resolution=32, steps=20, guidance=5.0, scheduler="ddim", seeds=[0, 1], lora_steps=8, lora_batch=4,
                 lora_lr=1e-2, mixed_precision="no", gradient_checkpointing=False, metrics=["edge"],
                 report_metric="lora_effect", content_metric="edge_f1", controlnets=["tiny", "tiny"], ranks=[1, 2],
                 train_seeds=[0, 1], scenes=1, second_condition="depth", condition_models={"depth": "tiny"}),
    # SD1.5: 512 px and guidance 7.5 from its model card; DPM-Solver++ 2M converges in 20-30 steps (Lu et al. 2022);
    # LoRA as diffusers' train_text_to_image_lora.py and train_dreambooth_lora.py run it: lr 1e-4, batch 1 with 4
    # accumulation steps (4 here), fp16 mixed precision, gradient checkpointing offered, gradients clipped at 1; 500
    # steps as the DreamBooth LoRA example. Its ControlNets: Canny, and ADE20K segmentation (drawn from a photo).
    "sd15": dict(resolution=512, steps=30, guidance=7.5, scheduler="dpm++2m", lora_steps=500, lora_batch=4,
                 lora_lr=1e-4, mixed_precision="fp16", gradient_checkpointing=True, max_grad_norm=1.0,
                 controlnets=[SD15_CANNY_ID, "lllyasviel/sd-controlnet-seg"], second_condition="seg"),
}
DEFAULT_PROFILE = "sd15"


def owns_index(model_index: dict) -> bool:
    return "text_encoder" in model_index or "StableDiffusion" in str(model_index.get("_class_name", ""))


def owns(pipe) -> bool:
    return hasattr(pipe, "text_encoder") and hasattr(pipe, "unet")


# ---- code ---------------------------------------------------------------------------------------

def encode(pipe, prompt: str, negative: str, clip_skip: int | None = None) -> dict:
    """Positive and negative prompt embeddings, (1, tokens, width) each; an empty negative prompt is passed as None,
    as on every path (SD1.5 encodes "" for it either way). `clip_skip` counts as A1111 does (`diffusers_clip_skip`)."""
    import torch
    with torch.no_grad():
        positive, negative = pipe.encode_prompt(prompt, pipe.device, 1, True, negative or None)
        skip = diffusers_clip_skip(clip_skip)
        if skip:  # as diffusers' clip_skip means it (the prompt only), which its SD1.5 path fails at with transformers 5
            positive = skipped_layer_embeddings(pipe, prompt, skip).to(positive.dtype)
    return {"prompt_embeds": positive, "negative_prompt_embeds": negative}


def skipped_layer_embeddings(pipe, prompt: str, skip: int):
    """(1, tokens, width): the text encoder's hidden state `skip` layers before the last, through its final layer norm.

    diffusers 0.42 reads the norm from `text_encoder.text_model`, which transformers 5's CLIPTextModel no longer has.
    """
    encoder = pipe.text_encoder
    tokens = pipe.tokenizer(prompt, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids.to(pipe.device)
    mask = None
    if getattr(encoder.config, "use_attention_mask", False):
        mask = (tokens != pipe.tokenizer.pad_token_id).long()
    hidden = encoder(tokens, attention_mask=mask, output_hidden_states=True).hidden_states[-(skip + 1)]
    norm = getattr(encoder, "final_layer_norm", None) or encoder.text_model.final_layer_norm
    return norm(hidden)


def diffusers_clip_skip(clip_skip: int | None) -> int | None:
    """A1111's Clip skip (1 = the last layer) as diffusers counts it (layers skipped: None for none)."""
    return clip_skip - 1 if clip_skip and clip_skip > 1 else None


def unet_conditioning(pipe, context, rows: int) -> dict:
    """SD1.5's UNet needs nothing besides the text embeddings."""
    return {}


def loop_conditioning(pipe, embeddings: dict, rows: int, height: int, width: int) -> dict:
    """The text conditioning of `denoise`'s UNet and ControlNet calls on `rows` rows, CFG's two halves stacked."""
    import torch
    text = torch.cat([embeddings["negative_prompt_embeds"].repeat(rows, 1, 1),
                      embeddings["prompt_embeds"].repeat(rows, 1, 1)])
    return {"encoder_hidden_states": text}


def tokenize(pipe, captions: list[str]) -> list:
    return [pipe.tokenizer(captions, padding="max_length", truncation=True, return_tensors="pt").input_ids]


def text_context(pipe, tokens: list, image_sizes: list | None = None) -> tuple:
    """(text embeddings, extra UNet keywords) for training, from `tokenize`'s ids; SD1.5 takes no image sizes."""
    return pipe.text_encoder(tokens[0].to(pipe.device))[0], {}


def lora_loader():
    from diffusers import StableDiffusionPipeline
    return StableDiffusionPipeline


def pipeline_class():
    import diffusers
    return getattr(diffusers, PIPELINE_CLASS)


def denoiser_class():
    """The class of the denoiser (DENOISER), built from a config by the tests and the anatomy lesson."""
    from diffusers import UNet2DConditionModel
    return UNet2DConditionModel


def controlnet_class():
    """The class of this family's ControlNets: `from_pretrained`, `from_unet` and config builds use it."""
    from diffusers import ControlNetModel
    return ControlNetModel


def assemble_pipeline(unet, controlnet, vae, text_encoder, tokenizer, scheduler):
    """Put components together into a ControlNet pipeline with no safety checker (see LOAD_KWARGS)."""
    return pipeline_class()(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, controlnet=controlnet,
                            scheduler=scheduler, **LOAD_KWARGS)


def build_tiny_pipeline(cfg=None, corpus: list[str] | None = None, seed: int = 0, wake_controlnet: bool = True):
    """A random-weight SD + ControlNet pipeline from configs; the same seed gives the same weights."""
    import torch

    from .builders import (TINY_CORPUS, ModelConfig, build_controlnet, build_scheduler, build_text_encoder,
                           build_tokenizer, build_unet, build_vae, wake_zero_convs)
    cfg = cfg or ModelConfig()
    tokenizer = build_tokenizer(corpus or TINY_CORPUS, max_length=cfg.max_length)
    torch.manual_seed(seed)
    text_encoder = build_text_encoder(cfg, tokenizer)
    torch.manual_seed(seed)
    vae = build_vae(cfg)
    torch.manual_seed(seed)
    unet = build_unet(cfg)
    controlnet = build_controlnet(cfg, unet)
    if wake_controlnet:
        wake_zero_convs(controlnet, seed=seed)
    pipe = assemble_pipeline(unet, controlnet, vae, text_encoder, tokenizer, build_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny(seed: int = 0):
    """The `tiny` preset: 32 px, random weights (`build_tiny_pipeline` with its defaults)."""
    return build_tiny_pipeline(seed=seed)


def load_config(name: str) -> dict:
    """An architecture config of configs/sd15/, without its `_source` note."""
    return {k: v for k, v in json.loads((CONFIGS / f"{name}.json").read_text()).items() if not k.startswith("_")}


def build_random(seed: int = 0, dtype=None, device: str = "cpu"):
    """SD1.5 + Canny ControlNet at full size (860M UNet, 361M ControlNet) with random weights.

    Speed depends on the architecture, not the weights, so benchmarks use this where the real
    weights cannot be downloaded. The configs are the public values of stable-diffusion-v1-5 and
    lllyasviel/sd-controlnet-canny; the tokenizer is the toy world's, padded to 77 tokens.
    """
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ..toy.world import caption_words
    from .builders import build_scheduler, build_tokenizer
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(caption_words(), max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(**load_config("text_encoder"), bos_token_id=tokenizer.bos_token_id,
                                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    vae = AutoencoderKL(**load_config("vae"))
    unet = UNet2DConditionModel(**load_config("unet"))
    controlnet = ControlNetModel(**load_config("controlnet"))
    pipe = assemble_pipeline(unet, controlnet, vae, text_encoder, tokenizer, build_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device=device, dtype=dtype or torch.float32)

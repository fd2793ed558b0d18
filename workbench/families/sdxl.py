"""Stable Diffusion XL: two CLIP text encoders, pooled text and size "time ids" beside the prompt, 1024 px.

The UNet (and its ControlNet) takes, besides the concatenated hidden states of both text
encoders, `added_cond_kwargs`: `text_embeds` (the second encoder's pooled, projected output)
and `time_ids` (original size, crop corner and target size: six numbers an image, embedded
like timesteps). Everything that knows this lives in this module: facts first (no torch), then
the code that builds or calls a model, importing torch when called.
"""

from __future__ import annotations

from .parts import control_residuals, predict_noise, trained_side  # noqa: F401 (the first two: the Family protocol)

# ---- facts ----------------------------------------------------------------------------------------

NAME = "sdxl"
PIPELINE_CLASS = "StableDiffusionXLControlNetPipeline"
SDXL_ID = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_CANNY_ID = "diffusers/controlnet-canny-sdxl-1.0"
PRESETS = {"sdxl": (SDXL_ID, SDXL_CANNY_ID), "tiny-sdxl": ("tiny-sdxl", "tiny-sdxl")}
TINY_PRESET = "tiny-sdxl"
EMBEDDED: dict = {}
CONTROLNET_PRESETS: dict = {}
RENAMED_IDS: dict = {}
# Trained sides in px: SDXL base 1.0's model card (1024 x 1024); the tiny test model 32.
TRAINED_SIZES = {"sdxl": 1024, "tiny-sdxl": 32, SDXL_ID: 1024, SDXL_CANNY_ID: 1024}
DEFAULT_SIZE = 1024
# SDXL was trained on aspect-ratio buckets of about 1024 x 1024 pixels (Podell et al. 2023, appendix): a photo that
# is not square is drawn at the nearest bucket, scaled to the resolution (`control.fit_size`).
BUCKETS = ((1024, 1024), (1152, 896), (896, 1152), (1216, 832), (832, 1216), (1344, 768), (768, 1344),
           (1536, 640), (640, 1536))
# The ControlNets that read each condition (`spec/conditions.py`, by kind), the first the one a lesson loads.
# No ADE20K segmentation ControlNet for SDXL is published in diffusers' layout by a known maintainer: none listed.
CONDITION_CONTROLNETS = {
    "canny": (SDXL_CANNY_ID,),
    "depth": ("diffusers/controlnet-depth-sdxl-1.0",),
    "openpose": ("xinsir/controlnet-openpose-sdxl-1.0",),
    "lineart": ("TheMistoAI/MistoLine",),
}
# The pipeline's parts by role: the code outside `families/` asks for them through these names only.
DENOISER = "unet"  # the network that predicts the noise (SD3 and Flux name theirs "transformer")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
LORA_MODULES = (DENOISER, *TEXT_ENCODERS)  # where a LoRA file's layers go (diffusers' _lora_loadable_modules)
COMPONENTS = ("unet", "controlnet", "vae", "text_encoder", "text_encoder_2")
# What from_pretrained downloads, in GB (fp32 safetensors, from the model cards' file lists): SDXL base's UNet 10.3,
# text encoders 0.49 and 2.78, VAE 0.33; an SDXL ControlNet 5.0.
DOWNLOAD_GB = {SDXL_ID: 13.9, SDXL_CANNY_ID: 5.0, "diffusers/controlnet-depth-sdxl-1.0": 5.0}
# What a spec or a training run uses on each model on a GPU (`workbench.profiles` adds a lesson's settings). SDXL
# base 1.0: 1024 px from its model card, guidance 5.0 and the Euler scheduler of its pipeline's and scheduler's
# configs; LoRA as diffusers' train_dreambooth_lora_sdxl.py runs it (lr 1e-4, fp16 mixed precision, gradient
# checkpointing, gradients clipped at 1, 500 steps, batch 1 with 4 accumulation steps). Its ControlNets: Canny, depth.
PROFILES = {
    "sdxl": dict(resolution=1024, steps=30, guidance=5.0, scheduler="euler", lora_steps=500, lora_batch=4,
                 lora_lr=1e-4, mixed_precision="fp16", gradient_checkpointing=True, max_grad_norm=1.0,
                 controlnets=[SDXL_CANNY_ID, "diffusers/controlnet-depth-sdxl-1.0"], second_condition="depth"),
    # The random test model, a lesson's own: the toy's sampling defaults, a few LoRA steps, its lesson settings.
    "tiny-sdxl": dict(resolution=32, steps=20, guidance=5.0, scheduler="ddim", seeds=[0, 1], lora_steps=8,
                      lora_batch=4, lora_lr=1e-2, mixed_precision="no", gradient_checkpointing=False,
                      metrics=["edge"], report_metric="lora_effect", content_metric="edge_f1",
                      controlnets=["tiny-sdxl", "tiny-sdxl"], ranks=[1, 2], train_seeds=[0, 1], scenes=1,
                      second_condition="depth", condition_models={"depth": "tiny"}),
}
DEFAULT_PROFILE = "sdxl"
# kohya's LoRA layout (`lora/convert.py`): sd-scripts names SDXL's UNet layers by the original (SGM) model's
# input/output blocks, and its two text encoders lora_te1_ and lora_te2_.
KOHYA_SGM_UNET = True
KOHYA_TEXT_PREFIXES = {"text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}
KOHYA_BASE_VERSION = "sdxl_base_v1-0"
# Parameters of each part, in millions (configs/sdxl/, counted; a memory plan's weights)
PARAMETERS_M = {"unet": 2567.5, "text_encoder": 123.1, "text_encoder_2": 694.7, "vae": 83.7, "controlnet": 1251.0}
CROSS_ATTENTION_DIM = 2048  # both text encoders' widths side by side (configs/sdxl/unet.json)
CHECKPOINT_KEY = "conditioner.embedders.1.model.ln_final.weight"  # its second (OpenCLIP) text encoder
# The LoRA Block Weight extension's 12 SDXL blocks, as sd15.LBW_BLOCKS: (name, part, diffusers block, layer)
LBW_BLOCKS = (("BASE", "text_encoder", None, None), ("IN04", "down", 1, 0), ("IN05", "down", 1, 1),
              ("IN07", "down", 2, 0), ("IN08", "down", 2, 1), ("MID", "mid", None, None), ("OUT00", "up", 0, 0),
              ("OUT01", "up", 0, 1), ("OUT02", "up", 0, 2), ("OUT03", "up", 1, 0), ("OUT04", "up", 1, 1),
              ("OUT05", "up", 1, 2))
# A single-file checkpoint's diffusers layout (`models/single_file.py`), as sd15.SINGLE_FILE_PARTS; the second
# tokenizer pads with "!" as the base model's does. The second text encoder is read by its OpenCLIP keys.
SINGLE_FILE_PARTS = {"unet": ("diffusers", "UNet2DConditionModel"), "vae": ("diffusers", "AutoencoderKL"),
                     "text_encoder": ("transformers", "CLIPTextModel"), "tokenizer": ("transformers", "CLIPTokenizer"),
                     "text_encoder_2": ("transformers", "CLIPTextModelWithProjection"),
                     "tokenizer_2": ("transformers", "CLIPTokenizer"), "scheduler": ("diffusers", "EulerDiscreteScheduler")}
TOKENIZER_PADS = {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"}
TEXT_ENCODER_IDS = dict(bos_token_id=0, eos_token_id=2, pad_token_id=1)
OPEN_CLIP_PARTS = {"text_encoder_2": "conditioner.embedders.1.model."}  # OpenCLIP text encoders' keys in a single file
# No invisible watermark: it changes pixels, which would blur the sweep's metrics.
LOAD_KWARGS = {"add_watermarker": False}


def owns_index(model_index: dict) -> bool:
    return "text_encoder_2" in model_index or "XL" in str(model_index.get("_class_name", ""))


def owns(pipe) -> bool:
    return getattr(pipe, "text_encoder_2", None) is not None


# ---- code ---------------------------------------------------------------------------------------

def encode(pipe, prompt: str, negative: str, clip_skip: int | None = None) -> dict:
    """Both encoders' embeddings and the pooled ones, positive and negative, for one image.

    An empty negative prompt is passed as None, as a plain pipeline call does: SDXL then uses
    zeros for it (`force_zeros_for_empty_prompt`), not the encoding of "". `clip_skip` counts as A1111 does.
    """
    import torch

    from .sd15 import diffusers_clip_skip
    with torch.no_grad():
        positive, negative, pooled, negative_pooled = pipe.encode_prompt(
            prompt=prompt, device=pipe.device, num_images_per_prompt=1, do_classifier_free_guidance=True,
            negative_prompt=negative or None, clip_skip=diffusers_clip_skip(clip_skip))
    return {"prompt_embeds": positive, "negative_prompt_embeds": negative,
            "pooled_prompt_embeds": pooled, "negative_pooled_prompt_embeds": negative_pooled}


def add_time_ids(pipe, size: int, rows: int):
    """(rows, 6): original size, crop top-left (0, 0), target size, as the pipeline sets them."""
    import torch
    ids = torch.tensor([[size, size, 0, 0, size, size]], dtype=pipe.unet.dtype, device=pipe.device)
    return ids.repeat(rows, 1)


def unet_conditioning(pipe, context, rows: int) -> dict:
    """Stand-in pooled text and size ids for a bare UNet or ControlNet call on `rows` rows."""
    import torch
    size = trained_side(pipe, pipe.unet)
    pooled = torch.zeros(rows, pipe.text_encoder_2.config.projection_dim, dtype=context.dtype, device=context.device)
    return {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": add_time_ids(pipe, size, rows)}}


def loop_conditioning(pipe, embeddings: dict, rows: int, height: int, width: int) -> dict:
    """`denoise`'s conditioning on `rows` rows: both encoders' text, and what SDXL adds to it, as its pipeline does:
    the pooled text embedding and the size ids (original size and target size the image's, crop at 0, 0)."""
    import torch
    text = torch.cat([embeddings["negative_prompt_embeds"].repeat(rows, 1, 1),
                      embeddings["prompt_embeds"].repeat(rows, 1, 1)])
    pooled = torch.cat([embeddings["negative_pooled_prompt_embeds"].repeat(rows, 1),
                        embeddings["pooled_prompt_embeds"].repeat(rows, 1)])
    ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=text.dtype, device=text.device)
    return {"encoder_hidden_states": text,
            "added_cond_kwargs": {"text_embeds": pooled, "time_ids": ids.repeat(2 * rows, 1)}}


def tokenize(pipe, captions: list[str]) -> list:
    return [tokenizer(captions, padding="max_length", truncation=True, return_tensors="pt").input_ids
            for tokenizer in (pipe.tokenizer, pipe.tokenizer_2)]


def text_context(pipe, tokens: list, image_sizes: list | None = None) -> tuple:
    """(both encoders' penultimate hidden states, concatenated; pooled text and size ids) for training.

    `image_sizes` gives each row's six size ids (original height and width, crop top and left, target
    height and width), as diffusers' SDXL training script records them; None: the trained size, uncropped.
    """
    import torch
    first = pipe.text_encoder(tokens[0].to(pipe.device), output_hidden_states=True)
    second = pipe.text_encoder_2(tokens[1].to(pipe.device), output_hidden_states=True)
    context = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
    size = trained_side(pipe, pipe.unet)
    rows = len(tokens[0])
    time_ids = add_time_ids(pipe, size, rows) if image_sizes is None else \
        torch.tensor(image_sizes, dtype=pipe.unet.dtype, device=pipe.device)
    return context, {"added_cond_kwargs": {"text_embeds": second.text_embeds, "time_ids": time_ids}}


def lora_loader():
    from diffusers import StableDiffusionXLPipeline
    return StableDiffusionXLPipeline


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


def build_tiny(seed: int = 0):
    """A random-weight SDXL + ControlNet pipeline, 32 px: the shapes of diffusers' own SDXL tests.

    The UNet adds a "text_time" embedding: projection_class_embeddings_input_dim is
    6 time ids x addition_time_embed_dim (8) + the pooled text width (32) = 80, and its
    cross-attention reads both encoders' hidden states side by side (32 + 32 = 64).
    """
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from .builders import TINY_CORPUS, ModelConfig, build_scheduler, build_tokenizer, build_vae, wake_zero_convs
    cfg = ModelConfig()
    tokenizer = build_tokenizer(TINY_CORPUS, max_length=cfg.max_length)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=cfg.max_length, projection_dim=32,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    shared = dict(block_out_channels=(32, 64), layers_per_block=1, in_channels=4, attention_head_dim=(2, 4),
                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), use_linear_projection=True,
                  addition_embed_type="text_time", addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
                  projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64, norm_num_groups=8)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text))
    torch.manual_seed(seed)
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**text))
    torch.manual_seed(seed)
    vae = build_vae(cfg)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=cfg.latent_size, out_channels=4,
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), **shared)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    wake_zero_convs(controlnet, seed=seed)
    pipe = pipeline_class()(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
                            tokenizer_2=tokenizer, unet=unet, controlnet=controlnet, scheduler=build_scheduler(),
                            force_zeros_for_empty_prompt=True, **LOAD_KWARGS)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_config(name: str) -> dict:
    """An architecture config of configs/sdxl/, without its `_source` note."""
    import json
    from pathlib import Path
    folder = Path(__file__).parents[1] / "configs" / "sdxl"
    return {k: v for k, v in json.loads((folder / f"{name}.json").read_text()).items() if not k.startswith("_")}


def build_random(seed: int = 0, dtype=None, device: str = "cuda"):
    """SDXL base + Canny ControlNet at full size (2.6B UNet, 1.25B ControlNet) with random weights, on `device`.

    For speed benchmarks where the real weights cannot be downloaded: speed depends on the
    architecture, not the weights. The configs in `configs/sdxl/` are the published
    architecture values; the tokenizer is the toy world's, padded to 77 tokens. Built on
    `device` directly (about 19 GB in fp32 before the cast), so meant for a GPU.
    """
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from ..toy.world import caption_words
    from .builders import build_scheduler, build_tokenizer
    config = load_config

    tokenizer = build_tokenizer(caption_words(), max_length=77)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    with torch.device(device):
        parts = dict(text_encoder=CLIPTextModel(CLIPTextConfig(**config("text_encoder"), **ids)),
                     text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**config("text_encoder_2"), **ids)),
                     vae=AutoencoderKL(**config("vae")), unet=UNet2DConditionModel(**config("unet")),
                     controlnet=ControlNetModel(**config("controlnet")))
    parts = {name: module.to(dtype or torch.float16) for name, module in parts.items()}
    pipe = pipeline_class()(tokenizer=tokenizer, tokenizer_2=tokenizer, scheduler=build_scheduler(), **parts,
                            force_zeros_for_empty_prompt=True, **LOAD_KWARGS)
    pipe.set_progress_bar_config(disable=True)
    return pipe

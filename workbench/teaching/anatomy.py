"""Open the two boxes the workshop is about, on whatever model is loaded (lesson 00c).

ControlNet: a trainable copy of the UNet's encoder (`ControlNetModel.from_unet`), plus a small encoder that reads
the control image, joined to the frozen UNet through zero-initialised 1x1 convolutions; so a fresh one adds exactly
nothing. LoRA: a frozen weight W plus (alpha / r) * B @ A, with A (r x d_in) random and B (d_out x r) zero at the
start; so a fresh adapter is a no-op too. Each function measures the loaded model; nothing here is toy-only except
`controlnet_training_curve`, which needs the toy's data.
"""

from __future__ import annotations

import copy
import time

import pandas as pd
import torch

from ..families import controlnet_from_denoiser, denoiser, family_of, trained_size, unit_controlnets
from .explain import controlnet_residuals

ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")  # what LoRA adapts in diffusers' UNet by default
BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2}


def parameter_count(module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---- ControlNet ------------------------------------------------------------------------------------------------------

def fresh_controlnet(pipe, unit: int = 0):
    """A ControlNet copied from the pipeline's UNet (diffusers' `from_unet`), untrained: its zero convolutions
    are zero. Its control-image encoder has the loaded ControlNet's widths, which match the VAE's downscaling."""
    loaded = unit_controlnets(pipe.controlnet)[unit]
    fresh = controlnet_from_denoiser(pipe, conditioning_embedding_out_channels=tuple(
        loaded.config.conditioning_embedding_out_channels))
    fresh = fresh.to(pipe.device)
    dtype = denoiser(pipe).dtype
    return (fresh if fresh.dtype == dtype else fresh.to(dtype=dtype)).eval()


def controlnet_parts(controlnet, unet) -> pd.DataFrame:
    """Parameters of each part of a ControlNet beside the UNet's: the control-image encoder, the copied encoder
    blocks and the zero convolutions."""
    zero = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
    parts = {"control-image encoder (controlnet_cond_embedding)": parameter_count(controlnet.controlnet_cond_embedding),
             "copied UNet encoder (conv_in, time embedding, down and middle blocks)":
                 parameter_count(controlnet) - parameter_count(controlnet.controlnet_cond_embedding)
                 - sum(parameter_count(z) for z in zero),
             "zero convolutions (controlnet_down_blocks, controlnet_mid_block)": sum(parameter_count(z) for z in zero),
             "ControlNet, all": parameter_count(controlnet),
             "UNet, all (frozen)": parameter_count(unet)}
    return pd.DataFrame({"parameters": parts, "share of the UNet": {k: v / parts["UNet, all (frozen)"]
                                                                    for k, v in parts.items()}}).rename_axis("part")


def published_sizes() -> pd.DataFrame:
    """UNet and ControlNet parameters of SD1.5 and SDXL, built from the bundled configs on the meta device (no
    weights, no download)."""
    from ..families import FAMILIES
    rows = {}
    for family, unet in zip(FAMILIES, published_unets().values()):
        with torch.device("meta"):
            controlnet = family.controlnet_class()(**family.load_config("controlnet"))
        rows[family.NAME] = {"UNet (M)": parameter_count(unet) / 1e6, "ControlNet (M)": parameter_count(controlnet) / 1e6,
                             "ControlNet / UNet": parameter_count(controlnet) / parameter_count(unet)}
    return pd.DataFrame(rows).T.round(3).rename_axis("published model")


def skip_names(unet) -> list[str]:
    """The UNet outputs a ControlNet's residuals are added to, in order: conv_in, each down block's layers and
    downsampler (the skip connections the up blocks read), and the middle block."""
    names = ["conv_in"]
    for b, block in enumerate(unet.down_blocks):
        names += [f"down_blocks.{b}.resnets.{i}" for i in range(len(block.resnets))]
        names += [f"down_blocks.{b}.downsamplers.0"] if block.downsamplers else []
    return names + ["mid_block"]


def residual_joins(pipe, controlnet) -> pd.DataFrame:
    """Where each residual of `controlnet` joins the UNet: the UNet output it is added to, its resolution and channels,
    and its largest absolute value for a control image of noise (exactly 0 for an untrained ControlNet)."""
    table = controlnet_residuals(pipe, controlnet=controlnet, control="noise")
    shapes = table["residual_shape (C, H, W)"]
    return pd.DataFrame({"zero conv": table.zero_conv, "joins UNet at": skip_names(denoiser(pipe)),
                         "resolution": [f"{h} x {w}" for _, h, w in shapes], "channels": [c for c, _, _ in shapes],
                         "max |residual|": table["max_abs"]})


def without_controlnet(pipe):
    """The same model as a plain text-to-image pipeline (diffusers' AutoPipeline), sharing its weights."""
    from diffusers import AutoPipelineForText2Image
    return AutoPipelineForText2Image.from_pipe(pipe, controlnet=None)


def with_controlnet(pipe, controlnet):
    """The pipeline with `controlnet` in place of its own, sharing every other part."""
    from diffusers.utils import logging
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # its constructor repeats the safety-checker notice the loaded pipeline gave
    try:
        return type(pipe)(**{**pipe.components, "controlnet": controlnet})
    finally:
        logging.set_verbosity(verbosity)


def fresh_is_a_no_op(pipe, controlnet, control, prompt: str, steps: int, seed: int = 0) -> tuple:
    """(image with the fresh ControlNet at scale 1, image of the model without one, whether they are bit-identical),
    as float arrays: the same seed, prompt, size and steps."""
    import numpy as np
    generator = lambda: torch.Generator("cpu").manual_seed(seed)  # noqa: E731 (one fresh generator per call)
    options = dict(prompt=prompt, num_inference_steps=steps, output_type="np", height=control.height,
                   width=control.width)
    controlled = with_controlnet(pipe, controlnet)
    base = without_controlnet(pipe)  # (from_pipe builds it as diffusers does: one notice, as for any pipeline)
    # Each its own scheduler, fresh from the same config: no state carried over. An SDE sampler draws its Brownian
    # noise from a seed of its own (`noise_sampler_seed`, random when unset): both get `seed`.
    seeded = {"noise_sampler_seed": seed} if "noise_sampler_seed" in pipe.scheduler.config else {}
    for each in (controlled, base):
        each.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, **seeded)
        each.set_progress_bar_config(disable=True)
    a = controlled(image=control, controlnet_conditioning_scale=1.0, generator=generator(), **options).images[0]
    b = base(generator=generator(), **options).images[0]
    return a, b, bool(np.array_equal(a, b))


# ---- LoRA ------------------------------------------------------------------------------------------------------------

def first_projection(unet, name: str = "to_q") -> tuple[str, torch.nn.Linear]:
    """The first attention projection called `name` in the UNet, and its module path."""
    for path, module in unet.named_modules():
        if path.endswith(f".{name}") and isinstance(module, torch.nn.Linear):
            return path, module
    raise ValueError(f"no {name!r} layer in this UNet")


def lora_layer(layer: torch.nn.Linear, r: int, alpha: float, dropout: float = 0.0, use_rslora: bool = False,
               seed: int = 0):
    """A copy of `layer` with peft's LoRA applied (`LoraConfig(r, lora_alpha, target_modules=["layer"], ...)`), as
    peft wraps it inside a UNet: the original weight frozen, A and B beside it."""
    from peft import LoraConfig, inject_adapter_in_model
    holder = torch.nn.Module()
    holder.layer = copy.deepcopy(layer).float()
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=["layer"], lora_dropout=dropout, use_rslora=use_rslora)
    return inject_adapter_in_model(config, holder).layer


def lora_weights(wrapped) -> dict:
    """W, A, B and the scaling of a peft LoRA layer (adapter "default")."""
    return {"W": wrapped.base_layer.weight.detach(), "A": wrapped.lora_A["default"].weight.detach(),
            "B": wrapped.lora_B["default"].weight.detach(), "scaling": wrapped.scaling["default"]}


def adapter_parameters(unet, config) -> int:
    """The parameters peft adds to `unet`'s architecture for a LoraConfig (what training would learn), counted on a
    copy built on the meta device: no memory, whatever the model's size."""
    from peft import inject_adapter_in_model
    with torch.device("meta"):
        copied = inject_adapter_in_model(config, type(unet).from_config(unet.config))
    return sum(p.numel() for name, p in copied.named_parameters() if "lora_" in name)


def lora_parameters(d_in: int, d_out: int, r: int) -> int:
    """LoRA's parameters for one d_out x d_in weight at rank r: A is r x d_in, B is d_out x r."""
    return r * (d_in + d_out)


def projection_shapes(unet) -> list[tuple[int, int]]:
    """(d_in, d_out) of every attention projection LoRA adapts by default."""
    return [(m.in_features, m.out_features) for path, m in unet.named_modules()
            if isinstance(m, torch.nn.Linear) and path.endswith(tuple(f".{p}" for p in ATTENTION_PROJECTIONS))]


def rank_table(unets: dict, ranks=(1, 2, 4, 8, 16, 32, 64)) -> pd.DataFrame:
    """LoRA's parameters per rank on every attention projection of each UNet, against the full matrices': rows are
    ranks, columns "<model> LoRA" and "<model> % of full"."""
    columns = {}
    for name, unet in unets.items():
        shapes = projection_shapes(unet)
        full = sum(d_in * d_out for d_in, d_out in shapes)
        lora = [sum(lora_parameters(d_in, d_out, r) for d_in, d_out in shapes) for r in ranks]
        columns[f"{name}: LoRA parameters"] = lora
        columns[f"{name}: % of the full matrices"] = [round(100 * n / full, 2) for n in lora]
    return pd.DataFrame(columns, index=pd.Index(ranks, name="rank r"))


def published_unets() -> dict:
    """SD1.5's and SDXL's UNets on the meta device: their shapes, no weights."""
    from ..families import FAMILIES
    with torch.device("meta"):
        return {family.NAME: family.denoiser_class()(**family.load_config("unet")) for family in FAMILIES}


# ---- ControlNet and LoRA side by side --------------------------------------------------------------------------------

def training_step_seconds(pipe, trainable: str, controlnet=None, rank: int = 16, repeats: int = 3) -> float:
    """Seconds of one training step (batch 1, the trained size) with only a fresh ControlNet, or only a rank-`rank`
    LoRA on the UNet's attention, learning: the forward pass, the loss and the backward pass; the median of
    `repeats` after one warm-up."""
    size = trained_size(pipe)
    latent = size // pipe.vae_scale_factor
    device, dtype = pipe.device, denoiser(pipe).dtype
    unet = copy.deepcopy(denoiser(pipe)).requires_grad_(False)
    family = family_of(pipe)
    with torch.no_grad():
        context, extra = family.text_context(pipe, family.tokenize(pipe, [""]))
    context = context.to(device, dtype)
    if trainable == "lora":
        from peft import LoraConfig
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(ATTENTION_PROJECTIONS)))
        net = None
    else:
        net = copy.deepcopy(controlnet).train().requires_grad_(True)
    x = torch.randn(1, unet.config.in_channels, latent, latent, device=device, dtype=dtype)
    t = torch.tensor([500], device=device)
    control = torch.rand(1, 3, size, size, device=device, dtype=dtype)

    condition = {"encoder_hidden_states": context, **extra}

    def step():
        residuals = None if net is None else family.control_residuals(net, x, t, control, condition)
        family.predict_noise(unet, x, t, residuals, condition).float().pow(2).mean().backward()

    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return float(sorted(times[1:])[len(times[1:]) // 2])


def comparison_table(pipe, controlnet, rank: int = 16) -> pd.DataFrame:
    """ControlNet and LoRA side by side on the loaded model: what each adds, its parameters and file size (at the
    model's dtype), the seconds of one training step, and what it controls."""
    shapes = projection_shapes(denoiser(pipe))
    lora = sum(lora_parameters(d_in, d_out, rank) for d_in, d_out in shapes)
    bytes_per = BYTES.get(denoiser(pipe).dtype, 4)
    return pd.DataFrame({
        "ControlNet": {"adds": "a trainable copy of the UNet's encoder + zero convs", "parameters": parameter_count(
            controlnet), "file (MB)": round(parameter_count(controlnet) * bytes_per / 1e6, 2),
            "training step (s)": round(training_step_seconds(pipe, "controlnet", controlnet), 3),
            "controls": "where things are (edges, depth, pose): a spatial map", "starts as": "zero convs: adds 0"},
        f"LoRA (rank {rank})": {"adds": "B @ A beside each attention projection (frozen W)", "parameters": lora,
                                "file (MB)": round(lora * bytes_per / 1e6, 2),
                                "training step (s)": round(training_step_seconds(pipe, "lora", rank=rank), 3),
                                "controls": "what things look like (a style, a subject): no map",
                                "starts as": "B = 0: adds 0"}})


# ---- the toy only: a fresh ControlNet learns to follow edges ---------------------------------------------------------

def controlnet_training_curve(pipe, steps: int = 300, every: int = 50, batch_size: int = 16, lr: float = 5e-4,
                              scenes: int = 4, seed: int = 0) -> tuple:
    """Train a fresh ControlNet on the toy's Canny data (the toy pipeline: its world and captions), scoring edge F1
    on `scenes` held-out scenes at scale 1 every `every` steps. Returns (table of step, loss, edge_f1; the trained
    ControlNet). ControlNet's paper calls the jump from ignoring the edges to following them sudden convergence."""
    from ..metrics.scorers import image_metrics
    from ..toy.data import make_dataset
    from ..toy.train import TrainConfig, controlnet_predictor, diffusion_loss, latent_means
    from ..engine.generation import generate
    size = trained_size(pipe)
    controlnet = fresh_controlnet(pipe).train().requires_grad_(True)
    unet, text_encoder = denoiser(pipe).requires_grad_(False), pipe.text_encoder.requires_grad_(False)
    data = make_dataset(256, seed=seed + 1000, size=size)
    held_out = make_dataset(scenes, seed=seed + 2000, size=size)
    with torch.no_grad():
        latents = latent_means(pipe.vae, data.images.to(pipe.device))
        ids = pipe.tokenizer([s.caption for s in data.scenes], padding="max_length", truncation=True,
                             return_tensors="pt").input_ids.to(pipe.device)
        contexts = text_encoder(ids)[0]
    cfg = TrainConfig(batch_size=batch_size)
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)

    predict = controlnet_predictor(unet, controlnet)  # as the toy's own ControlNets were trained

    learner = with_controlnet(pipe, controlnet)  # the pipeline that draws with the ControlNet being trained
    learner.set_progress_bar_config(disable=True)

    def edge_f1() -> float:
        controlnet.eval()
        scores = []
        for scene, control in zip(held_out.scenes, held_out.controls):
            edges = to_image(control)
            image = generate(learner, scene.caption, edges, seeds=[0], scale=1.0)[0]
            scores.append(image_metrics(edges, image, 100, 200)["edge_f1"])
        controlnet.train()
        return float(sum(scores) / len(scores))

    rows = [{"step": 0, "loss": float("nan"), "edge_f1": edge_f1()}]
    losses = []
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(latents), (batch_size,), generator=generator)
        control = data.controls[idx].to(pipe.device).float().div(255).expand(-1, 3, -1, -1)
        loss = diffusion_loss(cfg, pipe.scheduler, predict, latents[idx], generator, context=contexts[idx],
                              control=control)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if step % every == 0:
            rows.append({"step": step, "loss": sum(losses[-every:]) / every, "edge_f1": edge_f1()})
    return pd.DataFrame(rows), controlnet.eval().requires_grad_(False)


def to_image(control: torch.Tensor):
    """A (1, H, W) uint8 edge map as an RGB PIL image."""
    from PIL import Image
    edges = control[0].cpu().numpy()
    return Image.fromarray(edges).convert("RGB")

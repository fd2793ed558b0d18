"""Memory plans (issue #40, item 2): which plan each card gets, checked on the CPU; VAE slicing gives the same images,
tiling (forced to small tiles at the tiny model's size) close ones; the profile and load_pipeline carry the plan."""

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.families import sd15, sdxl
from workbench.models.control import control_for
from workbench.models.memory_plan import half_dtype, memory_plan

CAPTION = "a red circle on a blue background"
T4, A100 = (7, 5), (8, 0)


def test_the_published_parameter_counts_are_the_configs():
    from diffusers import ControlNetModel, UNet2DConditionModel
    for family in (sd15, sdxl):
        with torch.device("meta"):
            unet = UNet2DConditionModel(**family.load_config("unet"))
            net = ControlNetModel(**family.load_config("controlnet"))
        for name, model in (("unet", unet), ("controlnet", net)):
            millions = sum(p.numel() for p in model.parameters()) / 1e6
            assert abs(millions - family.PARAMETERS_M[name]) < 1, (family.NAME, name, millions)


def test_bf16_only_from_compute_capability_8():
    assert half_dtype(T4) == "fp16" and half_dtype((7, 0)) == "fp16"  # V100, T4: bf16 is emulated there
    assert half_dtype(A100) == "bf16" and half_dtype((8, 6)) == "bf16" and half_dtype((9, 0)) == "bf16"


@pytest.mark.parametrize("family,nets,size,card,offload", [
    (sdxl, 2, 1024, 8, "model"),    # about 12 GB of weights: offload, instead of failing at pipe.to
    (sdxl, 2, 1024, 12, "model"),
    (sdxl, 2, 1024, 24, None),
    (sdxl, 1, 1024, 12, None),
    (sd15, 1, 512, 8, None),
    (sd15, 2, 512, 4, "model"),
])
def test_each_card_gets_the_plan_its_memory_allows(family, nets, size, card, offload):
    plan = memory_plan(family, nets, size, A100, card)
    assert plan.offload == offload, str(plan)
    assert plan.max_batch >= 1 and plan.dtype == "bf16"
    big = memory_plan(family, nets, size, A100, 80)
    assert big.offload is None and big.max_batch >= plan.max_batch


def test_sdxl_at_1024_on_an_8_gb_t4_offloads_and_decodes_in_tiles():
    plan = memory_plan(sdxl, 2, 1024, T4, 8)
    assert (plan.dtype, plan.offload, plan.vae_tiling) == ("fp16", "model", True) and plan.max_batch <= 2
    assert plan.weights_gb == pytest.approx(11.1, abs=0.3)  # 5.97 B parameters in 2 bytes: the "about 12 GB"
    assert plan.decode_gb == pytest.approx(2.0, abs=0.7)    # "about 2 GB per image" at 1024^2


def test_the_profile_carries_the_plan_of_the_card(monkeypatch):
    from workbench.models import profiles
    monkeypatch.setattr(profiles, "gpu_facts", lambda device: (T4, 16.0))  # a T4, without a GPU here
    p = wb.profile("sdxl", "cuda")
    assert (p.dtype, p.offload) == ("fp16", None) and p.max_batch >= 1
    small = wb.profile("sdxl", "cuda", memory_gb=8)
    assert small.offload == "model" and small.vae_tiling and small.max_batch <= 2
    cpu = wb.profile("sdxl", "cpu")
    assert (cpu.dtype, cpu.offload, cpu.vae_slicing, cpu.vae_tiling) == ("fp32", None, False, False)


def images(pipe, seeds=(0, 1)):
    control = control_for(f"toy:{CAPTION}", 32)
    return np.stack([np.asarray(i, np.int16) for i in wb.generate(pipe, CAPTION, control, list(seeds), steps=2)])


def test_vae_slicing_draws_the_same_images(tiny_pipe):
    plain = images(tiny_pipe)
    tiny_pipe.vae.enable_slicing()
    try:
        sliced = images(tiny_pipe)
    finally:
        tiny_pipe.vae.disable_slicing()
    assert np.abs(sliced - plain).max() <= 1  # one image at a time through the same decoder: at most rounding


def test_vae_tiling_forced_to_small_tiles_draws_close_images(tiny_pipe):
    """Tiles of 24 px over a 32 px image, blended where they overlap: not exact. Mean within 8 grey levels (0-255; 5.5 measured here)."""
    plain = images(tiny_pipe, seeds=(0,))
    vae = tiny_pipe.vae
    saved = (vae.tile_sample_min_size, vae.tile_latent_min_size)
    vae.enable_tiling()
    vae.tile_sample_min_size, vae.tile_latent_min_size = 24, 12
    try:
        tiled = images(tiny_pipe, seeds=(0,))
    finally:
        vae.disable_tiling()
        vae.tile_sample_min_size, vae.tile_latent_min_size = saved
    difference = np.abs(tiled - plain)
    assert 0 < difference.mean() <= 8, difference.mean()  # tiling did act (5.5 here), and stays close


def test_a_plan_is_applied_to_the_pipeline_and_caps_the_auto_batch(tiny_pipe, tmp_path, monkeypatch):
    from workbench.engine import run as run_module
    from workbench.models.memory_plan import MemoryPlan
    from workbench.models.pipeline import apply_plan
    plan = MemoryPlan("fp16", None, vae_slicing=True, vae_tiling=True, max_batch=2, weights_gb=0.0, step_gb=0.0,
                      decode_gb=0.0)
    try:
        assert apply_plan(tiny_pipe, plan, torch.device("cpu")) is tiny_pipe
        assert tiny_pipe.vae.use_slicing and tiny_pipe.vae.use_tiling and tiny_pipe.workbench_plan is plan
        sizes, real = [], run_module.call_pipeline
        monkeypatch.setattr(run_module, "call_pipeline", lambda pipe, params, trials, *a, **k: (
            sizes.append(len(trials)), real(pipe, params, trials, *a, **k))[1])
        spec = {"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 1,
                "seed": [0, 1, 2, 3, 4]}
        wb.run_sweep(tiny_pipe, spec, tmp_path / "run", log=lambda *_: None)
        assert sizes == [2, 2, 1]  # "auto" (16 on a CPU) capped by the plan
    finally:
        tiny_pipe.vae.disable_slicing(), tiny_pipe.vae.disable_tiling()
        tiny_pipe.workbench_plan = None

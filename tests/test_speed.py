"""The GPU settings of workbench.speed, checked on the CPU where they can be (a fresh tiny pipeline each)."""

import numpy as np
import pytest
import torch

from workbench.speed import (CPU_BATCH, auto_batch_size, compile_pipeline, is_compiled, upcast_vae, use_channels_last,
                             use_sdpa)
from workbench.families.sd15 import build_tiny_pipeline


@pytest.fixture
def fresh_pipe():
    return build_tiny_pipeline(seed=0)


def test_upcast_vae_decodes_half_latents_in_fp32(fresh_pipe):
    vae = fresh_pipe.vae
    latents = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    vae.to(torch.float16)
    upcast_vae(fresh_pipe)
    assert vae.dtype == torch.float32
    with torch.no_grad():
        from_half = vae.decode(latents.half()).sample  # what an fp16 pipeline hands the VAE
        from_float = vae.decode(latents.half().float()).sample
    assert from_half.dtype == torch.float32 and torch.isfinite(from_half).all()
    torch.testing.assert_close(from_half, from_float)


def test_upcast_vae_leaves_an_fp32_vae_alone(fresh_pipe):
    hooks_before = len(fresh_pipe.vae.post_quant_conv._forward_pre_hooks)
    upcast_vae(fresh_pipe)
    assert len(fresh_pipe.vae.post_quant_conv._forward_pre_hooks) == hooks_before


def test_sdpa_is_restored(fresh_pipe):
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
    fresh_pipe.unet.set_attn_processor(AttnProcessor())
    use_sdpa(fresh_pipe)
    for model in (fresh_pipe.unet, fresh_pipe.controlnet):
        assert all(isinstance(p, AttnProcessor2_0) for p in model.attn_processors.values())


def test_channels_last_keeps_the_images(fresh_pipe, square_control):
    from workbench.generation import generate
    before = generate(fresh_pipe, "a red circle", square_control, seeds=[0], steps=2, output_type="np")
    use_channels_last(fresh_pipe)
    weight = fresh_pipe.unet.conv_in.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    after = generate(fresh_pipe, "a red circle", square_control, seeds=[0], steps=2, output_type="np")
    np.testing.assert_allclose(np.asarray(after), np.asarray(before), atol=1e-4)


def test_auto_batch_size_on_the_cpu(fresh_pipe):
    assert auto_batch_size(fresh_pipe, 32) == CPU_BATCH
    assert auto_batch_size(fresh_pipe, 32, limit=4) == 4


def test_compile_flag_marks_the_modules(fresh_pipe):
    assert not is_compiled(fresh_pipe)
    compile_pipeline(fresh_pipe)  # lazy: nothing compiles until the first call
    assert is_compiled(fresh_pipe)
    assert type(fresh_pipe.unet).__name__ == "UNet2DConditionModel" and fresh_pipe.unet.config.sample_size > 0


@pytest.mark.slow
def test_compiled_pipeline_matches_eager(fresh_pipe, square_control):
    from workbench.generation import generate
    eager = generate(fresh_pipe, "a red circle", square_control, seeds=[0, 1], steps=2, output_type="np")
    compile_pipeline(fresh_pipe)
    compiled = generate(fresh_pipe, "a red circle", square_control, seeds=[0, 1], steps=2, output_type="np")
    np.testing.assert_allclose(np.asarray(compiled), np.asarray(eager), atol=1e-3)

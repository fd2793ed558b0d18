"""What only a CUDA device can check: fp16 VAE decode, bf16 default, compile, the auto batch size.

Marked `gpu`: `make test` leaves them out, `make gpu-check` runs them; on a machine without
CUDA they are skipped with that reason.
"""

import numpy as np
import pytest
import torch

from tolerance import assert_images_close

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run make gpu-check there)")]
CAPTION = "a red circle on a blue background"


@pytest.fixture(scope="module")
def sd15_half():
    """SD1.5's architecture, random weights, fp16 on the GPU, with load_pipeline's GPU settings."""
    from workbench.families.sd15 import build_random as build_sd15_random
    from workbench.speed import optimize_for_gpu
    pipe = build_sd15_random(dtype=torch.float16).to("cuda")
    optimize_for_gpu(pipe)
    return pipe


def test_auto_dtype_is_bf16_or_fp16_on_cuda():
    from workbench import pick_dtype
    assert pick_dtype("auto", torch.device("cuda")) in (torch.bfloat16, torch.float16)


def test_fp16_pipeline_decodes_in_fp32_and_gives_finite_images(sd15_half):
    from workbench.control import control_for
    from workbench.sweep import image_flag
    assert sd15_half.vae.dtype == torch.float32 and sd15_half.unet.dtype == torch.float16
    control = control_for(f"toy:{CAPTION}", 512, 100, 200)
    images = sd15_half([CAPTION] * 2, image=control, num_inference_steps=2, output_type="np",
                       generator=[torch.Generator().manual_seed(s) for s in (0, 1)]).images
    assert images.shape == (2, 512, 512, 3) and [image_flag(i) for i in images] == ["", ""]


def test_fp32_decode_of_half_latents_matches_a_float_vae(sd15_half):
    latents = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(0)).to("cuda", torch.float16)
    with torch.no_grad():
        upcast = sd15_half.vae.decode(latents / sd15_half.vae.config.scaling_factor).sample
        reference = sd15_half.vae.float().decode(latents.float() / sd15_half.vae.config.scaling_factor).sample
    torch.testing.assert_close(upcast, reference, atol=1e-3, rtol=1e-3)


def test_auto_batch_size_fills_free_memory(sd15_half):
    from workbench.memory import HEADROOM
    from workbench.speed import auto_batch_size, image_memory
    batch = auto_batch_size(sd15_half, 512)
    per_image = image_memory(sd15_half, 512)
    free, _ = torch.cuda.mem_get_info()
    assert 1 <= batch <= 64 and per_image > 0
    assert batch == 64 or batch * per_image <= 1.05 * HEADROOM * free  # what fits, capped at 64


def test_sweep_with_auto_batch_logs_it_and_matches_lone_images(tmp_path):
    from workbench import generate, load_pipeline, run_sweep
    from workbench.spec import spec_from_dict
    from workbench.control import control_for
    pipe = load_pipeline("toy", device="cuda")
    messages = []
    spec = spec_from_dict({"model": "toy", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 4,
                           "conditioning_scale": [1.0], "seed": [0, 1, 2]})
    table = run_sweep(pipe, spec, tmp_path, log=messages.append)
    assert (table.state == "COMPLETE").all() and any("from free GPU memory" in m for m in messages)
    control = control_for(f"toy:{CAPTION}", 64, 100, 200)
    [alone] = generate(pipe, CAPTION, control, seeds=[1], steps=4, guidance=5.0)
    assert_images_close(alone, table[table.seed == 1].image_path.iloc[0], "GPU batch of 3 against alone")


def test_compiled_matches_eager_on_cuda():
    from workbench import generate, load_pipeline
    from workbench.speed import compile_pipeline
    from workbench.control import control_for
    pipe = load_pipeline("toy", device="cuda", dtype="fp32")
    control = control_for(f"toy:{CAPTION}", 64, 100, 200)
    eager = generate(pipe, CAPTION, control, seeds=[0, 1], steps=4, output_type="np")
    compile_pipeline(pipe)
    compiled = generate(pipe, CAPTION, control, seeds=[0, 1], steps=4, output_type="np")
    np.testing.assert_allclose(np.asarray(compiled), np.asarray(eager), atol=2e-3)


# ---- what issue #40 built, for the first lent GPU to measure (written on a CPU machine, never run yet) ----

def test_the_profile_plans_this_card_and_picks_its_dtype():
    from workbench import pick_dtype, profile
    from workbench.models.profiles import gpu_facts
    capability, total = gpu_facts("cuda")
    plan = profile("sdxl", "cuda")
    expected = "bf16" if tuple(capability) >= (8, 0) else "fp16"
    assert plan.dtype == expected == {torch.bfloat16: "bf16", torch.float16: "fp16"}[pick_dtype("auto",
                                                                                                 torch.device("cuda"))]
    print(f"\n{torch.cuda.get_device_name()} ({total:.0f} GB, capability {capability}): sdxl plan "
          f"offload={plan.offload} slicing={plan.vae_slicing} tiling={plan.vae_tiling} max_batch={plan.max_batch}")


def test_vae_slicing_gives_the_same_images_on_cuda():
    from workbench import generate, load_pipeline
    from workbench.models.control import control_for
    pipe = load_pipeline("tiny", device="cuda")
    control = control_for(f"toy:{CAPTION}", 32)
    plain = np.stack([np.asarray(i, np.int16) for i in generate(pipe, CAPTION, control, [0, 1], steps=2)])
    pipe.vae.enable_slicing()
    sliced = np.stack([np.asarray(i, np.int16) for i in generate(pipe, CAPTION, control, [0, 1], steps=2)])
    assert np.abs(sliced - plain).max() <= 1


def test_a_v_prediction_training_step_in_mixed_precision(tmp_path):
    from workbench import load_pipeline
    from workbench.lora import train_lora
    from workbench.lora.files import read_lora_metadata
    from workbench.toy.data import make_dataset
    pipe = load_pipeline("tiny", device="cuda", dtype="fp32")
    pipe.scheduler.register_to_config(prediction_type="v_prediction")
    precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    path = train_lora(pipe, make_dataset(4, size=32), rank=2, steps=3, batch_size=2, out_dir=tmp_path, load=False,
                      mixed_precision=precision, max_grad_norm=1.0, noise_offset=0.05, lr_warmup_steps=2)
    assert read_lora_metadata(path)["prediction_type"] == "v_prediction"


def test_a_kohya_export_trained_on_cuda_loads_through_diffusers(tmp_path):
    from workbench import generate, load_pipeline
    from workbench.lora import train_lora
    from workbench.lora.adapters import activate_lora
    from workbench.models.control import control_for
    from workbench.toy.data import make_dataset
    pipe = load_pipeline("tiny", device="cuda")
    path = train_lora(pipe, make_dataset(4, size=32), rank=2, steps=3, batch_size=2, out_dir=tmp_path,
                      adapter_name="ours", format="kohya")
    control = control_for(f"toy:{CAPTION}", 32)
    activate_lora(pipe, "ours", 1.0)
    ours = np.asarray(generate(pipe, CAPTION, control, [0], steps=2)[0], np.int16)
    pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name="theirs")  # diffusers' kohya reader
    activate_lora(pipe, "theirs", 1.0)
    theirs = np.asarray(generate(pipe, CAPTION, control, [0], steps=2)[0], np.int16)
    assert np.abs(ours - theirs).mean() <= 1.0


def test_a_compiled_sweep_on_cuda_swaps_adapters_and_weights_without_a_recompile(tmp_path):
    """#40 item 4 on a GPU, with inductor: 2 adapters x 2 weights x 2 scales compile the UNet and ControlNet once."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from lora_files import write_kohya
    from workbench import load_pipeline, run_sweep
    from workbench.speed import compile_pipeline
    pipe = load_pipeline("tiny", device="cuda", dtype="fp32")
    for name, rank in (("a", 2), ("b", 4)):
        write_kohya(pipe, tmp_path / f"{name}.safetensors", rank=rank, alpha=2.0, text=False, seed=rank)
    torch._dynamo.reset()
    counters.clear()
    compile_pipeline(pipe)
    table = run_sweep(pipe, {"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 4,
                             "adapters": {n: str(tmp_path / f"{n}.safetensors") for n in ("a", "b")},
                             "adapter": ["a", "b"], "lora_weight": [0.5, 1.0], "conditioning_scale": [0.5, 1.0],
                             "metrics": False}, tmp_path / "run", log=print)
    assert len(table) == 8 and (table.state == "COMPLETE").all()
    assert counters["frames"]["ok"] == 2, dict(counters["frames"])

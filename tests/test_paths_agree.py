"""One trial of a sweep draws what `wb.generate` draws with the same settings (issue #36's matrix).

On `tiny` and `tiny-sdxl`, with and without shared prefixes (the engine's own loop, `denoise.py`,
against one pipeline call per batch), over: a kohya adapter with a text-encoder part (SDXL: both
`lora_te1_` and `lora_te2_`) at two weights; an empty and a non-empty negative prompt; a schedule;
and a ControlNet whose config pools its conditions (guess mode). Batches differ between the two
paths, so images agree within the suite's tolerance (`tolerance.py`), not bit for bit.
"""

from contextlib import contextmanager

import pytest
from PIL import Image

from workbench import generate, run_sweep
from workbench.control import control_for
from workbench.families import unit_controlnets
from workbench.lora import activate_lora, unload_adapter

from lora_files import write_kohya
from tolerance import assert_images_close

PROMPT, SOURCE, STEPS = "a red circle on a blue background", "toy:a red circle on a blue background", 3
FAMILIES = {"tiny_pipe": "tiny", "tiny_sdxl_pipe": "tiny-sdxl"}


@contextmanager
def pooled_conditions(pipe):
    """The pipeline's ControlNet as a shuffle ControlNet's config makes it: conditions pooled, so guess mode is on."""
    net = unit_controlnets(pipe.controlnet)[0]
    net.register_to_config(global_pool_conditions=True)
    try:
        yield pipe
    finally:
        net.register_to_config(global_pool_conditions=False)


def swept(pipe, model: str, axes: dict, folder, share_prefix: bool) -> dict:
    """{(adapter, weight, negative prompt, schedule): image} of one sweep in a fresh folder."""
    spec = {"model": model, "prompt": [PROMPT], "control_image": SOURCE, "steps": [STEPS], "seed": [0], **axes}
    table = run_sweep(pipe, spec, folder, share_prefix=share_prefix, log=lambda *_: None)
    return {(r.adapter, r.lora_weight, r.negative_prompt, r.control_schedule): Image.open(r.image_path).convert("RGB")
            for r in table.itertuples()}


def drawn(pipe, *trial):
    """The same trial by `wb.generate`, the adapter switched on as a user would ("pooled": a pooled-ControlNet trial)."""
    *_, adapter, weight, negative, schedule = trial
    activate_lora(pipe, adapter, weight)
    return generate(pipe, PROMPT, control_for(SOURCE, 32), 0, steps=STEPS, negative_prompt=negative,
                    schedule=schedule)[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_sweep_trial_equals_generate(family, request, tmp_path):
    pipe, model = request.getfixturevalue(family), FAMILIES[family]
    write_kohya(pipe, tmp_path / "ut.safetensors", text=True, seed=3, text_std=0.5)
    request.addfinalizer(lambda: unload_adapter(pipe, "ut"))
    axes = {"adapters": {"ut": str(tmp_path / "ut.safetensors")}, "adapter": ["ut"], "lora_weight": [0.5, 1.0],
            "negative_prompt": ["", "blurry, low quality"], "control_schedule": ["constant", "linear"]}
    pooled_axes = {"control_schedule": ["constant", "linear"]}
    expected = {}  # generate's images, drawn once for both sweeps

    def direct(*trial):
        if trial not in expected:
            expected[trial] = drawn(pipe, *trial)
        return expected[trial]

    for share_prefix in (False, True):
        images = swept(pipe, model, axes, tmp_path / f"lora-{share_prefix}", share_prefix)
        assert len(images) == 8
        for (adapter, weight, negative, schedule), image in images.items():
            assert_images_close(image, direct(adapter, weight, negative, schedule),
                                f"{model}, share_prefix={share_prefix}: {adapter} at {weight}, "
                                f"negative {negative!r}, schedule {schedule}")
        with pooled_conditions(pipe):
            images = swept(pipe, model, pooled_axes, tmp_path / f"pooled-{share_prefix}", share_prefix)
            for (_, _, negative, schedule), image in images.items():
                assert_images_close(image, direct("pooled", None, 0.0, negative, schedule),
                                    f"{model}, share_prefix={share_prefix}, pooled ControlNet, schedule {schedule}")


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_and_a_sweep_draw_through_one_engine_function_bit_for_bit(family, request, tmp_path, monkeypatch):
    """`generate` is a one-batch plan over the sweep's engine (`run.generate_batch`): one image each way, the same
    batch of one, so the same pixels exactly (the same process, threads and batch: no tolerance needed)."""
    import numpy as np

    from workbench.engine import run as run_module
    from workbench.pipeline import set_scheduler
    pipe, model = request.getfixturevalue(family), FAMILIES[family]
    calls, real = [], run_module.generate_batch
    monkeypatch.setattr(run_module, "generate_batch", lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    set_scheduler(pipe, "ddim")  # the sweep sets its spec's sampler; generate draws with the pipeline's
    image = generate(pipe, PROMPT, control_for(SOURCE, 32), 0, steps=STEPS, scale=0.7, schedule="linear",
                     negative_prompt="blurry")[0]
    spec = {"model": model, "prompt": [PROMPT], "control_image": SOURCE, "steps": [STEPS], "seed": [0],
            "conditioning_scale": [0.7], "control_schedule": ["linear"], "negative_prompt": ["blurry"],
            "scheduler": ["ddim"]}
    table = run_sweep(pipe, spec, tmp_path / "one", log=lambda *_: None)
    assert calls == [1, 1]  # generate, then the sweep: each a batch of one through the same function
    swept = Image.open(table.image_path[0]).convert("RGB")
    assert np.array_equal(np.asarray(swept), np.asarray(image))

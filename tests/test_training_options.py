"""LoRA training as the reference scripts do it (issue #40, item 5): v-prediction targets, gradient clipping, noise
offset, learning-rate warm-up, the 8-bit optimizer's refusal without bitsandbytes; on tiny and tiny-sdxl."""

import pytest
import torch

from workbench.families import preset_family
from workbench.lora import train_lora
from workbench.lora.files import read_lora_metadata
from workbench.lora.prepare import training_target, warmup_factor
from workbench.lora.train import noise_scheduler
from workbench.toy.data import make_dataset


@pytest.fixture(scope="module", params=["tiny", "tiny-sdxl"])
def pipe(request):
    return preset_family(request.param).build_tiny(seed=0)


def test_the_target_is_v_for_a_v_prediction_scheduler():
    from diffusers import DDPMScheduler
    sample, noise, t = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), torch.tensor([10, 900])
    eps = DDPMScheduler(prediction_type="epsilon")
    v = DDPMScheduler(prediction_type="v_prediction")
    assert torch.equal(training_target(eps, sample, noise, t), noise)
    a = v.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert torch.allclose(training_target(v, sample, noise, t), a.sqrt() * noise - (1 - a).sqrt() * sample)


def test_a_v_prediction_model_trains_for_v_and_says_so(pipe, tmp_path):
    pipe.scheduler.register_to_config(prediction_type="v_prediction")
    try:
        assert noise_scheduler(pipe).config.prediction_type == "v_prediction"
        path = train_lora(pipe, make_dataset(2, size=32), rank=1, steps=2, batch_size=2, out_dir=tmp_path,
                          load=False, snr_gamma=5.0)
        assert read_lora_metadata(path)["prediction_type"] == "v_prediction"
    finally:
        pipe.scheduler.register_to_config(prediction_type="epsilon")


def test_clipping_offset_and_warmup_change_the_adapter_and_are_recorded(pipe, tmp_path, monkeypatch):
    norms = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, max_norm: norms.append(max_norm) or real(
        params, max_norm))
    data = make_dataset(2, size=32)
    plain = train_lora(pipe, data, rank=1, steps=3, batch_size=2, out_dir=tmp_path / "plain", load=False)
    tuned = train_lora(pipe, data, rank=1, steps=3, batch_size=2, out_dir=tmp_path / "tuned", load=False,
                       max_grad_norm=1.0, noise_offset=0.1, lr_warmup_steps=2)
    assert norms == [1.0, 1.0, 1.0]  # clipped at every step
    meta = read_lora_metadata(tuned)
    assert (meta["max_grad_norm"], meta["noise_offset"], meta["lr_warmup_steps"]) == (1.0, 0.1, 2)
    assert "max_grad_norm" not in read_lora_metadata(plain)  # defaults stay out: older cache keys hold
    from safetensors.torch import load_file
    a, b = load_file(str(plain)), load_file(str(tuned))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_warmup_rises_linearly_then_holds():
    assert [warmup_factor(step, 4) for step in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0


def test_bad_options_are_one_line(tmp_path):
    pipe = preset_family("tiny").build_tiny(seed=0)
    data = make_dataset(2, size=32)
    for bad, match in (({"max_grad_norm": 0}, "max_grad_norm"), ({"noise_offset": 2}, "noise_offset"),
                       ({"lr_warmup_steps": -1}, "lr_warmup_steps"), ({"optimizer": "sgd"}, "optimizer")):
        with pytest.raises(ValueError, match=match):
            train_lora(pipe, data, rank=1, steps=1, out_dir=tmp_path, load=False, **bad)
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="needs bitsandbytes"):
            train_lora(pipe, data, rank=1, steps=1, out_dir=tmp_path, load=False, optimizer="adamw8bit")


def test_a_text_encoder_lora_trains_beside_the_unets_and_loads_back(pipe, tmp_path):
    """`train_text_encoder=True` adapts every text encoder (SD1.5's one, SDXL's two) at the adapter's rank, encodes
    the captions afresh each step (caption dropout included), saves their layers, and leaves the pipeline as found."""
    from safetensors import safe_open

    from workbench.families import family_of
    from workbench.lora import load_lora, unload_adapter
    encoders = family_of(pipe).TEXT_ENCODERS
    path = train_lora(pipe, make_dataset(2, size=32), rank=2, steps=3, batch_size=2, lr=1e-2, out_dir=tmp_path,
                      load=False, train_text_encoder=True, caption_dropout=0.5)
    with safe_open(str(path), framework="pt") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    for component in ("unet", *encoders):
        ups = [t for k, t in tensors.items() if k.startswith(component + ".") and (".up." in k or "lora_B" in k)]
        assert ups and any(t.abs().sum() > 0 for t in ups), component  # B starts at zero: it learned
    assert read_lora_metadata(path)["train_text_encoder"] is True
    from workbench.lora import inspect_lora_file  # diffusers names a text encoder's layers lora_linear_layer.down/up
    assert inspect_lora_file(path)["layers"] == sum(k.endswith((".down.weight", "lora_A.weight")) for k in tensors)
    assert not any(getattr(getattr(pipe, c), "peft_config", None) for c in ("unet", *encoders))
    load_lora(pipe, path, "with-text")
    try:
        carriers = pipe.get_list_adapters()
        assert all("with-text" in carriers.get(c, []) for c in ("unet", *encoders)), carriers
    finally:
        unload_adapter(pipe, "with-text")
    kohya = train_lora(pipe, make_dataset(2, size=32), rank=2, steps=1, batch_size=2, out_dir=tmp_path / "kohya",
                       load=False, train_text_encoder=True, format="kohya")  # A1111's layout: lora_te_ or te1/te2
    with safe_open(str(kohya), framework="pt") as f:
        prefixes = {key.split("_")[1] if key.startswith("lora_te") else "unet" for key in f.keys()}
    assert prefixes == ({"unet", "te"} if len(encoders) == 1 else {"unet", "te1", "te2"})

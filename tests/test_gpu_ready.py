"""Ready for the user's GPU, checked on the CPU (issue #40): the dtype a card gets, fingerprints kept, not re-hashed."""

import hashlib

import pytest
import torch

from workbench.models.devices import pick_dtype
from workbench.models.fingerprint import forget_fingerprint, module_fingerprint


@pytest.mark.parametrize("card, capability, expected", [("T4", (7, 5), torch.float16), ("V100", (7, 0), torch.float16),
                                                        ("A100", (8, 0), torch.bfloat16), ("H100", (9, 0), torch.bfloat16)])
def test_auto_dtype_follows_the_asked_cards_compute_capability(monkeypatch, card, capability, expected):
    """bf16 only where the card computes it natively; `is_bf16_supported` says True on a T4 too, so it is not asked."""
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: pytest.fail("emulated bf16 counts as support"))
    assert pick_dtype("auto", torch.device("cuda:1")) == expected, card
    assert asked == [torch.device("cuda:1")]  # the card asked for, not the current one


def fresh_fingerprint(module) -> str:
    """The fingerprint as it was computed before it was kept: every tensor hashed, in order of the module's names."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if "lora_" in name:
            continue
        digest.update(name.replace(".base_layer", "").encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def test_a_fingerprint_is_kept_while_the_weights_stay_and_never_changes_value(tiny_pipe, tmp_path):
    from workbench.lora import load_lora, unload_adapter
    from lora_files import write_kohya
    unet = tiny_pipe.unet
    forget_fingerprint(unet)
    first = module_fingerprint(unet)
    assert first == fresh_fingerprint(unet) == module_fingerprint(unet)  # the kept value is the hashed one
    write_kohya(tiny_pipe, tmp_path / "ut.safetensors")
    load_lora(tiny_pipe, tmp_path / "ut.safetensors", "kept", replace=True)  # peft renames layers: same weights
    try:
        assert module_fingerprint(unet) == first == fresh_fingerprint(unet)
    finally:
        unload_adapter(tiny_pipe, "kept")
    weight = unet.conv_in.weight
    original = weight.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)  # an in-place write bumps the version counter: hashed again
        changed, expected = module_fingerprint(unet), fresh_fingerprint(unet)
        weight.copy_(original)  # the shared pipeline's weights exactly as they were
    assert changed != first and changed == expected
    assert module_fingerprint(unet) == first == fresh_fingerprint(unet)


def test_fusing_a_lora_writes_weights_behind_the_counter_and_forgets_the_fingerprint(tiny_pipe, tmp_path):
    """peft fuses with `weight.data += delta`, which no version counter sees; `fused_lora` drops the kept value."""
    from workbench.lora import fused_lora, load_lora, unload_adapter
    from lora_files import write_kohya
    write_kohya(tiny_pipe, tmp_path / "u.safetensors", text=False, unet_std=0.5)
    load_lora(tiny_pipe, tmp_path / "u.safetensors", "fusing", replace=True)
    try:
        base = module_fingerprint(tiny_pipe.unet)
        with fused_lora(tiny_pipe, {"fusing": 1.0}):
            fused = module_fingerprint(tiny_pipe.unet)
            assert fused != base and fused == fresh_fingerprint(tiny_pipe.unet)
        assert module_fingerprint(tiny_pipe.unet) == fresh_fingerprint(tiny_pipe.unet)
    finally:
        unload_adapter(tiny_pipe, "fusing")

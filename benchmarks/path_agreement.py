"""Do a sweep and `wb.generate` draw the same image for the same settings? Grey-level differences per case.

    python benchmarks/path_agreement.py            # tiny and tiny-sdxl, 4 steps, 32 px

Cases (issue #36): a kohya LoRA with a text-encoder part ("ut") against the same UNet part alone
("u"); an empty negative prompt; a ControlNet whose config pools its conditions (guess mode),
drawn by the engine's own loop (shared prefixes). Each line gives the mean and the largest
difference in grey levels (0-255) between the two images it names.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import workbench as wb  # noqa: E402
from workbench.control import control_for  # noqa: E402
from workbench.families import sdxl  # noqa: E402
from workbench.lora import activate_lora  # noqa: E402
from workbench.families.sd15 import build_tiny_pipeline  # noqa: E402
from lora_files import write_kohya  # noqa: E402

PROMPT, SOURCE, STEPS = "a red circle on a blue background", "toy:a red circle on a blue background", 4


def levels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def difference(a, b) -> str:
    d = np.abs(levels(a) - levels(b))
    return f"mean {d.mean():6.2f}  max {d.max():4d}"


def sweep_images(pipe, spec: dict, folder: Path, **kwargs) -> dict:
    """{(adapter, weight, negative, end): image} of a sweep of `spec` in a fresh folder."""
    model = "tiny-sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "tiny"
    table = wb.run_sweep(pipe, {"model": model, "prompt": [PROMPT], "control_image": SOURCE, "steps": [STEPS],
                                "seed": [0], **spec}, folder, log=lambda *_: None, **kwargs)
    from PIL import Image
    return {(r.adapter, r.lora_weight, r.negative_prompt, r.control_guidance_end): Image.open(r.image_path).convert("RGB")
            for r in table.itertuples()}


def direct(pipe, adapter, weight, negative="", end=1.0):
    activate_lora(pipe, adapter, weight)
    return wb.generate(pipe, PROMPT, control_for(SOURCE, 32), 0, steps=STEPS, negative_prompt=negative, control_guidance_end=end)[0]


def measure(name: str, pipe, pooled_pipe, folder: Path) -> None:
    print(f"== {name}")
    write_kohya(pipe, folder / "u.safetensors", text=False, seed=1)
    write_kohya(pipe, folder / "ut.safetensors", text=True, seed=1, text_std=0.5)
    adapters = {"u": str(folder / "u.safetensors"), "ut": str(folder / "ut.safetensors")}
    swept = sweep_images(pipe, {"adapters": adapters, "adapter": ["u", "ut"], "lora_weight": [0.0, 1.0]},
                         folder / "lora")
    wb.load_lora(pipe, adapters["u"], "u", replace=True)
    wb.load_lora(pipe, adapters["ut"], "ut", replace=True)
    u, ut = direct(pipe, "u", 1.0), direct(pipe, "ut", 1.0)
    print(f"1. u against ut at weight 1, by generate:   {difference(u, ut)}")
    print(f"   u against ut at weight 1, in a sweep:     {difference(swept['u', 1.0, '', 1.0], swept['ut', 1.0, '', 1.0])}")
    print(f"   ut at weight 1, sweep against generate:   {difference(swept['ut', 1.0, '', 1.0], ut)}")
    activate_lora(pipe, None, 0.0)
    swept = sweep_images(pipe, {"negative_prompt": ["", "blurry"]}, folder / "negative")
    for negative in ("", "blurry"):
        print(f"2. negative {negative!r:9}, sweep against generate: "
              f"{difference(swept[None, 0.0, negative, 1.0], direct(pipe, None, 0.0, negative))}")
    swept = sweep_images(pooled_pipe, {"control_guidance_end": [0.5, 1.0]}, folder / "pooled", share_prefix=True)
    print(f"3. pooled ControlNet, engine's loop against generate: "
          f"{difference(swept[None, 0.0, '', 1.0], direct(pooled_pipe, None, 0.0, end=1.0))}")


def pooled(pipe):
    """The pipeline with its ControlNet's conditions pooled (as a shuffle ControlNet's config says)."""
    pipe.controlnet.register_to_config(global_pool_conditions=True)
    return pipe


def main() -> None:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in (("tiny", lambda: build_tiny_pipeline(seed=0)), ("tiny-sdxl", lambda: sdxl.build_tiny(seed=0))):
            folder = Path(tmp) / name
            folder.mkdir()
            measure(name, build(), pooled(build()), folder)


if __name__ == "__main__":
    main()

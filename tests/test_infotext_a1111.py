"""A1111 infotext both ways (issue #38, item 6): the workbench's PNGs read right in AUTOMATIC1111 and its ControlNet and
LoRA Block Weight extensions (`a1111_reference.py`), A1111's PNGs open here, and a PNG becomes a spec in one call."""

import hashlib

import numpy as np
import pytest
from PIL import Image

import workbench as wb
from workbench.families import sd15, sdxl
from workbench.store.infotext import format_infotext, parse_infotext, png_info

from a1111_reference import lbw_weights, lora_tags, parse_controlnet_unit, parse_generation_parameters
from lora_files import write_kohya

CAPTION = "a red circle on a blue background"
BASE = {"prompt": CAPTION, "negative_prompt": "blurry, dark", "steps": 20, "scheduler": "dpm++2m_karras",
        "guidance": 7.5, "seed": 12345}
# Edge cases from the issue: a unit image path with a comma and ": ", a scale above 2, a threshold below 1, a
# schedule, a mask unit (no thresholds), and a LoRA with block weights in dict form.
HARD = {**BASE, "adapter": "r4-s0", "lora_weight": 0.75, "clip_skip": 2,
        "lora_blocks": '{"down":0,"mid":1,"text_encoder":1,"up":{"block_1":[1,0.5,0]}}',
        "canny.image": "ctl/star, v2: final.png", "canny.controlnet": "lllyasviel/sd-controlnet-canny",
        "canny.preprocess": "canny", "canny.scale": 3.0, "canny.start": 0.0, "canny.end": 0.8, "canny.low": 0,
        "canny.high": 200, "canny.schedule": "linear",
        "mask.image": "masks/circle.png", "mask.controlnet": "lllyasviel/sd-controlnet-seg",
        "mask.preprocess": "none", "mask.scale": 0.5, "mask.start": 0.1, "mask.end": 1.0, "mask.low": 100,
        "mask.high": 200}


def test_what_the_workbench_writes_reads_right_in_a1111_and_its_extensions():
    text = format_infotext(HARD, 512, 768, "sd15", "trial1", model_hash="0123456789",
                           lora_hashes={"r4-s0": "abcdef012345"})
    a1111 = parse_generation_parameters(text)
    assert a1111["Prompt"].startswith(CAPTION) and a1111["Negative prompt"] == "blurry, dark"
    assert (a1111["Steps"], a1111["Sampler"], a1111["Schedule type"], a1111["CFG scale"], a1111["Seed"]) == \
        ("20", "DPM++ 2M", "Karras", "7.5", "12345")
    assert (a1111["Size-1"], a1111["Size-2"], a1111["Model hash"], a1111["Clip skip"]) == ("512", "768", "0123456789",
                                                                                          "2")
    assert a1111["Lora hashes"] == "r4-s0: abcdef012345"
    [tag] = lora_tags(a1111["Prompt"])  # no ValueError: the block weights are the LBW extension's list
    assert tag["weight"] == 0.75 and lbw_weights(tag["named"]["lbw"]) == [1, 0, 0, 0, 0, 0, 0, 1, 1, 0.5, 0, 1, 1, 1,
                                                                         1, 1, 1]
    canny, mask = (parse_controlnet_unit(a1111[f"ControlNet {i}"]) for i in range(2))
    assert canny is not None and mask is not None  # neither unit is dropped
    assert (canny["Module"], canny["Weight"], canny["Threshold A"], canny["Threshold B"]) == ("canny", "2.0", 1, 200)
    assert canny["Model"] == "lllyasviel/sd-controlnet-canny" and canny["Guidance End"] == "0.8"
    assert "Threshold A" not in mask and mask["Module"] == "none"  # a mask unit writes no thresholds it does not use
    assert a1111["Workbench only"] == ("canny weight 3 (A1111 reads 2); canny low threshold 0; canny scale schedule "
                                       "linear (A1111 holds the weight constant)")  # said in words
    back = parse_infotext(text)  # and the workbench reads every exact value back from its own field
    assert {k: back[k] for k in HARD} == HARD


@pytest.mark.parametrize("family,blocks", [(sd15, 17), (sdxl, 12)])
def test_block_weights_are_written_in_the_lbw_extensions_length_for_the_family(family, blocks):
    model = {sd15: "sd15", sdxl: "sdxl"}[family]
    text = format_infotext({**BASE, "adapter": "style", "lora_weight": 1.0, "lora_blocks": "up-only",
                            "conditioning_scale": 1.0, "control_guidance_start": 0.0, "control_guidance_end": 1.0,
                            "canny_low": 100, "canny_high": 200}, 512, 512, model)
    [tag] = lora_tags(parse_generation_parameters(text)["Prompt"])
    assert len(lbw_weights(tag["named"]["lbw"])) == blocks
    assert parse_infotext(text)["lora_blocks"] == "up-only"
    without_own_field = text.replace(", Lora blocks: up-only", "")  # as an A1111 PNG has it: from the list alone
    assert parse_infotext(without_own_field)["lora_blocks"] == "up-only"


A1111_EXAMPLE = ("girl with an artist's beret, determined, blue eyes, desert scene, computer monitors, heavy makeup, "
                 "by Alphonse Mucha and Charlie Bowater, ((fashion photography)), ((wearing nice clothes)), fantasy, "
                 "intricate, highly detailed, digital painting\n"
                 "Negative prompt: ugly, (((deformed))), [blurry], bad anatomy, disfigured, poorly drawn face, "
                 "mutation, (extra_limb), (poorly drawn hands), messy drawing, cloned face\n"
                 "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b")
# AUTOMATIC1111/stable-diffusion-webui#14545: three LoRA tags in one prompt
THREE_LORAS = ("masterpiece, a watercolor landscape <lora:Colorwater_v4:0.15>, <lora:sharpen-soften:-0.2>, "
               "<lora:add_detail:0.27>\nNegative prompt: lowres\nSteps: 30, Sampler: DPM++ 2M Karras, CFG scale: 6, "
               "Seed: 42, Size: 512x768, Model hash: 7c819b6d13, Model: majicmixRealistic_v7, Clip skip: 2")
INPAINT_UNIT = ("a cat\nSteps: 20, Sampler: DPM++ SDE Karras, CFG scale: 7, Seed: 1, Size: 512x512, "
                'ControlNet 0: "Module: inpaint_only+lama, Model: control_v11p_sd15_inpaint [ebff9138], Weight: 1, '
                'Resize Mode: Crop and Resize, Low Vram: False, Guidance Start: 0, Guidance End: 1, '
                'Pixel Perfect: True, Control Mode: ControlNet is more important"')
CANNY_UNIT = ("a red circle on a blue background <lora:style:0.8>\nNegative prompt: blurry\nSteps: 4, Sampler: DDIM, "
              "CFG scale: 5, Seed: 7, Size: 32x32, Model hash: 45dee52b, Model: v1-5-pruned-emaonly, "
              'ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 0.6, '
              'Resize Mode: Crop and Resize, Low Vram: False, Processor Res: 512, Threshold A: 50, Threshold B: 150, '
              'Guidance Start: 0.1, Guidance End: 0.9, Pixel Perfect: False, Control Mode: Balanced"')


def png(tmp_path, text: str, name: str = "a1111.png"):
    path = tmp_path / name
    Image.new("RGB", (8, 8)).save(path, pnginfo=png_info(text))
    return path


def test_a1111s_own_pngs_open_here(tmp_path):
    example = parse_infotext(A1111_EXAMPLE)
    assert (example["steps"], example["scheduler"], example["guidance"], example["seed"], example["model_hash"]) == \
        (20, "euler_a", 7.0, 965400086, "45dee52b")
    assert example["negative_prompt"].startswith("ugly, (((deformed)))")
    three = parse_infotext(THREE_LORAS)
    assert [(t["name"], t["weight"]) for t in three["loras"]] == [("Colorwater_v4", 0.15), ("sharpen-soften", -0.2),
                                                                  ("add_detail", 0.27)]
    assert "adapter" not in three and three["scheduler"] == "dpm++2m_karras" and three["clip_skip"] == 2
    assert three["model_hash"] == "7c819b6d13" and "<lora" not in three["prompt"]
    with pytest.raises(ValueError) as err:  # refused by name, no weight lost without a word
        wb.spec_from_png(png(tmp_path, THREE_LORAS), model="tiny", control_image=f"toy:{CAPTION}")
    assert "3 LoRAs (Colorwater_v4 0.15, sharpen-soften -0.2, add_detail 0.27)" in str(err.value)
    inpaint = parse_infotext(INPAINT_UNIT)
    assert inpaint["scheduler"] == "dpm++sde_karras"
    assert inpaint["control_units"][0]["preprocess"] == "inpaint_only+lama"  # not read as a Canny unit
    with pytest.raises(ValueError) as err:
        wb.spec_from_png(png(tmp_path, INPAINT_UNIT, "inpaint.png"), model="tiny", control_image=f"toy:{CAPTION}")
    assert "module 'inpaint_only+lama'" in str(err.value) and "control_v11p_sd15_inpaint" in str(err.value)


def test_an_a1111_canny_png_becomes_a_spec_with_one_call(tmp_path):
    path, lora = png(tmp_path, CANNY_UNIT), {"style": "style.safetensors"}
    with pytest.raises(ValueError, match="pass model="):  # its checkpoint is not here
        wb.spec_from_png(path, control_image=f"toy:{CAPTION}", adapters=lora)
    with pytest.raises(ValueError, match="pass control_image="):  # A1111 keeps the control image out
        wb.spec_from_png(path, model="tiny", adapters=lora)
    with pytest.raises(ValueError, match=r"pass adapters=\{'style'"):
        wb.spec_from_png(path, model="tiny", control_image=f"toy:{CAPTION}")
    spec = wb.spec_from_png(path, model="tiny", control_image=f"toy:{CAPTION}", adapters={"style": "style.safetensors"})
    assert (spec.steps, spec.scheduler, spec.guidance, spec.seed, spec.resolution) == ([4], ["ddim"], [5.0], [7], 32)
    assert (spec.conditioning_scale, spec.control_guidance_start, spec.control_guidance_end) == ([0.6], [0.1], [0.9])
    assert (spec.canny_low, spec.canny_high, spec.lora_weight, spec.adapter) == ([50], [150], [0.8], ["style"])


def test_a_workbench_png_becomes_the_spec_that_remakes_it(tmp_path):
    from workbench.families.sd15 import build_tiny_pipeline
    pipe = build_tiny_pipeline(seed=0)
    write_kohya(pipe, tmp_path / "style.safetensors", rank=2)
    spec = {"model": "tiny", "prompt": CAPTION, "negative_prompt": "blurry", "control_image": f"toy:{CAPTION}",
            "steps": 3, "seed": [5], "guidance": [6.0], "scheduler": "dpm++2m_karras", "conditioning_scale": [2.5],
            "canny_low": [0], "adapters": {"style": str(tmp_path / "style.safetensors")}, "adapter": ["style"],
            "lora_weight": [0.7], "lora_blocks": ["up-only"], "clip_skip": [2]}
    first = wb.run_sweep(pipe, spec, tmp_path / "first", log=lambda *_: None).iloc[0]
    image = tmp_path / "first" / first.image_path
    a1111 = parse_generation_parameters(Image.open(image).info["parameters"])
    data = (tmp_path / "style.safetensors").read_bytes()
    addnet = hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()[:12]
    assert a1111["Lora hashes"] == f"style: {addnet}"  # A1111's hash of the tensors after the header
    assert a1111["Model hash"] == first.model_fingerprint[:10]  # a model from no file: its fingerprint
    again_spec = wb.spec_from_png(image, adapters={"style": str(tmp_path / "style.safetensors")})
    again = wb.run_sweep(pipe, again_spec, tmp_path / "again", log=lambda *_: None).iloc[0]
    assert again.trial_id == first.trial_id  # every setting came back, so the same trial
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again" / again.image_path)), np.asarray(Image.open(image)))


def test_a_damaged_workbench_units_field_is_one_line(tmp_path):
    text = format_infotext({**BASE, "conditioning_scale": 1.0, "control_guidance_start": 0.0,
                            "control_guidance_end": 1.0, "canny_low": 100, "canny_high": 200}, 64, 64, "toy")
    broken = text.replace("Workbench units: ", "Workbench units: [{\\\"unit\\\": [1, 2]}], Was: ")
    with pytest.raises(ValueError) as err:
        parse_infotext(broken)
    assert "Workbench units" in str(err.value) and "\n" not in str(err.value)

"""The toy world and its packaged model: offline load, control follows edges, determinism, trainer."""

import csv
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import ImageDraw, ImageEnhance

import workbench as wb
from workbench.metrics import control_edge_scores
from workbench.toy.data import make_dataset
from workbench.toy.scores import outline_strength, shape_regions, stripe_strength, style_strength
from workbench.toy.world import PALETTE, SHAPES, STYLES, Scene, render_scene, sample_scenes, scene_from_caption


@pytest.fixture(scope="module")
def toy_pipe():
    return wb.load_pipeline(device="cpu")  # the default: the packaged toy model


def test_toy_loads_offline_at_its_trained_size(toy_pipe):
    assert toy_pipe.unet.config.sample_size * toy_pipe.vae_scale_factor == 64
    control = wb.make_canny(render_scene(scene_from_caption("a red circle on a blue background"), 64), resolution=64)
    out = toy_pipe("a red circle on a blue background", image=control, num_inference_steps=2).images[0]
    assert out.size == (64, 64)  # no height/width given: diffusers' default is the trained size


def test_conditioning_scale_raises_edge_f1(toy_pipe):
    f1 = {0.0: [], 1.0: []}
    for scene in sample_scenes(4, seed=4242):
        control = wb.make_canny(render_scene(scene, 64), resolution=64)
        for scale in f1:
            [image] = wb.generate(toy_pipe, scene.caption, control, 0, scale=scale, steps=10)
            f1[scale].append(control_edge_scores(control, image).f1)
    assert np.mean(f1[1.0]) > np.mean(f1[0.0]) + 0.1, f1


def test_same_seed_same_image(toy_pipe):
    control = wb.make_canny(render_scene(scene_from_caption("a green star on a white background"), 64), resolution=64)
    a, b = (np.asarray(wb.generate(toy_pipe, "a green star on a white background", control, 5, steps=4)[0])
            for _ in range(2))
    assert np.array_equal(a, b)


def test_unknown_word_warns_with_the_vocabulary(toy_pipe):
    control = wb.make_canny(render_scene(scene_from_caption("a red circle on a blue background"), 64), resolution=64)
    with pytest.warns(UserWarning, match=r"\['hexagon'\].*circle.*zebra"):
        wb.generate(toy_pipe, "a red hexagon on a blue background", control, 0, steps=1)


def test_world_is_deterministic_and_captions_match_scenes():
    first, second = make_dataset(6, seed=3, size=32), make_dataset(6, seed=3, size=32)
    assert torch.equal(first.images, second.images) and first.captions == second.captions
    assert first.images.shape == (6, 3, 32, 32) and first.controls.shape == (6, 1, 32, 32)
    for scene in first.scenes:
        assert scene.color != scene.background and scene.color in PALETTE and scene.shape in SHAPES
        assert scene_from_caption(scene.caption).shape == scene.shape


@pytest.mark.parametrize("style", STYLES)
def test_style_subset_has_its_caption_token(style):
    scenes = sample_scenes(3, seed=1, style=style)
    assert all(s.caption.endswith(f"in {style} style") for s in scenes)
    assert scene_from_caption(scenes[0].caption).style == style


def test_outlined_style_draws_a_rim_of_the_rim_shade_around_the_colour():
    scene = Scene("square", "red", "blue", cx=0.5, cy=0.5, size=0.3, angle=45, style="outlined")  # sides upright
    pixels = np.asarray(render_scene(scene, 64)).astype(int)
    half_side = 0.3 * 64 / 2 ** 0.5  # a square's corners lie on its radius
    rim_x = round(32 - half_side + 1.5)  # 1.5 px inside the left edge, within the 3.2 px rim
    assert np.abs(pixels[32, rim_x] - PALETTE["black"]).max() < 30
    assert np.abs(pixels[32, 32] - PALETTE["red"]).max() < 5
    on_black = replace(scene, background="black")
    assert np.abs(np.asarray(render_scene(on_black, 64)).astype(int)[32, rim_x] - PALETTE["white"]).max() < 30


def test_outline_strength_tells_a_rim_from_flat_and_darkened_shapes():
    outlined, off_edge, plain, darker, zebra = [], [], [], [], []
    for scene in sample_scenes(30, seed=5, style="outlined"):
        flat = render_scene(replace(scene, style=None))
        outlined.append(outline_strength(render_scene(scene), scene))
        off_edge.append(outline_strength(render_scene(replace(scene, size=scene.size + 0.03)), scene))
        plain.append(outline_strength(flat, scene))
        darker.append(outline_strength(ImageEnhance.Brightness(flat).enhance(0.4), scene))
        zebra.append(style_strength(render_scene(replace(scene, style="zebra")), replace(scene, style="zebra")))
    assert min(outlined) > 0.8
    assert min(off_edge) > 0.6, "a rim drawn 2 px outside the control's edge is still an outline"
    assert max(plain) < 0.05 and max(darker) < 0.1, "a shape darkened all over has no outline"
    assert min(zebra) > 0.9, "style_strength scores each style by its own measure"
    with pytest.raises(ValueError, match="None.*outlined"):
        style_strength(render_scene(scene), replace(scene, style=None))


def with_blotches(image, scene, rng):
    """`image` with two dark or light discs about half a stripe period wide inside the shape."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    other = (15, 15, 15) if sum(PALETTE[scene.color]) > 300 else (245, 245, 245)
    ys, xs = np.nonzero(shape_regions(scene, image.size[0], margin=3)[0])
    for i in rng.integers(len(xs), size=2):
        r = image.size[0] * scene.size * 0.35
        draw.ellipse([xs[i] - r, ys[i] - r, xs[i] + r, ys[i] + r], fill=other)
    return image


def test_stripe_strength_tells_stripes_from_flat_shapes_and_blotches():
    rng = np.random.default_rng(0)
    zebra, plain, blotched, turned = [], [], [], []
    for scene in sample_scenes(30, seed=5, style="zebra"):
        flat = render_scene(replace(scene, style=None))
        zebra.append(stripe_strength(render_scene(scene), scene))
        plain.append(stripe_strength(flat, scene))
        blotched.append(stripe_strength(with_blotches(flat, scene, rng), scene))
        circle = replace(scene, shape="circle")  # stripes at another angle count as much
        turned.append(stripe_strength(render_scene(replace(circle, angle=scene.angle + 37)), circle))
    assert min(zebra) > 0.9 and min(turned) > 0.9
    assert max(plain) < 0.05
    assert np.mean(blotched) < 0.2, "blotches have edges inside the shape but are not stripes"


@pytest.mark.parametrize("caption,match", [("a red blob on a blue background", "'blob'"),
                                           ("a pink circle on a blue background", "'pink'"),
                                           ("red circle", "must read")])
def test_bad_toy_captions(caption, match):
    with pytest.raises(ValueError, match=match):
        scene_from_caption(caption)


def train_briefly(out_dir, **steps):
    from workbench.toy.train import main
    settings = {"n-images": 16, "text-steps": 2, "vae-steps": 2, "unet-steps": 2, "controlnet-steps": 2,
                "decoder-steps": 2, "n-style-images": 4, "batch-size": 4, "vae-batch-size": 4, "checkpoint-every": 1,
                "threads": 1, **steps}
    main(["--out-dir", str(out_dir)] + [x for k, v in settings.items() for x in (f"--{k}", str(v))])


def test_trainer_is_deterministic_and_resumes(tmp_path):
    from safetensors.torch import load_file
    train_briefly(tmp_path / "a")
    train_briefly(tmp_path / "b")
    for part in ("unet", "controlnet", "vae", "text_encoder"):
        name = "model.safetensors" if part == "text_encoder" else "diffusion_pytorch_model.safetensors"
        a, b = (load_file(str(tmp_path / run / "pipeline" / part / name)) for run in ("a", "b"))
        assert all(torch.equal(a[k], b[k]) for k in a), part
    train_briefly(tmp_path / "a", **{"unet-steps": 4})  # resumes the UNet at step 2, does not restart
    steps = [int(row["step"]) for row in csv.DictReader(open(tmp_path / "a" / "losses.csv")) if row["stage"] == "unet"]
    assert steps == [0, 1, 3]  # every 20th step and the last; a restart would log step 0 again
    pipe = wb.load_pipeline(str(tmp_path / "a" / "pipeline"), device="cpu")
    assert pipe.unet.config.sample_size == 16
    # the diffusion schedule assumes unit-variance latents: scaling_factor must deliver them
    from workbench.toy.data import make_dataset, to_model_range
    with torch.no_grad():
        latents = pipe.vae.encode(to_model_range(make_dataset(64, seed=0).images)).latent_dist.mean
    assert 0.7 < float((latents * pipe.vae.config.scaling_factor).std()) < 1.4

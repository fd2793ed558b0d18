"""A 2-step ControlNet generation on the tiny model: shape, determinism, conditioning scale."""

import numpy as np
import pytest

from workbench import generate

from tolerance import assert_images_close


def pixels(image):
    return np.asarray(image, dtype=np.float32) / 255


def test_output_has_the_control_size(tiny_pipe, square_control):
    [image] = generate(tiny_pipe, "a red circle on a blue background", square_control, 0, steps=2)
    assert image.size == square_control.size == (32, 32)
    assert image.mode == "RGB"


def test_same_seed_same_image_and_other_seed_differs(tiny_pipe, square_control):
    a, b, c = generate(tiny_pipe, "a red circle", square_control, [3, 3, 4], steps=2)
    assert np.array_equal(pixels(a), pixels(b))
    assert np.abs(pixels(a) - pixels(c)).mean() > 0.01


def test_batched_seeds_equal_lone_calls(tiny_pipe, square_control):
    batch = generate(tiny_pipe, "a green square", square_control, [5, 6], steps=2)
    for seed, image in zip([5, 6], batch):
        [alone] = generate(tiny_pipe, "a green square", square_control, seed, steps=2)
        assert_images_close(image, alone, f"seed {seed}, batch of 2 against alone")


def test_conditioning_scale_changes_the_image(tiny_pipe, square_control):
    [off] = generate(tiny_pipe, "a red circle", square_control, 0, steps=2, scale=0.0)
    [on] = generate(tiny_pipe, "a red circle", square_control, 0, steps=2, scale=1.0)
    assert np.abs(pixels(off) - pixels(on)).mean() > 0.005


@pytest.mark.parametrize("scale", [-0.5, "1.0", None, float("nan"), True])
def test_bad_conditioning_scale_is_refused(tiny_pipe, square_control, scale):
    with pytest.raises(ValueError, match="controlnet_conditioning_scale"):
        generate(tiny_pipe, "a red circle", square_control, 0, steps=2, scale=scale)


def test_integer_scale_is_accepted_as_float(tiny_pipe, square_control):
    [image] = generate(tiny_pipe, "a red circle", square_control, 0, steps=2, scale=1)
    assert image.size == (32, 32)


@pytest.mark.parametrize("seeds", [[], [1.5], ["3"], [-1]])
def test_bad_seeds_are_refused(tiny_pipe, square_control, seeds):
    with pytest.raises(ValueError, match="seed"):
        generate(tiny_pipe, "a red circle", square_control, seeds, steps=2)


def test_long_prompt_warns(tiny_pipe, square_control):
    with pytest.warns(UserWarning, match="tokens"):
        generate(tiny_pipe, "a red circle " * 10, square_control, 0, steps=1)


def test_out_of_vocabulary_word_warns_and_still_generates(tiny_pipe, square_control):
    with pytest.warns(UserWarning, match=r"\['hexagon'\].*it knows: .*circle"):
        [image] = generate(tiny_pipe, "a red hexagon", square_control, 0, steps=1)
    assert image.size == (32, 32)


def test_an_empty_negative_prompt_is_none_on_sdxl_as_in_a_sweep(tiny_sdxl_pipe, square_control):
    """SDXL zeroes the negative embeddings for no negative prompt; `""` is that, not the encoding of the empty text."""
    import torch
    [empty] = generate(tiny_sdxl_pipe, "a red circle", square_control, 0, steps=2, negative_prompt="")
    none = tiny_sdxl_pipe("a red circle", image=square_control, num_inference_steps=2, guidance_scale=5.0,
                          negative_prompt=None, generator=torch.Generator().manual_seed(0)).images[0]
    encoded = tiny_sdxl_pipe("a red circle", image=square_control, num_inference_steps=2, guidance_scale=5.0,
                             negative_prompt="", generator=torch.Generator().manual_seed(0)).images[0]
    assert np.array_equal(pixels(empty), pixels(none))
    assert np.abs(pixels(empty) - pixels(encoded)).max() > 0.02  # the two meanings really differ on this model

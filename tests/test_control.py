"""make_canny: any mode and size in, a binary RGB edge map sized for the pipeline out."""

import numpy as np
import pytest
from PIL import Image

from workbench import load_image, make_canny
from workbench.control import fit_size, load_detector
from workbench.errors import ModelNotAvailableError


def square(size=(48, 40), mode="RGB"):
    """A bright square on a dark background, in any PIL mode."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[size[1] // 4: 3 * size[1] // 4, size[0] // 4: 3 * size[0] // 4] = 230
    return Image.fromarray(pixels).convert(mode)


def assert_edge_map(edges, size):
    assert edges.mode == "RGB" and edges.size == size
    values = np.unique(np.asarray(edges))
    assert set(values.tolist()) <= {0, 255}, values
    assert (np.asarray(edges) == 255).any(), "the square's edges were not found"


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I", "I;16", "F", "1"])
def test_every_pil_mode(mode):
    assert_edge_map(make_canny(square(mode=mode), resolution=64), (80, 64))


@pytest.mark.parametrize("dtype,top", [(np.uint8, 255), (np.uint16, 65535), (np.float32, 1.0), (np.float64, 1.0)])
def test_numpy_arrays_of_any_depth(dtype, top):
    array = np.zeros((64, 64), dtype)
    array[16:48, 16:48] = top
    assert_edge_map(make_canny(array, resolution=64), (64, 64))
    assert_edge_map(make_canny(np.stack([array] * 3, -1), resolution=64), (64, 64))


def test_16_bit_png_file(tmp_path):
    array = np.zeros((40, 40), np.uint16)
    array[10:30, 10:30] = 60000
    Image.fromarray(array).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert_edge_map(make_canny(tmp_path / "deep.png", resolution=40), (40, 40))


def test_transparent_pixels_become_white():
    rgba = np.zeros((8, 8, 4), np.uint8)  # fully transparent black
    assert (np.asarray(load_image(rgba)) == 255).all()


@pytest.mark.parametrize("size,resolution,expected", [
    ((48, 40), 64, (80, 64)), ((1000, 333), 64, (192, 64)), ((7, 5), 32, (48, 32)), ((32, 32), 32, (32, 32)),
    ((517, 389), 512, (680, 512)),
])
def test_output_is_a_multiple_of_8_with_short_side_at_resolution(size, resolution, expected):
    assert fit_size(*size, resolution) == expected
    edges = make_canny(square(size), resolution=resolution)
    assert edges.size == expected and edges.width % 8 == 0 and edges.height % 8 == 0


def test_small_sizes_keep_thin_edges():
    """At 32 px controlnet_aux detects at 64 and the map is shrunk back: edges must survive."""
    edges = np.asarray(make_canny(square((32, 32)), resolution=32))[:, :, 0]
    assert edges[:, 8].sum() > 0 or edges[:, 7].sum() > 0  # the left side of the square
    assert (edges > 0).mean() < 0.25  # still thin lines, not filled blocks


def test_thresholds_change_the_result():
    noisy = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    many = (np.asarray(make_canny(noisy, 10, 50, resolution=64)) > 0).sum()
    few = (np.asarray(make_canny(noisy, 200, 400, resolution=64)) > 0).sum()
    assert many > few


@pytest.mark.parametrize("low,high,match", [(200, 100, "low <= high"), (-1, 100, "low <= high"),
                                            ("a", 100, "must be a number"), (100, None, "must be a number")])
def test_bad_thresholds(low, high, match):
    with pytest.raises(ValueError, match=match):
        make_canny(square(), low, high)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no/such/picture.png"):
        make_canny("no/such/picture.png")


def test_non_image_file(tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(ValueError, match="not an image file"):
        make_canny(tmp_path / "notes.png")


@pytest.mark.parametrize("bad", [np.zeros((0, 10, 3), np.uint8), np.zeros((10, 10, 2), np.uint8), 42, [1, 2]])
def test_bad_arrays_and_types(bad):
    with pytest.raises(ValueError):
        make_canny(bad)


def test_zero_size_pil_image():
    with pytest.raises(ValueError, match="zero size"):
        make_canny(Image.new("RGB", (0, 5)))


def test_bad_resolution():
    with pytest.raises(ValueError, match="resolution"):
        make_canny(square(), resolution=4)


def test_hub_detector_fails_clearly_offline(tmp_path, monkeypatch):
    """HED needs hub weights: the message names the file, the repo and what to do."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotAvailableError, match="ControlNetHED.pth of 'lllyasviel/Annotators'.*hf download"):
        load_detector("hed")


def test_unknown_detector():
    with pytest.raises(ValueError, match="unknown condition .*'depthx'.*did you mean 'depth'"):
        load_detector("depthx")

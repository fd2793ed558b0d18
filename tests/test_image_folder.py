"""LoRA training on a folder of images: both layouts people have, EXIF, crops and SDXL's size ids, on tiny and tiny-sdxl."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from workbench import image_folder, train_lora
from workbench.toy.photo import render_photo
from workbench.toy.world import sample_scenes


def photos(folder, n, size=(48, 40), seed=0):
    """n toy photo renders, wider than tall, as PNG files; returns (file name, caption) pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i, scene in enumerate(sample_scenes(n, seed=seed)):
        image = render_photo(scene, 48, seed=i).resize(size)
        image.save(folder / f"photo{i}.png")
        pairs.append((f"photo{i}.png", scene.caption))
    return pairs


@pytest.fixture
def huggingface(tmp_path):
    pairs = photos(tmp_path / "hf", 4)
    (tmp_path / "hf" / "metadata.jsonl").write_text("\n".join(json.dumps({"file_name": f, "text": c}) for f, c in pairs))
    return tmp_path / "hf"


@pytest.fixture
def kohya(tmp_path):
    pairs = photos(tmp_path / "kohya" / "3_toystyle", 2) + photos(tmp_path / "kohya" / "1_plain", 1, seed=5)
    for f, c in pairs[:2]:
        (tmp_path / "kohya" / "3_toystyle" / f).with_suffix(".txt").write_text(c)
    return tmp_path / "kohya"


def test_huggingface_layout_reads_captions_crops_and_sizes(huggingface):
    data = image_folder(huggingface, 32)
    item = data[0]
    assert data.layout == "huggingface" and len(data) == 4
    assert item["pixels"].shape == (3, 32, 32) and item["pixels"].dtype == torch.uint8
    assert item["original_size"] == (40, 48) and item["crop_top_left"] == (0, 3)  # 38x32 after resizing: 3 px cut
    assert item["caption"] == json.loads((huggingface / "metadata.jsonl").read_text().splitlines()[0])["text"]


def test_kohya_layout_counts_repeats_and_reads_txt_captions(kohya):
    data = image_folder(kohya, 32)
    assert data.layout == "kohya" and len(data) == 3 * 2 + 1 and len(data.entries) == 3
    assert data.captions.count("plain") == 1  # no .txt: kohya's class name from the folder
    styled = next(data[i] for i in range(len(data)) if data[i]["file"].endswith("3_toystyle/photo0.png"))
    assert styled["caption"] == (kohya / "3_toystyle" / "photo0.txt").read_text()


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), "red")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    image.save(tmp_path / "turned.jpg", exif=exif)
    assert image_folder(tmp_path, 16)[0]["original_size"] == (40, 20)  # upright: 20 wide, 40 tall


def test_bad_files_are_named_never_skipped(tmp_path, monkeypatch):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png' cannot be read"):
        image_folder(tmp_path, 32)[0]
    (tmp_path / "broken.png").unlink()
    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match="big.png' has more pixels than Pillow's decompression-bomb limit"):
        image_folder(tmp_path, 32)[0]
    outside = tmp_path / "hf"
    outside.mkdir()
    (outside / "metadata.jsonl").write_text(json.dumps({"file_name": "../big.png", "text": "x"}))
    with pytest.raises(ValueError, match="not a file inside"):
        image_folder(outside, 32)


@pytest.mark.parametrize("pipe_name", ["tiny_pipe", "tiny_sdxl_pipe"])
def test_train_lora_on_a_folder_with_the_scripts_options(pipe_name, request, huggingface, tmp_path):
    pipe = request.getfixturevalue(pipe_name)
    loaded = set(getattr(pipe.unet, "peft_config", {}))  # the shared pipe may hold other tests' adapters
    data = image_folder(huggingface, 32)
    path = train_lora(pipe, data, rank=2, steps=3, batch_size=2, out_dir=tmp_path, load=False, caption_dropout=0.5,
                      snr_gamma=5.0, gradient_accumulation=2, gradient_checkpointing=True)
    from workbench.lora import read_lora_metadata
    meta = read_lora_metadata(path)
    assert meta["caption_dropout"] == 0.5 and meta["snr_gamma"] == 5.0 and meta["gradient_accumulation"] == 2
    assert meta["dataset_hash"] == data.fingerprint() and set(getattr(pipe.unet, "peft_config", {})) == loaded
    assert not pipe.unet.is_gradient_checkpointing  # switched back off
    losses = (tmp_path / "rank2.losses.csv").read_text().splitlines()
    assert len(losses) == 4 and all(np.isfinite(float(line.split(",")[1])) for line in losses[1:])


def test_sdxl_rows_carry_their_original_size_and_crop(tiny_sdxl_pipe, huggingface):
    from workbench.lora.prepare import training_data
    data = training_data(tiny_sdxl_pipe, image_folder(huggingface, 32), False, huggingface / "x")
    ids = data.extra["added_cond_kwargs"]["time_ids"]
    assert ids.shape == (4, 6) and ids[0].tolist() == [40, 48, 0, 3, 32, 32]


def test_large_latents_are_kept_in_half_precision_on_disk(tiny_pipe, huggingface, monkeypatch):
    import workbench.lora.prepare as prepare
    monkeypatch.setattr(prepare, "HALF_BYTES", 1)
    monkeypatch.setattr(prepare, "DISK_BYTES", 1)
    data = prepare.training_data(tiny_pipe, image_folder(huggingface, 32), True, huggingface / "spill")
    assert data.latents.dtype == torch.float16 and (huggingface / "spill.npy").exists() and data.empty is not None
    data.close()
    assert not (huggingface / "spill.npy").exists()


def test_options_are_checked():
    from workbench.lora.prepare import check_options
    for bad, match in [(dict(caption_dropout=1.5), "caption_dropout"), (dict(snr_gamma=0), "snr_gamma"),
                       (dict(gradient_accumulation=0), "gradient_accumulation"),
                       (dict(mixed_precision="fp16"), "is for CUDA")]:
        options = dict(caption_dropout=0.0, snr_gamma=None, gradient_accumulation=1, gradient_checkpointing=False,
                       mixed_precision="no") | bad
        with pytest.raises(ValueError, match=match):
            check_options("cpu", **options)


def test_a_random_crop_is_drawn_once_per_image_and_seed_and_recorded(huggingface):
    """48x40 photos resize to 38x32: a square's left edge falls anywhere in 0-6, the same for a seed every time."""
    center, crops = image_folder(huggingface, 32), image_folder(huggingface, 32, crop="random", seed=1)
    places = [crops[i]["crop_top_left"] for i in range(4)]
    assert all(top == 0 and 0 <= left <= 6 for top, left in places) and len(set(places)) > 1
    assert places == [image_folder(huggingface, 32, crop="random", seed=1)[i]["crop_top_left"] for i in range(4)]
    assert places != [image_folder(huggingface, 32, crop="random", seed=2)[i]["crop_top_left"] for i in range(4)]
    resized = np.asarray(Image.open(huggingface / "photo0.png").convert("RGB").resize((38, 32), Image.LANCZOS))
    left = places[0][1]
    assert np.array_equal(crops[0]["pixels"].permute(1, 2, 0).numpy(), resized[:, left:left + 32])
    assert crops.fingerprint() != center.fingerprint()  # another crop is other training data (the cache key)
    with pytest.raises(ValueError, match="'center' or 'random'"):
        image_folder(huggingface, 32, crop="left")


@pytest.mark.parametrize("pipe_name", ["tiny_pipe", "tiny_sdxl_pipe"])
def test_random_flip_trains_on_each_image_mirrored_too(pipe_name, request, huggingface, tmp_path):
    from workbench.lora import read_lora_metadata
    from workbench.lora.prepare import encode_latents, training_data
    from workbench.toy.data import make_dataset
    pipe = request.getfixturevalue(pipe_name)
    data = image_folder(huggingface, 32, crop="random", seed=1)
    flipped, plain = training_data(pipe, data, True, tmp_path / "a", flip=True), training_data(pipe, data, False, tmp_path / "b")
    assert (flipped.flipped, len(flipped.latents), len(flipped.rows)) == (4, 8, 4)
    assert torch.allclose(flipped.latents[:4], plain.latents, atol=1e-5)
    mirrored, _ = encode_latents(pipe, iter([data[0]["pixels"].flip(-1)]), 1, 32, tmp_path / "c")
    assert torch.allclose(flipped.latents[4], mirrored[0], atol=1e-4)  # row N + i: image i mirrored
    assert len(flipped.empty[0]) == 8  # caption dropout reads the mirrored rows' empty captions too
    if "time_ids" in str(flipped.extra):  # SDXL: the mirrored crop's left edge, in the mirrored image
        ids = flipped.extra["added_cond_kwargs"]["time_ids"]
        assert [ids[i + 4][3].item() for i in range(4)] == [6 - ids[i][3].item() for i in range(4)]
    pairs = training_data(pipe, make_dataset(2, size=32), False, tmp_path / "d", flip=True)  # (images, captions) too
    assert (pairs.flipped, len(pairs.latents), len(pairs.rows)) == (2, 4, 2)
    path = train_lora(pipe, data, rank=1, steps=2, batch_size=2, out_dir=tmp_path, load=False, random_flip=True,
                      caption_dropout=0.5)
    assert read_lora_metadata(path)["random_flip"] is True


def test_buckets_are_kohyas_and_each_image_takes_the_nearest(tmp_path):
    from workbench.lora.folder import bucket_sizes, nearest_bucket
    assert bucket_sizes(96, 32) == [(64, 128), (96, 96), (128, 64)]  # ratio at most 2, at most 96^2 pixels
    assert (512, 512) in bucket_sizes(512) and (640, 384) in bucket_sizes(512) and (384, 640) in bucket_sizes(512)
    assert all(w * h <= 512 * 512 and max(w, h) <= 2 * min(w, h) for w, h in bucket_sizes(512))
    assert nearest_bucket(300, 100, bucket_sizes(96, 32)) == (128, 64) and nearest_bucket(50, 49, [(64, 128), (96, 96)]) == (96, 96)


@pytest.mark.parametrize("pipe_name", ["tiny_pipe", "tiny_sdxl_pipe"])
def test_a_folder_of_mixed_shapes_trains_in_aspect_ratio_buckets(pipe_name, request, tmp_path):
    """Wide, tall and square photos at 96 px in 32 px steps: each trains at its bucket's shape, a batch holds one."""
    from workbench.lora import read_lora_metadata
    from workbench.lora.prepare import training_data
    pipe = request.getfixturevalue(pipe_name)
    folder = tmp_path / "mixed"
    for i, (size, seed) in enumerate((((120, 60), 0), ((50, 100), 3), ((80, 80), 4))):  # wide, tall, square
        photos(folder / str(i), 1, size=size, seed=seed)
        (folder / str(i) / "photo0.png").rename(folder / f"photo{i}.png")
    (folder / "metadata.jsonl").write_text("\n".join(json.dumps({"file_name": f"photo{i}.png", "text": "a red circle"})
                                                     for i in range(3)))
    data = image_folder(folder, 96, buckets=True, bucket_step=32)
    assert [data[i]["pixels"].shape[1:] for i in range(3)] == [(64, 128), (128, 64), (96, 96)]
    assert data.fingerprint() != image_folder(folder, 96).fingerprint()
    encoded = training_data(pipe, data, False, tmp_path / "x", flip=True)
    assert len(encoded.latents) == 6  # each image, then each mirrored; buckets numbered by latent shape
    assert encoded.bucket_of.tolist() == [0, 2, 1, 0, 2, 1]  # (4, 8, 16) wide, (4, 12, 12) square, (4, 16, 8) tall
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):  # every batch one bucket: its latents stack
        rows = encoded.draw_rows(4, generator)
        assert len(set(encoded.bucket_of[rows].tolist())) == 1 and encoded.batch_latents(rows).dim() == 4
    if pipe_name == "tiny_sdxl_pipe":  # SDXL's size ids: each row's own target size
        ids = encoded.extra["added_cond_kwargs"]["time_ids"]
        assert [tuple(ids[i][4:].tolist()) for i in range(3)] == [(64, 128), (128, 64), (96, 96)]
    path = train_lora(pipe, data, rank=1, steps=3, batch_size=2, out_dir=tmp_path, load=False, random_flip=True)
    assert read_lora_metadata(path)["dataset_hash"] == data.fingerprint()

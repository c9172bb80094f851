"""The image reader and writer: formats, bit depths, channels and the scaling rules."""

import argparse

import numpy as np
import pytest
import torch
from PIL import Image

from data.image_io import apply_image_limits, list_image_files, read_image, read_image_with_info, write_image
from data.radiometry import IntensityScaling
from util.errors import SargenError


@pytest.mark.parametrize(("file_name", "array", "mode"), [
    ("rgb.png", np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8), "RGB"),
    ("gray.png", np.random.default_rng(1).integers(0, 256, (20, 30), dtype=np.uint8), "L"),
    ("photo.jpg", np.random.default_rng(2).integers(0, 256, (20, 30, 3), dtype=np.uint8), "RGB"),
    ("scene.tif", np.random.default_rng(3).integers(0, 256, (20, 30, 3), dtype=np.uint8), "RGB"),
    ("amplitude16.tif", np.random.default_rng(4).integers(0, 65536, (20, 30), dtype=np.uint16), "I;16"),
    ("power32.tiff", np.random.default_rng(5).gamma(1.0, 0.05, (20, 30)).astype(np.float32), "F"),
])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_format_loads_with_size_and_channels(tmp_path, file_name, array, mode, channels):
    Image.fromarray(array).save(tmp_path / file_name)
    image = read_image(tmp_path / file_name, channels)
    assert image.shape == (channels, 20, 30)
    assert image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert image.std() > 0.05


def test_eight_bit_values_divide_by_255(tmp_path):
    array = np.array([[0, 51, 255]], dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "ramp.png")
    assert torch.allclose(read_image(tmp_path / "ramp.png")[0, 0], torch.tensor([0.0, 0.2, 1.0]))


def test_percentile_rule_clips_two_percent_each_side(tmp_path):
    values = np.arange(10000, dtype=np.uint16).reshape(100, 100) * 3
    Image.fromarray(values).save(tmp_path / "ramp16.tif")
    image = read_image(tmp_path / "ramp16.tif")
    assert (image == 0).float().mean() == pytest.approx(0.02, abs=0.002)
    assert (image == 1).float().mean() == pytest.approx(0.02, abs=0.002)


def test_db_window_on_linear_power(tmp_path):
    power = np.array([[10 ** -3.0, 10 ** -1.25, 1.0, 10.0]], dtype=np.float32)  # -30, -12.5, 0, +10 dB
    Image.fromarray(power).save(tmp_path / "sigma0.tif")
    image = read_image(tmp_path / "sigma0.tif", scaling=IntensityScaling(mode="db", db_window=(-25.0, 0.0)))
    assert torch.allclose(image[0, 0], torch.tensor([0.0, 0.5, 1.0, 1.0]), atol=1e-5)
    in_db = np.array([[-25.0, -12.5, 0.0]], dtype=np.float32)
    Image.fromarray(in_db).save(tmp_path / "sigma0_db.tif")
    image = read_image(tmp_path / "sigma0_db.tif", scaling=IntensityScaling(mode="db", input_unit="db"))
    assert torch.allclose(image[0, 0], torch.tensor([0.0, 0.5, 1.0]), atol=1e-5)


def test_grey_to_rgb_repeats_and_rgb_to_grey_uses_luminance(tmp_path):
    Image.fromarray(np.full((4, 4, 3), (255, 0, 0), dtype=np.uint8)).save(tmp_path / "red.png")
    assert read_image(tmp_path / "red.png", 1)[0, 0, 0].item() == pytest.approx(0.299, abs=1e-4)
    Image.fromarray(np.full((4, 4), 128, dtype=np.uint8)).save(tmp_path / "grey.png")
    rgb = read_image(tmp_path / "grey.png", 3)
    assert torch.equal(rgb[0], rgb[2])


def test_write_then_read_round_trip(tmp_path):
    image = torch.rand(3, 16, 24)
    write_image(image, tmp_path / "out" / "image.png")
    again = read_image(tmp_path / "out" / "image.png")
    assert torch.allclose(again, image, atol=1 / 255)
    assert not list((tmp_path / "out").glob(".*tmp*")), "no temporary file is left behind"
    write_image(image[:1] * 2 - 1, tmp_path / "grey.png", value_range=(-1, 1))
    assert Image.open(tmp_path / "grey.png").mode == "L"


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_corrupt_truncated_and_fake_images_name_the_file(tmp_path, content):
    path = tmp_path / "broken_0001.png"
    if content is None:
        Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8) + 7).save(path)
        path.write_bytes(path.read_bytes()[:60])  # truncated
    else:
        path.write_bytes(content)
    with pytest.raises(SargenError, match=r"cannot read image .*broken_0001.png"):
        read_image(path)


def test_nan_pixels_are_masked_and_filled_by_mirroring(tmp_path):
    """NaN and infinite pixels are no-data: left out of the window, marked in info.valid, filled from the valid
    pixels mirrored at the no-data edge."""
    Image.fromarray(np.array([[1.0, 3.0, 2.0, np.nan, np.inf]], dtype=np.float32)).save(tmp_path / "holes.tif")
    image, info = read_image_with_info(tmp_path / "holes.tif", scaling=IntensityScaling("minmax"))
    assert info.valid.tolist() == [[True, True, True, False, False]]
    assert info.window == (1.0, 3.0)
    assert torch.equal(image[0, 0], torch.tensor([0.0, 1.0, 0.5, 1.0, 0.0]))


def test_listing_missing_and_empty_folders(tmp_path):
    with pytest.raises(SargenError, match="folder not found"):
        list_image_files(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(SargenError, match=r"no images .* in .*empty"):
        list_image_files(tmp_path / "empty")


def test_batch_channel_conversion_follows_the_file_rule(tmp_path):
    from data.radiometry import to_channels

    Image.fromarray(np.random.default_rng(6).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "c.png")
    rgb = read_image(tmp_path / "c.png", 3)
    assert torch.allclose(to_channels(rgb[None], 1)[0], read_image(tmp_path / "c.png", 1), atol=1e-6)
    assert torch.equal(to_channels(rgb[None, :1], 3)[0, 2], rgb[0])


@pytest.fixture
def restore_pixel_limit():
    """Put Pillow's global pixel limit back after a test that changes it."""
    limit = Image.MAX_IMAGE_PIXELS
    yield
    Image.MAX_IMAGE_PIXELS = limit


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_max_pixels_refuses_larger_images_and_zero_lifts_the_limit(tmp_path, restore_pixel_limit, suffix):
    """--max_pixels is the limit of every reader; over it the error names the file and the option."""
    path = write_image(np.zeros((40, 30), dtype=np.uint8), tmp_path / f"scene{suffix}")
    apply_image_limits(argparse.Namespace(max_pixels=1000))
    with pytest.raises(SargenError, match=rf"^cannot read image .*scene\{suffix}: .*--max_pixels"):
        read_image(path)
    apply_image_limits(argparse.Namespace(max_pixels=0))
    assert read_image(path).shape == (1, 40, 30)  # a negative --max_pixels stops at parse time: test_option_ranges

"""Fuzzing the image reader (data/image_io.py): truncated, corrupt, hostile and oversized files.

Every case either reads as a finite image in [0, 1] or ends in one SargenError line naming the file; no other
exception, no warning, nothing printed by GDAL and no hang. The raster seeds are written by rasterio (GDAL): a
striped and a tiled GeoTIFF, a band-separate georeferenced one with no-data, a Cloud-Optimized GeoTIFF and a
JPEG2000 file. While fuzzing, Pillow's decompression-bomb limit Image.MAX_IMAGE_PIXELS (which the raster reader
shares) is lowered to FUZZ_PIXEL_LIMIT, so random size fields are refused before decoding and every case stays
fast; the oversized-file tests use the real limit.
"""

import io
import os
import struct
import time
import zlib
from collections import Counter

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import torch
from geotiff_helpers import write_geotiff
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from data.image_io import max_image_pixels, read_image
from util.errors import SargenError

pytestmark = pytest.mark.filterwarnings("error")  # a warning escaping the reader fails the case

FUZZ_PIXEL_LIMIT = 4096
SLOWEST_CASE_S = 5.0  # generous for a loaded machine; the cases take milliseconds
FUZZ_SETTINGS = settings(max_examples=150, derandomize=True, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
MAGIC_PREFIXES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"BM", b"II*\x00", b"MM\x00*", b"II+\x00",
                  b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"<VRTDataset", b"")
SEED_NAMES = ["rgb.png", "photo.jpg", "scene.bmp", "amplitude16.tif", "deflate_rgb.tif", "sentinel1.tif", "cog.tif",
              "s2.jp2"]
OUTCOMES = Counter()  # (test, outcome) -> cases, printed at the end of the module


def encoded(array, file_format, **options):
    """`array` saved by Pillow in `file_format`, as bytes."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, file_format, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """Small valid files of every format and layout the reader handles: {file name: bytes}."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    folder = tmp_path_factory.mktemp("seed")
    power = rng.gamma(1.0, 0.05, (6, 5, 2)).astype(np.float32)
    power[0, 0] = np.nan
    write_geotiff(folder / "s2.tif", rng.integers(0, 10000, (6, 5, 2), dtype=np.uint16))
    sentinel1 = write_geotiff(folder / "sentinel1.tif", power, interleave="band", nodata=np.nan,
                              descriptions=("VV", "VH"))
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        rasterio.shutil.copy(folder / "s2.tif", folder / "s2.jp2", driver="JP2OpenJPEG", REVERSIBLE="YES",
                             QUALITY=100, GMLJP2="NO")
        rasterio.shutil.copy(sentinel1, folder / "cog.tif", driver="COG", BLOCKSIZE=16, COMPRESS="DEFLATE")
    files = {
        "amplitude16.tif": write_geotiff(folder / "amplitude16.tif", rng.integers(0, 65536, (6, 5), dtype=np.uint16),
                                         georeferenced=False),
        "deflate_rgb.tif": write_geotiff(folder / "deflate_rgb.tif", rgb, tiled=True, compress="deflate"),
        "sentinel1.tif": sentinel1,
        "cog.tif": folder / "cog.tif",
        "s2.jp2": folder / "s2.jp2",
    }
    return {"rgb.png": encoded(rgb, "PNG"), "photo.jpg": encoded(rgb, "JPEG", quality=90),
            "scene.bmp": encoded(rgb[:, :, 0], "BMP"), **{name: path.read_bytes() for name, path in files.items()}}


@pytest.fixture
def fuzz_limit(monkeypatch):
    """Image.MAX_IMAGE_PIXELS lowered to FUZZ_PIXEL_LIMIT for the test."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", FUZZ_PIXEL_LIMIT)


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    """Print how many cases each test ran and how they ended."""
    yield
    for (test, outcome), count in sorted(OUTCOMES.items()):
        print(f"\nimage fuzz: {test}: {count} {outcome}", end="")


def read_cleanly(path, test, capfd):
    """Read `path`: a finite image in [0, 1], or one SargenError line naming the file, and nothing printed; count
    the outcome."""
    started = time.perf_counter()
    try:
        image = read_image(path)
        outcome = "read"
        assert torch.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
    except SargenError as error:
        outcome = "refused"
        message = str(error)
        assert "\n" not in message and path.name in message, message
    seconds = time.perf_counter() - started
    assert seconds < SLOWEST_CASE_S, f"{path.name} took {seconds:.1f} s"
    printed = capfd.readouterr()
    assert printed.out == "" and printed.err == "", f"{path.name}: {printed}"
    OUTCOMES[test, outcome] += 1
    return outcome


def write_case(folder, name, data):
    """Write the case's bytes to folder/name."""
    path = folder / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", SEED_NAMES)
def test_every_truncation_length(seeds, tmp_path, fuzz_limit, capfd, name):
    """The file cut at every length from 0 bytes to one byte short, then whole (which must read)."""
    data = seeds[name]
    for cut in range(len(data)):
        read_cleanly(write_case(tmp_path, name, data[:cut]), "truncations", capfd)
    assert read_cleanly(write_case(tmp_path, name, data), "whole seeds", capfd) == "read"


@FUZZ_SETTINGS
@given(data=st.data())
@pytest.mark.parametrize("name", SEED_NAMES)
def test_random_byte_changes(seeds, tmp_path, fuzz_limit, capfd, name, data):
    """1 to 16 bytes of a valid file overwritten, sometimes also cut short or grown by random bytes."""
    content = bytearray(seeds[name])
    changes = data.draw(st.lists(st.tuples(st.integers(0, len(content) - 1), st.integers(0, 255)),
                                 min_size=1, max_size=16))
    for position, value in changes:
        content[position] = value
    end = data.draw(st.one_of(st.none(), st.integers(0, len(content))))
    tail = data.draw(st.binary(max_size=64))
    read_cleanly(write_case(tmp_path, name, bytes(content[:end]) + tail), "random byte changes", capfd)


@FUZZ_SETTINGS
@given(prefix=st.sampled_from(MAGIC_PREFIXES), body=st.binary(max_size=2048),
       suffix=st.sampled_from([".png", ".jpg", ".bmp", ".tif", ".jp2", ".vrt"]))
def test_arbitrary_bytes_behind_a_format_signature(tmp_path, fuzz_limit, capfd, prefix, body, suffix):
    """Random bytes, mostly behind a PNG, JPEG, BMP, TIFF, BigTIFF, JPEG2000 or VRT signature, under any extension."""
    read_cleanly(write_case(tmp_path, f"random{suffix}", prefix + body), "arbitrary bytes", capfd)


def png_claiming(width, height):
    """A small, well-formed PNG whose header claims width x height RGB pixels."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def jpeg_claiming(width, height):
    """A small JPEG whose frame header (SOF0) is changed to claim width x height pixels."""
    data = bytearray(encoded(np.zeros((8, 8, 3), dtype=np.uint8), "JPEG"))
    frame = data.index(b"\xff\xc0")
    data[frame + 5:frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def tiff_claiming(width, height):
    """A 140-byte uncompressed 8-bit TIFF whose tags claim width x height pixels (its one strip is 16 bytes)."""
    data_offset = 8 + 2 + 9 * 12 + 4
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, data_offset), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 16)]
    directory = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *entry) for entry in entries)
    return b"II*\x00" + struct.pack("<I", 8) + directory + struct.pack("<I", 0) + bytes(16)


@pytest.mark.parametrize(("name", "make", "size"), [
    ("bomb.png", png_claiming, (100_000, 100_000)),
    ("just_over.png", png_claiming, (9_500, 9_500)),
    ("bomb.jpg", jpeg_claiming, (65_000, 65_000)),
    ("bomb.tif", tiff_claiming, (100_000, 100_000)),
    ("just_over.tif", tiff_claiming, (9_500, 9_500)),
])
def test_oversized_images_are_refused_before_decoding(tmp_path, name, make, size):
    """Headers claiming more pixels than Pillow's limit (89.5 Mpixel): refused at once, the limit named."""
    assert max_image_pixels() == Image.MAX_IMAGE_PIXELS < size[0] * size[1]
    path = write_case(tmp_path, name, make(*size))
    assert path.stat().st_size < 1000
    started = time.perf_counter()
    with pytest.raises(SargenError, match=rf"cannot read image .*{name}.*limit") as error:
        read_image(path)
    assert "\n" not in str(error.value)
    assert time.perf_counter() - started < 1.0
    OUTCOMES["oversized", "refused"] += 1


def test_a_small_claim_of_the_same_hand_made_tiff_reads(tmp_path):
    """The control for the oversized TIFF: the same file claiming 4 x 4 pixels is a valid image."""
    assert read_image(write_case(tmp_path, "small.tif", tiff_claiming(4, 4))).shape == (1, 4, 4)


@pytest.mark.parametrize("case", ["empty file", "folder", "text", "html"])
def test_files_that_are_not_images(tmp_path, case):
    """A zero-length file, a folder named like an image, text and HTML under image names: named errors."""
    path = tmp_path / "victim.png"
    if case == "folder":
        path.mkdir()
    else:
        path.write_bytes({"empty file": b"", "text": b"hello", "html": b"<html><script>x</script>"}[case])
    with pytest.raises(SargenError, match="victim.png") as error:
        read_image(path)
    assert "\n" not in str(error.value)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files without permission")
@pytest.mark.parametrize("name", ["locked.png", "locked.tif"])
def test_a_file_without_read_permission(tmp_path, name):
    path = tmp_path / name
    write_geotiff(path, np.zeros((4, 4), dtype=np.uint8)) if name.endswith(".tif") else \
        Image.new("L", (4, 4)).save(path)
    path.chmod(0)
    try:
        with pytest.raises(SargenError, match=name):
            read_image(path)
    finally:
        path.chmod(0o644)

"""Whole scenes through app.py --tile: window-by-window reading and writing, COG outputs, no-data at the edges."""

import numpy as np
import pytest
import torch
from geotiff_helpers import UTM_33N, georeferencing, image_structure, read_bands, write_geotiff
from PIL import Image
from test_app import smooth_texture
from ugatit_helpers import one_torch_thread, perturbed_checkpoint  # noqa: F401  (autouse fixture)

import data.image_io
from data.image_io import read_image_with_info, tensor_to_uint8
from data.radiometry import IntensityScaling
from models.file_translation import app_main
from models.tiling import translate_tiled
from models.translators import load_translator
from util.errors import SargenError

TILED = ["--tile", "64", "--overlap", "16", "--precision", "float32", "--device", "cpu"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A light EO (3 channels) -> SAR (1 channel) checkpoint whose every weight is perturbed by 0.02 x randn."""
    return perturbed_checkpoint(tmp_path_factory, n_blocks=2)


def s2_scene(height, width, seed=0):
    """A Sentinel-2-like 4-band uint16 scene (HxWx4), smooth texture plus noise."""
    return (smooth_texture(height, width, channels=4, seed=seed).numpy() * 3000 + 200).astype(np.uint16) \
        .transpose(1, 2, 0)


def to_db(output, window=(-25.0, 0.0)):
    """A model output in [-1, 1] (1xHxW tensor) in dB as app.py writes it."""
    low, high = window
    return np.float32(low) + ((output[0].clamp(-1, 1) + 1) / 2).numpy() * np.float32(high - low)


@pytest.mark.numerics
def test_streamed_output_equals_the_whole_scene_translation(checkpoint, tmp_path, monkeypatch):
    """--tile reads windows of at most one tile with its context, writes rows before the scene is read to the end,
    and gives the in-memory whole-scene tiled translation (percentile window measured over the streamed scene)."""
    scene = s2_scene(300, 200)
    path = write_geotiff(tmp_path / "s2.tif", scene, tiled=True, compress="deflate")
    events = []
    original_rows, original_write = data.image_io.SceneReader.rows, data.image_io.RasterWriter.write_rows

    def recorded_rows(self, top, bottom, left=0, right=None):
        events.append(("read", top, bottom, left, self.width if right is None else right))
        return original_rows(self, top, bottom, left, right)

    def recorded_write(self, top, rows, valid=None):
        events.append(("write", top, top + len(rows)))
        return original_write(self, top, rows, valid)

    monkeypatch.setattr(data.image_io.SceneReader, "rows", recorded_rows)
    monkeypatch.setattr(data.image_io.RasterWriter, "write_rows", recorded_write)
    monkeypatch.setattr(data.image_io, "READ_CHUNK_PIXELS", 1000)  # the window is measured in many small reads
    app_main(["--model_path", str(checkpoint), "--img", str(path), "--out", str(tmp_path / "out.tif"),
              "--bands", "3,2,1", *TILED])
    reads = [event for event in events if event[0] == "read"]
    writes = [event for event in events if event[0] == "write"]
    assert max(max(bottom - top, right - left) for _, top, bottom, left, right in reads) <= 64 + 2 * 32
    last_read = max(position for position, event in enumerate(events) if event[0] == "read")
    assert events.index(writes[0]) < last_read  # rows are written while the scene is still being read
    assert [top for _, top, _ in writes] == [0, *[stop for _, _, stop in writes[:-1]]] and writes[-1][2] == 300
    translator = load_translator(checkpoint, precision="float32")
    image, info = read_image_with_info(path, 3, IntensityScaling(bands=(3, 2, 1)))
    whole, _ = translate_tiled(translator, image * 2 - 1, 64, 16)
    assert np.allclose(read_bands(tmp_path / "out.tif")[:, :, 0], to_db(whole), atol=1e-5)
    assert image_structure(tmp_path / "out.tif")[0]["LAYOUT"] == "COG"


@pytest.mark.numerics
def test_windowed_output_equals_whole_scene_output_away_from_nodata(checkpoint, tmp_path):
    """With a no-data strip (the file's no-data value), the streamed COG equals the whole scene translated in memory
    with the same mask; masked pixels are no-data (NaN) and the georeferencing is the input's."""
    scene = s2_scene(120, 180, seed=1)
    scene[:, :40] = 0
    scene[100:, 150:] = 0
    path = write_geotiff(tmp_path / "strip.tif", scene, nodata=0, interleave="band")
    app_main(["--model_path", str(checkpoint), "--img", str(path), "--out", str(tmp_path / "out.tif"),
              "--bands", "3,2,1", *TILED])
    written = read_bands(tmp_path / "out.tif")[:, :, 0]
    translator = load_translator(checkpoint, precision="float32")
    image, info = read_image_with_info(path, 3, IntensityScaling(bands=(3, 2, 1)))
    whole, _ = translate_tiled(translator, image * 2 - 1, 64, 16, valid=info.valid)
    assert np.isnan(written[~info.valid]).all() and not np.isnan(written[info.valid]).any()
    assert np.allclose(written[info.valid], to_db(whole)[info.valid], atol=1e-5)
    crs, transform, nodata, _ = georeferencing(tmp_path / "out.tif")
    assert crs == UTM_33N and transform == georeferencing(path)[1] and np.isnan(nodata)


@pytest.mark.numerics
def test_a_no_data_edge_neither_darkens_nor_brightens_the_valid_half(checkpoint, tmp_path):
    """The valid half of a half-no-data scene, away from the edge, matches that half translated alone.

    Tolerance, more than 48 px (the context and the overlap) from the edge, on a checkpoint with every weight
    perturbed: with --tile_passes 1 identical; with the default pooled statistics within 3 grey levels on average
    and 20 at most (the statistics of the pixels near the edge still differ a little). Used as data, the no-data
    half shifts the whole valid half by tens of grey levels, which this test would catch.
    """
    height, width, half = 96, 448, 224  # tile columns of the half alone (0, 48, 96) are those of the scene
    rgb = (smooth_texture(height, width, seed=3).numpy().transpose(1, 2, 0) * 254 + 1).astype(np.uint8)
    rgb[:, half:] = 0
    write_geotiff(tmp_path / "scene.tif", rgb, nodata=0)
    write_geotiff(tmp_path / "half.tif", rgb[:, :half])
    write_geotiff(tmp_path / "unmasked.tif", rgb)  # the same pixels without a no-data declaration
    levels = {}
    for passes in ("1", "2"):
        for name in ("scene", "half", "unmasked"):
            out = tmp_path / f"{name}_{passes}.tif"
            app_main(["--model_path", str(checkpoint), "--img", str(tmp_path / f"{name}.tif"), "--out", str(out),
                      "--out_unit", "uint8", "--tile_passes", passes, "--intensity_scaling", "auto", *TILED])
            levels[name, passes] = read_bands(out)[:, : half - 48, 0].astype(int)
    assert np.array_equal(levels["scene", "1"], levels["half", "1"])
    difference = np.abs(levels["scene", "2"] - levels["half", "2"])
    assert difference.mean() <= 3.0 and difference.max() <= 20
    assert np.abs(levels["unmasked", "2"] - levels["half", "2"]).mean() > 15.0


def test_masked_pixels_in_every_output_unit_and_format(checkpoint, tmp_path):
    """No-data is NaN in dB and linear outputs, 0 in uint8 ones (valid pixels 1..255), transparent in PNGs; NaN
    input pixels are no-data without any declaration."""
    power = np.random.default_rng(4).gamma(2.0, 0.05, (48, 40, 3)).astype(np.float32)
    power[5:9, 10:30] = np.nan
    path = write_geotiff(tmp_path / "power.tif", power)
    common = ["--model_path", str(checkpoint), "--img", str(path), "--intensity_scaling", "db", *TILED]
    masked = np.zeros((48, 40), dtype=bool)
    masked[5:9, 10:30] = True
    for unit in ("db", "linear", "uint8"):
        app_main([*common, "--out", str(tmp_path / f"{unit}.tif"), "--out_unit", unit])
        values = read_bands(tmp_path / f"{unit}.tif")[:, :, 0]
        if unit == "uint8":
            assert (values[masked] == 0).all() and (values[~masked] >= 1).all()
        else:
            assert np.isnan(values[masked]).all() and np.isfinite(values[~masked]).all()
    app_main([*common, "--out", str(tmp_path / "out.png"), "--heatmap"])
    with Image.open(tmp_path / "out.png") as image:
        assert image.mode == "LA" and image.size == (40, 48)
        alpha = np.asarray(image)[:, :, 1]
    assert (alpha[masked] == 0).all() and (alpha[~masked] == 255).all()
    with Image.open(tmp_path / "out_heatmap.png") as heatmap:  # the attention's own, quarter resolution
        assert heatmap.size == (10, 12) and heatmap.mode == "RGB"


def test_png_and_small_scenes_stream_like_the_whole_image(checkpoint, tmp_path):
    """A PNG (decoded by Pillow, written from its rows) and a scene smaller than a tile give the in-memory result."""
    translator = load_translator(checkpoint, precision="float32")
    for name, (height, width) in (("large.png", (100, 90)), ("small.png", (20, 30))):
        Image.fromarray((smooth_texture(height, width, seed=5).numpy().transpose(1, 2, 0) * 255).astype(np.uint8)) \
            .save(tmp_path / name)
        app_main(["--model_path", str(checkpoint), "--img", str(tmp_path / name), "--out",
                  str(tmp_path / f"out_{name}"), *TILED])
        image, _ = read_image_with_info(tmp_path / name, 3)
        whole, _ = translate_tiled(translator, image * 2 - 1, 64, 16)
        with Image.open(tmp_path / f"out_{name}") as written:
            assert written.size == (width, height)
            assert np.array_equal(np.asarray(written), tensor_to_uint8(whole, (-1, 1)))


def test_a_failure_midway_leaves_no_output_and_no_temporaries(checkpoint, tmp_path, monkeypatch):
    """A read error in the middle of a scene stops with one line; no partial output, no temporary file is left."""
    (tmp_path / "in").mkdir()
    path = write_geotiff(tmp_path / "in" / "scene.tif", s2_scene(300, 100)[:, :, :3])
    original_rows, calls = data.image_io.SceneReader.rows, []

    def failing_rows(self, top, bottom, left=0, right=None):
        calls.append(top)
        if len(calls) > 8:  # 5 tiles (one per row): the statistics pass reads them, the output pass fails at its 4th
            raise SargenError(f"cannot read image {self.path}: simulated failure")
        return original_rows(self, top, bottom, left, right)

    monkeypatch.setattr(data.image_io.SceneReader, "rows", failing_rows)
    out = tmp_path / "out"
    with pytest.raises(SargenError, match="scene.tif: simulated failure"):
        app_main(["--model_path", str(checkpoint), "--img", str(path), "--out", str(out), "--bands", "1,2,3",
                  *TILED])
    assert not out.exists() or not list(out.iterdir())


class FeedForwardTranslator:
    """The tiler's translator protocol for a plain feed-forward generator (Conv2d + affine InstanceNorm2d): the
    output tensor alone, no heatmap."""

    def __init__(self):
        """A seeded 3 -> 1 channel network with non-trivial instance-norm affine parameters."""
        torch.manual_seed(5)
        self.generator = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"), torch.nn.InstanceNorm2d(8, affine=True),
            torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 3, padding=1, padding_mode="reflect"), torch.nn.Tanh()).eval()
        with torch.no_grad():
            self.generator[1].weight.uniform_(0.5, 1.5)
            self.generator[1].bias.uniform_(-0.5, 0.5)
        self.generator.output_nc, self.device = 1, torch.device("cpu")

    def __call__(self, images):
        """The network's output for a batch."""
        with torch.no_grad():
            return self.generator(images)


@pytest.mark.numerics
def test_a_feed_forward_generator_tiles_through_the_same_tiler():
    """Any Conv2d + InstanceNorm2d generator returning a tensor: one tile equals its whole-image forward (pooled
    statistics with the affine applied); so do smaller tiles with pooled statistics and context beyond the network's
    reach, unlike tiles alone."""
    translator = FeedForwardTranslator()
    image = smooth_texture(96, 96, seed=9) * 2 - 1
    whole = translator(image[None])[0]
    one_tile, heatmap = translate_tiled(translator, image, tile=96, overlap=16)
    assert heatmap is None and torch.allclose(one_tile, whole, atol=1e-5)
    pooled, _ = translate_tiled(translator, image, tile=32, overlap=8, context=8)
    alone, _ = translate_tiled(translator, image, tile=32, overlap=8, context=8, passes=1)
    assert torch.allclose(pooled, whole, atol=1e-5) and (alone - whole).abs().mean() > 1e-3

"""Tests of app.py: exact agreement with the network, bfloat16 accuracy, inputs, tiling, heatmaps and errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_script
from geotiff_helpers import UTM_33N, UTM_TRANSFORM, georeferencing, image_structure, read_bands, write_geotiff
from PIL import Image
from ugatit_helpers import one_torch_thread, perturbed_generators  # noqa: F401  (autouse fixture)

from data.image_io import read_image, tensor_to_uint8, write_image
from data.radiometry import IntensityScaling
from models.file_translation import app_main
from models.tiling import edge_ramp, translate_tiled
from models.translators import load_translator
from models.ugatit_inference import Translator
from models.ugatit_networks import Generator, ResnetBlock
from util.errors import SargenError

KEY_LIST_PATH = Path(__file__).parent / "data" / "ugatit_eo2sar_checkpoint_keys.json"


def smooth_texture(height, width, channels=3, seed=0):
    """A stationary, smoothly varying random image in [0, 1] (CxHxW), like a land-cover scene."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, channels, height // 8 + 2, width // 8 + 2, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(height + 16, width + 16), mode="bicubic",
                                             align_corners=False)[0, :, 8:-8, 8:-8]
    return (smooth + 0.05 * torch.rand(channels, height, width, generator=generator)).clamp(0, 1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A fixed, seeded light checkpoint (ngf 8, 2 blocks, img 32, EO 3 -> SAR 1 channel) in reference format."""
    torch.manual_seed(3)
    networks = {"genA2B": Generator(3, 1, ngf=8, n_blocks=2, img_size=32, light=True),
                "genB2A": Generator(1, 3, ngf=8, n_blocks=2, img_size=32, light=True)}
    with torch.no_grad():  # move rho off its initial values so both norm mixtures matter
        for network in networks.values():
            for name, parameter in network.named_parameters():
                if name.endswith("rho"):
                    parameter.uniform_(0.2, 0.8)
    path = tmp_path_factory.mktemp("ckpt") / "eo2sar_params_latest.pt"
    torch.save({name: network.state_dict() for name, network in networks.items()}, path)
    return path


@pytest.fixture(scope="module")
def eo_image(tmp_path_factory):
    """A 32 px optical PNG."""
    path = tmp_path_factory.mktemp("img") / "scene.png"
    write_image(smooth_texture(32, 32, seed=1), path)
    return path


def test_app_output_equals_the_network_forward_bit_for_bit(checkpoint, eo_image, tmp_path):
    """--precision float32 writes exactly the 8-bit image of genA2B's forward pass."""
    app_main(["--model_path", str(checkpoint), "--img", str(eo_image), "--out", str(tmp_path),
              "--img_size", "32", "--out_img_size", "32", "--precision", "float32", "--device", "cpu"])
    written = np.asarray(Image.open(tmp_path / "gen_sar_scene.png"))
    generator = Generator(3, 1, ngf=8, n_blocks=2, img_size=32, light=True)
    generator.load_state_dict(torch.load(checkpoint, weights_only=True)["genA2B"])
    with torch.no_grad():
        expected = generator.eval()(read_image(eo_image, 3)[None] * 2 - 1)[0][0]
    assert np.array_equal(written, tensor_to_uint8(expected, (-1.0, 1.0)))


@pytest.mark.numerics
def test_cpu_default_is_float32_and_mixed_bfloat16_stays_close(tmp_path):
    """On the CPU --precision auto is float32; the mixed bfloat16 path (asked for) stays near it on a checkpoint
    whose every weight is perturbed by 0.02 x randn, keeping the early encoder and attention in float32."""
    path = tmp_path / "perturbed.pt"
    torch.save(perturbed_generators(ngf=8, n_blocks=2, img_size=32, input_nc=3, output_nc=1), path)
    assert load_translator(path, precision="auto").dtype is None
    image = smooth_texture(48, 48, seed=2) * 2 - 1
    fast = load_translator(path, precision="bfloat16")
    plain = load_translator(path, precision="float32")
    difference = (tensor_to_uint8(fast(image[None])[0][0], (-1, 1)).astype(int)
                  - tensor_to_uint8(plain(image[None])[0][0], (-1, 1)).astype(int))
    assert np.abs(difference).mean() < 0.75
    assert np.abs(difference).max() <= 4
    assert fast.generator.UpBlock1_1.conv1.weight.dtype == torch.bfloat16
    assert plain.generator.UpBlock1_1.conv1.weight.dtype == torch.float32
    # the early encoder and the attention's 1x1 convolution stay float32: their rounding reaches every pixel
    encoder_blocks = [layer for layer in fast.generator.DownBlock if isinstance(layer, ResnetBlock)]
    assert encoder_blocks[0].conv_block[1].weight.dtype == torch.float32
    assert encoder_blocks[-1].conv_block[1].weight.dtype == torch.bfloat16
    assert fast.generator.conv1x1.weight.dtype == torch.float32


def test_folder_glob_heatmap_and_channels(checkpoint, tmp_path):
    """--img takes a folder or a glob; grey inputs work; --heatmap writes a colour overlay beside the output."""
    inputs = tmp_path / "in"
    write_image(smooth_texture(40, 56, channels=1, seed=4), inputs / "grey.png")
    write_image(smooth_texture(24, 24, seed=5), inputs / "rgb.png")
    outputs = tmp_path / "out"
    app_main(["--model_path", str(checkpoint), "--img", str(inputs), "--out", str(outputs), "--heatmap"])
    with Image.open(outputs / "gen_sar_grey.png") as image:
        assert (image.size, image.mode) == ((256, 256), "L")
    with Image.open(outputs / "gen_sar_grey_heatmap.png") as heatmap:
        assert (heatmap.size, heatmap.mode) == ((256, 256), "RGB")
        pixels = np.asarray(heatmap).astype(int)
        assert (pixels[..., 0] - pixels[..., 2]).std() > 10  # a colour map, not grey
    app_main(["--model_path", str(checkpoint), "--img", str(inputs / "r*.png"), "--out", str(tmp_path / "glob"),
              "--out_img_size", "0"])
    assert sorted(path.name for path in (tmp_path / "glob").iterdir()) == ["gen_sar_rgb.png", "manifest.json"]
    with Image.open(tmp_path / "glob" / "gen_sar_rgb.png") as image:
        assert image.size == (24, 24)


def test_tiled_output_matches_untiled_and_has_no_seam_lines(checkpoint):
    """A 256 px scene in 128 px tiles keeps its size, stays close to the whole-image translation, no seams."""
    translator = load_translator(checkpoint, precision="float32")
    image = smooth_texture(256, 232, seed=8) * 2 - 1
    whole = tensor_to_uint8(translator(image[None])[0][0], (-1, 1)).astype(float)
    tiled, heatmap = translate_tiled(translator, image, tile=128, overlap=48, tile_batch=3)
    assert tiled.shape == (1, 256, 232) and heatmap.shape == (1, 64, 58)
    tiled_levels = tensor_to_uint8(tiled, (-1, 1)).astype(float)
    assert np.abs(tiled_levels - whole).mean() < 4.0
    # tiles normalized on their own (one pass) drift much further from the whole image
    alone = tensor_to_uint8(translate_tiled(translator, image, 128, 48, passes=1)[0], (-1, 1)).astype(float)
    assert np.abs(alone - whole).mean() > 1.5 * np.abs(tiled_levels - whole).mean()
    # no seam lines: the step across a tile border is no larger than the image's ordinary pixel steps
    column_steps = np.abs(np.diff(tiled_levels, axis=1)).mean(axis=0)
    row_steps = np.abs(np.diff(tiled_levels, axis=0)).mean(axis=1)
    for steps in (column_steps, row_steps):
        assert steps.max() < 2.0 * np.median(steps) + 1.0


@pytest.mark.numerics
def test_one_tile_with_shared_statistics_equals_the_whole_image(checkpoint):
    """When one tile covers the image, the pooled statistics are the image's own: same output as untiled."""
    translator = load_translator(checkpoint, precision="float32")
    image = smooth_texture(64, 64, seed=7) * 2 - 1
    whole = translator(image[None])[0][0]
    tiled, _ = translate_tiled(translator, image, tile=64, overlap=16)
    assert torch.allclose(tiled, whole, atol=1e-5)


def test_hard_tile_edges_would_show_seams(checkpoint):
    """The seam check above can fail: pasting tiles without blending leaves visible steps."""
    translator = load_translator(checkpoint, precision="float32")
    image = smooth_texture(128, 128, seed=6) * 2 - 1
    pasted = torch.cat([torch.cat([translator(image[None, :, r:r + 64, c:c + 64])[0][0] for c in (0, 64)], dim=2)
                        for r in (0, 64)], dim=1)
    levels = tensor_to_uint8(pasted, (-1, 1)).astype(float)
    column_steps = np.abs(np.diff(levels, axis=1)).mean(axis=0)
    assert column_steps[63] > 2.0 * np.median(column_steps) + 1.0


def test_tiles_are_translated_in_bounded_batches(checkpoint):
    """Memory is bounded by --tile_batch: no call sees more tiles than that, whatever the image size; with the
    default passes every tile is translated once (the statistics pass's outputs are kept); with 3 passes and a
    sample smaller than the image, the sample's tiles, then every tile in the sweep and again for the output."""
    translator = load_translator(checkpoint, precision="float32")
    seen = []
    original_call = Translator.__call__

    class Recording(Translator):
        def __call__(self, images):
            seen.append(images.shape[0])
            return original_call(self, images)

    recording = Recording(translator.generator, "cpu", "float32")
    image = smooth_texture(200, 120) * 2 - 1
    # tiles of 64 + 2 x 32 context px: rows start at 0, 48, 72; one column (the image is narrower than a tile)
    for passes, statistics_pixels, translations in ((1, None, 3), (2, None, 3), (3, 128 * 120, 2 + 3 + 3)):
        seen.clear()
        translate_tiled(recording, image, tile=64, overlap=16, tile_batch=2, passes=passes,
                        **({"statistics_pixels": statistics_pixels} if statistics_pixels else {}))
        assert max(seen) <= 2 and sum(seen) == translations


def test_blend_ramps_fade_over_the_overlap_after_the_context():
    """A tile's weight is 0 over the context at edges shared with a neighbour, ramps over the overlap, is 1 at
    image borders; the ramps of neighbouring tiles (stride tile - overlap) sum to a constant."""
    first, second = edge_ramp(32, 4, 8, False, True), edge_ramp(32, 4, 8, True, False)
    assert first[0] == 1 and first[-8:].eq(0).all() and 0 < first[-9] < 0.2
    line = torch.zeros(44)  # tiles of 16 + 2 x 8 px, 12 px apart
    line[:32] += first
    line[12:] += second
    assert torch.allclose(line, torch.ones(44))


def test_published_key_list_checkpoint_runs(tmp_path, eo_image):
    """A checkpoint with the published eo2sar generators' keys and shapes loads (ngf 64, 4 blocks, light)."""
    published = json.loads(KEY_LIST_PATH.read_text())
    generator = torch.Generator().manual_seed(0)
    payload = {name: {key: torch.randn(shape, generator=generator) * 0.02
                      for key, shape in published["state_dicts"][name]}
               for name in ("genA2B", "genB2A")}
    torch.save(payload, tmp_path / "eo2sar.pt")
    translator = load_translator(tmp_path / "eo2sar.pt", precision="float32")
    g = translator.generator
    assert (g.ngf, g.n_blocks, g.light, g.img_size, g.input_nc, g.output_nc) == (64, 4, True, 256, 3, 3)
    app_main(["--model_path", str(tmp_path / "eo2sar.pt"), "--img", str(eo_image), "--out", str(tmp_path / "o.png"),
              "--img_size", "32", "--out_img_size", "48"])
    with Image.open(tmp_path / "o.png") as image:
        assert (image.size, image.mode) == ((48, 48), "RGB")


def test_wrong_checkpoint_names_the_key_and_shapes(checkpoint, eo_image, tmp_path):
    """A checkpoint whose tensor does not fit prints one line naming the key and both shapes."""
    payload = torch.load(checkpoint, weights_only=True)
    payload["genA2B"]["UpBlock1_1.conv1.weight"] = torch.zeros(16, 32, 3, 3)
    torch.save(payload, tmp_path / "bad.pt")
    code, _, stderr = run_script("app.py", ["--model_path", tmp_path / "bad.pt", "--img", eo_image,
                                            "--out", tmp_path, "--device", "cpu"])
    assert code == 2 and "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert "'UpBlock1_1.conv1.weight'" in line and "[16, 32, 3, 3]" in line and "[32, 32, 3, 3]" in line
    assert "bad.pt" in line
    assert not (tmp_path / "gen_sar_scene.png").exists()


def test_bad_inputs_are_one_line_errors(checkpoint, eo_image, tmp_path):
    """Missing images, unavailable devices and ambiguous --out are SargenErrors naming the option or file."""
    with pytest.raises(SargenError, match="--img .*missing.*: no image file, folder or glob match"):
        app_main(["--model_path", str(checkpoint), "--img", str(tmp_path / "missing*.png")])
    if not torch.cuda.is_available():
        with pytest.raises(SargenError, match="--device cuda"):
            app_main(["--model_path", str(checkpoint), "--img", str(eo_image), "--device", "cuda"])
    for name in ("one.png", "two.png"):
        write_image(smooth_texture(16, 16), tmp_path / "two" / name)
    with pytest.raises(SargenError, match="--out .*out.png is a file name"):
        app_main(["--model_path", str(checkpoint), "--img", str(tmp_path / "two"), "--out", str(tmp_path / "out.png")])
    with pytest.raises(SargenError, match="other.pt holds no generator sargen can run .*weights.*U-GAT-IT.*"
                                          "gatys_feedforward"):
        torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
        app_main(["--model_path", str(tmp_path / "other.pt"), "--img", str(eo_image)])


@pytest.fixture(scope="module")
def s2_geotiff(tmp_path_factory):
    """A 40 x 56 px georeferenced 4-band uint16 GeoTIFF (Sentinel-2 B2, B3, B4, B8 reflectance x 10000)."""
    texture = smooth_texture(40, 56, channels=4, seed=11).numpy()
    path = tmp_path_factory.mktemp("geo") / "s2_scene.tif"
    return write_geotiff(path, (texture * 3000 + 200).astype(np.uint16).transpose(1, 2, 0), interleave="band")


def test_geotiff_in_tiled_cog_out_with_the_same_georeferencing(checkpoint, s2_geotiff, tmp_path):
    """app.py --tile on a GeoTIFF writes gen_sar_NAME.tif: a COG of the same size, CRS and transform, dB values."""
    code, _, stderr = run_script("app.py", ["--model_path", checkpoint, "--img", s2_geotiff, "--out", tmp_path,
                                            "--tile", "32", "--overlap", "8", "--bands", "3,2,1",
                                            "--precision", "float32", "--device", "cpu"])
    assert code == 0, stderr
    written = tmp_path / "gen_sar_s2_scene.tif"
    db = read_bands(written)[:, :, 0]
    assert db.shape == (40, 56) and db.dtype == np.float32
    assert -25.0 <= db.min() < db.max() <= 0.0
    crs, transform, nodata, _ = georeferencing(written)
    assert crs == UTM_33N and transform == UTM_TRANSFORM and np.isnan(nodata)
    assert image_structure(written)[0]["LAYOUT"] == "COG"
    # the same translation in 8-bit levels (0 is no-data, so valid pixels are 1..255) and in linear power
    args = ["--model_path", str(checkpoint), "--img", str(s2_geotiff), "--tile", "32", "--overlap", "8",
            "--bands", "3,2,1", "--precision", "float32", "--device", "cpu"]
    app_main([*args, "--out", str(tmp_path / "levels.tif"), "--out_unit", "uint8"])
    app_main([*args, "--out", str(tmp_path / "power.tif"), "--out_unit", "linear"])
    levels = read_bands(tmp_path / "levels.tif")[:, :, 0]
    expected_levels = np.maximum(np.round((db + 25.0) / 25.0 * 255.0), 1)
    assert levels.dtype == np.uint8 and np.abs(levels - expected_levels).max() <= 1
    assert georeferencing(tmp_path / "levels.tif")[2] == 0
    assert np.allclose(read_bands(tmp_path / "power.tif")[:, :, 0], 10 ** (db / 10.0), rtol=1e-5)


def test_uint8_geotiff_reads_like_its_png_and_comes_out_as_georeferenced_levels(checkpoint, tmp_path):
    """A checkpoint without a record (the published eo2sar file) on a 3-band uint8 GeoTIFF needs no flag: read as
    the same pixels saved as PNG (value / 255), written as 8-bit levels on the input's grid. 16-bit is refused."""
    pixels = tensor_to_uint8(smooth_texture(32, 32, seed=4))
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    write_geotiff(tmp_path / "rgb.tif", pixels)
    common = ["--model_path", str(checkpoint), "--img_size", "32", "--out_img_size", "32", "--precision", "float32",
              "--device", "cpu"]
    app_main([*common, "--img", str(tmp_path / "rgb.png"), "--out", str(tmp_path / "out")])
    app_main([*common, "--img", str(tmp_path / "rgb.tif"), "--out", str(tmp_path / "out")])
    png_levels = np.asarray(Image.open(tmp_path / "out" / "gen_sar_rgb.png")).astype(int)
    written = tmp_path / "out" / "gen_sar_rgb.tif"
    levels = read_bands(written)[:, :, 0]
    assert levels.dtype == np.uint8 and levels.shape == (32, 32)
    assert np.array_equal(levels, np.maximum(png_levels, 1))  # 0 marks no-data in uint8 GeoTIFFs
    crs, transform, nodata, _ = georeferencing(written)
    assert crs == UTM_33N and transform == UTM_TRANSFORM and nodata == 0
    assert image_structure(written)[0]["LAYOUT"] == "COG"
    write_geotiff(tmp_path / "rgb16.tif", pixels.astype(np.uint16) * 257)
    code, _, stderr = run_script("app.py", [*common, "--img", tmp_path / "rgb16.tif", "--out", tmp_path / "out"])
    assert code == 2 and stderr.strip().splitlines()[-1].startswith("error: checkpoint ")
    assert "uint16 pixels" in stderr and "--intensity_scaling_A" in stderr
    assert not (tmp_path / "out" / "gen_sar_rgb16.tif").exists()


def test_geotiff_output_values_follow_the_network_and_out_db_window(checkpoint, s2_geotiff, tmp_path):
    """Untiled, a GeoTIFF keeps its size whatever --out_img_size; dB = low + (y + 1) / 2 (high - low)."""
    app_main(["--model_path", str(checkpoint), "--img", str(s2_geotiff), "--out", str(tmp_path), "--bands", "3,2,1",
              "--img_size", "32", "--out_db_window=-30,5", "--precision", "float32", "--device", "cpu"])
    db = read_bands(tmp_path / "gen_sar_s2_scene.tif")[:, :, 0]
    translator = load_translator(checkpoint, precision="float32", img_size=32)
    source = read_image(s2_geotiff, 3, IntensityScaling(bands=(3, 2, 1))) * 2 - 1
    small = torch.nn.functional.interpolate(source[None], size=(32, 32), mode="bilinear", antialias=True)[0]
    expected = torch.nn.functional.interpolate(translator(small[None].clamp(-1, 1))[0], size=(40, 56),
                                               mode="bilinear", antialias=True)[0, 0].clamp(-1, 1)
    assert db.shape == (40, 56)
    assert np.allclose(db, -30.0 + (expected.numpy() + 1) / 2 * 35.0, atol=1e-3)


def test_geotiff_errors_are_one_line(checkpoint, tmp_path):
    """A band beyond the file's and a stack of pages stop app.py with one line naming the file; nothing written."""
    write_geotiff(tmp_path / "vv_vh.tif", np.full((16, 16, 2), 0.05, dtype=np.float32))
    with pytest.raises(SargenError, match=r"--bands 1,2,3: .*vv_vh.tif has 2 band\(s\), no band 3"):
        app_main(["--model_path", str(checkpoint), "--img", str(tmp_path / "vv_vh.tif"), "--bands", "1,2,3",
                  "--out", str(tmp_path), "--device", "cpu"])
    frames = [Image.fromarray(np.full((16, 16), value, dtype=np.uint8)) for value in (1, 2)]
    frames[0].save(tmp_path / "stack.tif", save_all=True, append_images=frames[1:])
    for tile in ("0", "32"):
        with pytest.raises(SargenError, match=r"stack.tif: it holds 2 images"):
            app_main(["--model_path", str(checkpoint), "--img", str(tmp_path / "stack.tif"), "--out", str(tmp_path),
                      "--intensity_scaling", "percentile", "--device", "cpu", "--tile", tile])
    assert not list(tmp_path.glob("gen_sar_*")) and not list(tmp_path.glob(".*"))

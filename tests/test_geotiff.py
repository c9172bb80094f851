"""GeoTIFF input and output: band layouts, georeferencing round trip, dB conversion and its inverse, errors."""

import argparse

import numpy as np
import pytest
import tifffile
import torch
from geotiff_helpers import tag_values, write_geotiff
from PIL import Image

from data.image_io import add_image_options, read_image, read_image_with_info, read_raster, write_image, write_raster
from data.radiometry import IntensityScaling, db_to_linear, linear_to_db
from util.errors import SargenError


def sar_power(height=12, width=16, seed=0):
    """Seeded VV/VH linear backscatter (HxWx2 float32), VH about 7 dB below VV."""
    rng = np.random.default_rng(seed)
    vv = rng.gamma(3.0, 0.05 / 3.0, (height, width))
    return np.stack([vv, vv * 0.2 * rng.gamma(5.0, 0.2, (height, width))], axis=2).astype(np.float32)


@pytest.mark.parametrize(("dtype", "bands", "planarconfig"), [
    (np.float32, 2, "contig"), (np.float32, 2, "separate"), (np.uint16, 4, "contig"),
    (np.uint16, 4, "separate"), (np.uint8, 3, "contig"), (np.float32, 1, "contig")])
def test_single_and_multi_band_layouts_read_as_bands(tmp_path, dtype, bands, planarconfig):
    """HxW, HxWxC (pixel-interleaved) and CxHxW (band-separate) GeoTIFFs read as the same HxWxC array."""
    rng = np.random.default_rng(bands)
    array = (rng.random((12, 16, bands)) * (1 if dtype == np.float32 else np.iinfo(dtype).max)).astype(dtype)
    stored = array[:, :, 0] if bands == 1 else array.transpose(2, 0, 1) if planarconfig == "separate" else array
    raw, geotags = read_raster(write_geotiff(tmp_path / "scene.tif", stored, planarconfig))
    assert raw.dtype == dtype and np.array_equal(raw, array)
    assert {tag[0] for tag in geotags} == {33550, 33922, 34735, 34737, 42112, 42113}


def test_geotiff_round_trip_keeps_values_and_georeferencing(tmp_path):
    """Reading then writing a float32 VV/VH GeoTIFF gives back the same values and the same GeoTIFF tags."""
    power = sar_power()
    source = write_geotiff(tmp_path / "s1_grd.tif", power.transpose(2, 0, 1), "separate")
    raw, geotags = read_raster(source)
    write_raster(raw, tmp_path / "copy.tif", geotags)
    again, again_tags = read_raster(tmp_path / "copy.tif")
    assert np.array_equal(again, power) and again.dtype == np.float32
    assert again_tags == geotags
    assert tag_values(tmp_path / "copy.tif") == tag_values(source)
    with tifffile.TiffFile(tmp_path / "copy.tif") as tif:  # readable as GeoTIFF: CRS and grid decoded
        geo = tif.geotiff_metadata
    assert int(geo["ProjectedCSTypeGeoKey"]) == 32633 and geo["ModelPixelScale"] == [10.0, 10.0, 0.0]
    assert not list(tmp_path.glob(".*tmp*")), "written atomically: no temporary file left"


def test_read_image_with_info_reports_window_size_and_tags(tmp_path):
    """The info names the window used, the file's dtype, size and band count, and whether it is georeferenced."""
    path = write_geotiff(tmp_path / "vv_vh.tif", sar_power())
    image, info = read_image_with_info(path, 1, IntensityScaling("db", bands=(1,)))
    assert image.shape == (1, 12, 16)
    assert (info.window, info.dtype, info.size, info.band_count) == ((-25.0, 0.0), "float32", (12, 16), 2)
    assert info.georeferenced
    _, plain = read_image_with_info(write_geotiff(tmp_path / "plain.tif", sar_power(), tags=False), 1,
                                    IntensityScaling("db", bands=(1,)))
    assert not plain.georeferenced and plain.geotags == ()


def test_db_conversion_and_inverse_by_hand(tmp_path):
    """Linear power 0.001, 0.01, 0.1, 1 is -30, -20, -10, 0 dB; in the -25..0 window 0, 0.2, 0.6, 1; and back."""
    assert np.allclose(linear_to_db(np.array([0.001, 0.01, 0.1, 1.0])), [-30.0, -20.0, -10.0, 0.0])
    assert np.allclose(db_to_linear(np.array([-30.0, -20.0, -10.0, 0.0])), [0.001, 0.01, 0.1, 1.0])
    power = np.array([[0.001, 0.01, 0.1, 1.0]], dtype=np.float32)
    scaling = IntensityScaling("db", db_window=(-25.0, 0.0))
    image, info = read_image_with_info(write_geotiff(tmp_path / "power.tif", power), scaling=scaling)
    assert torch.allclose(image[0, 0], torch.tensor([0.0, 0.2, 0.6, 1.0]), atol=1e-6)
    unit = image.numpy().transpose(1, 2, 0)
    assert np.allclose(scaling.from_unit_range(unit, info.window, "db")[0, :, 0], [-25.0, -20.0, -10.0, 0.0],
                       atol=1e-5)
    linear = scaling.from_unit_range(unit, info.window)  # the --input_unit by default: linear power back
    assert np.allclose(linear[0, :, 0], [10 ** -2.5, 0.01, 0.1, 1.0], rtol=1e-5)
    in_db = IntensityScaling("db", db_window=(-20.0, 5.0), input_unit="db")
    assert np.allclose(in_db.from_unit_range(np.array([0.0, 0.5, 1.0]), in_db.db_window), [-20.0, -7.5, 5.0])


def test_percentile_window_used_is_returned_and_inverts(tmp_path):
    """The per-image percentile values actually used come back in the info and map [0, 1] back to the values."""
    values = np.arange(1, 401, dtype=np.float32).reshape(20, 20) ** 1.5
    scaling = IntensityScaling("percentile", percentiles=(2.0, 98.0))
    image, info = read_image_with_info(write_geotiff(tmp_path / "amplitude.tif", values), scaling=scaling)
    assert np.allclose(info.window, np.percentile(values, (2.0, 98.0)))
    back = scaling.from_unit_range(image.numpy()[0], info.window)
    assert np.allclose(back, np.clip(values, *info.window), rtol=1e-5)


def test_bands_option_picks_and_orders_bands(tmp_path):
    """--bands is 1-based, keeps the order given, and is applied before the channel rules."""
    bands = np.stack([np.full((8, 8), 1000 * (band + 1), dtype=np.uint16) for band in range(4)], axis=2)
    bands[0, 0] = 0  # a darker pixel, so the percentile window is not empty
    path = write_geotiff(tmp_path / "s2_b2348.tif", bands)
    parser = add_image_options(argparse.ArgumentParser())
    scaling = IntensityScaling.from_options(parser.parse_args(["--bands", "3,2,1", "--intensity_scaling", "minmax"]))
    assert scaling.bands == (3, 2, 1)
    rgb = read_image(path, 3, scaling)
    assert rgb[0, 1, 1] > rgb[1, 1, 1] > rgb[2, 1, 1]  # band 3 (brightest of the three) first
    nir = read_image(path, 3, IntensityScaling("minmax", bands=(4,)))
    assert torch.equal(nir[0], nir[2]) and nir[0, 1, 1] == 1.0
    with pytest.raises(SystemExit):
        parser.parse_args(["--bands", "0"])


def test_band_out_of_range_names_the_file_and_band_count(tmp_path):
    """--bands beyond the file's bands is one line naming the option, the file and its band count."""
    path = write_geotiff(tmp_path / "vv_vh.tif", sar_power())
    with pytest.raises(SargenError, match=r"^--bands 1,3: .*vv_vh.tif has 2 band\(s\), no band 3$"):
        read_image(path, 1, IntensityScaling("db", bands=(1, 3)))


def test_two_bands_without_bands_option_asks_for_it(tmp_path):
    """A VV/VH file for a 1-channel model needs --bands: the error names the file and the option."""
    path = write_geotiff(tmp_path / "vv_vh.tif", sar_power())
    with pytest.raises(SargenError, match=r"vv_vh.tif has 2 band\(s\) .*takes 1 channel.*--bands"):
        read_image(path, 1)


@pytest.mark.parametrize(("name", "array"), [
    ("volume.tif", np.zeros((2, 3, 8, 8), dtype=np.float32)),  # 4-D
    ("pages.tif", np.zeros((2, 8, 8), dtype=np.float32)),  # a stack of two images, not a two-band image
])
def test_unsupported_layout_is_one_line_naming_the_file(tmp_path, name, array):
    """Layouts that are not one (multi-band) image give one line naming the file and what to do."""
    tifffile.imwrite(tmp_path / name, array, photometric="minisblack")
    expected = rf"cannot read image .*{name}: unsupported TIFF layout .*planarconfig"
    with pytest.raises(SargenError, match=expected) as error:
        read_image(tmp_path / name)
    assert "\n" not in str(error.value)


def test_nan_pixels_in_a_geotiff_are_refused(tmp_path):
    """NaN (no-data) pixels are refused with the file's name."""
    power = sar_power()
    power[3, 4, 1] = np.nan
    with pytest.raises(SargenError, match=r"holes.tif has NaN or infinite pixels"):
        read_image(write_geotiff(tmp_path / "holes.tif", power), scaling=IntensityScaling(bands=(1, 2)))


def test_complex_pixels_are_refused(tmp_path):
    """Complex (SLC) data is refused with what to do."""
    tifffile.imwrite(tmp_path / "slc.tif", np.ones((8, 8), dtype=np.complex64))
    with pytest.raises(SargenError, match=r"slc.tif holds complex .* intensity"):
        read_image(tmp_path / "slc.tif")


@pytest.mark.parametrize("kind", ["lzw", "palette", "rgba"])
def test_tiffs_for_pillow_and_alpha_still_read(tmp_path, kind):
    """LZW (no imagecodecs needed) and palette TIFFs read through Pillow; RGBA drops the alpha band."""
    rgb = np.random.default_rng(9).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    path = tmp_path / f"{kind}.tif"
    if kind == "lzw":
        Image.fromarray(rgb).save(path, compression="tiff_lzw")
    elif kind == "palette":
        Image.fromarray(rgb).convert("P").save(path)
        rgb = np.asarray(Image.open(path).convert("RGB"))
    else:
        Image.fromarray(np.dstack([rgb, np.full((8, 10), 7, np.uint8)])).save(path)
    raw, _ = read_raster(path)
    assert np.array_equal(raw, rgb)


@pytest.mark.parametrize("compression", ["lzw", "zstd", "deflate"])
def test_compressed_multi_band_geotiffs_read_like_gdal_writes_them(tmp_path, compression):
    """GDAL's usual compressions of a 2-band float32 GeoTIFF read exactly, with their georeferencing."""
    power = np.random.default_rng(4).gamma(2.0, 0.05, (2, 12, 16)).astype(np.float32)
    path = write_geotiff(tmp_path / f"{compression}.tif", power, planarconfig="separate", compression=compression)
    raw, geotags = read_raster(path)
    assert np.array_equal(raw, power.transpose(1, 2, 0))
    assert {tag[0] for tag in geotags} >= {33550, 33922, 34735}


def test_write_image_to_tif_is_eight_bit(tmp_path):
    """write_image to .tif writes the same 8-bit levels as to .png, through the one TIFF writer."""
    image = torch.rand(3, 6, 7)
    write_image(image, tmp_path / "a.tif")
    write_image(image, tmp_path / "a.png")
    assert np.array_equal(read_raster(tmp_path / "a.tif")[0], np.asarray(Image.open(tmp_path / "a.png")))

"""Rasters through rasterio: band layouts, CRSs, georeferencing kept, COG output, no-data, JPEG2000, VRT, errors."""

import argparse
import time

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import torch
from affine import Affine
from geotiff_helpers import UTM_33N, UTM_TRANSFORM, georeferencing, image_structure, read_bands, write_geotiff
from PIL import Image
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS

from data.image_io import (
    SceneReader,
    add_image_options,
    read_image,
    read_image_with_info,
    read_raster,
    write_image,
    write_raster,
)
from data.radiometry import IntensityScaling, db_to_linear, linear_to_db
from util.errors import SargenError

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # test files without CRS
CRS_CASES = {  # a projected, a geographic, an equal-area and a custom (PROJ string) CRS, each with its grid
    "utm33n": (UTM_33N, UTM_TRANSFORM),
    "wgs84": (CRS.from_epsg(4326), Affine(0.0001, 0.0, 12.5, 0.0, -0.0001, 41.9)),
    "laea_europe": (CRS.from_epsg(3035), Affine(20.0, 0.0, 4321000.0, 0.0, -20.0, 3210000.0)),
    "polar_stereographic": (CRS.from_proj4("+proj=stere +lat_0=90 +lat_ts=70 +lon_0=-45 +datum=WGS84 +units=m"),
                            Affine(25.0, 0.0, -3850000.0, 0.0, -25.0, 5850000.0)),
}
LAYOUTS = {  # how GDAL users store bands: interleaving, tiling, compression
    "striped_pixel_interleaved": {},
    "band_separate": {"interleave": "band"},
    "tiled": {"tiled": True},
    "tiled_band_separate_deflate": {"tiled": True, "interleave": "band", "compress": "deflate"},
    "striped_lzw": {"compress": "lzw"},
    "tiled_zstd": {"tiled": True, "compress": "zstd"},
}


def sar_power(height=12, width=16, seed=0):
    """Seeded VV/VH linear backscatter (HxWx2 float32), VH about 7 dB below VV."""
    rng = np.random.default_rng(seed)
    vv = rng.gamma(3.0, 0.05 / 3.0, (height, width))
    return np.stack([vv, vv * 0.2 * rng.gamma(5.0, 0.2, (height, width))], axis=2).astype(np.float32)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("dtype", "bands"), [(np.float32, 2), (np.uint16, 4), (np.uint8, 3), (np.float32, 1)])
def test_every_layout_reads_as_the_same_bands_with_georeferencing(tmp_path, layout, dtype, bands):
    """Striped, tiled, pixel-interleaved, band-separate and compressed GeoTIFFs read as the same HxWxC array."""
    rng = np.random.default_rng(bands)
    array = (rng.random((20, 34, bands)) * (1 if dtype == np.float32 else np.iinfo(dtype).max)).astype(dtype)
    names = tuple(f"B{band + 1}" for band in range(bands))
    path = write_geotiff(tmp_path / "scene.tif", array, descriptions=names, nodata=0, **LAYOUTS[layout])
    raw, info = read_raster(path)
    assert raw.dtype == dtype and np.array_equal(raw, array)
    assert (info.crs, info.transform, info.nodata, info.descriptions) == (UTM_33N, UTM_TRANSFORM, 0.0, names)
    assert info.georeferenced and info.band_count == bands


@pytest.mark.parametrize("crs_name", CRS_CASES)
@pytest.mark.parametrize("layout", ["band_separate", "tiled_zstd"])
def test_georeferencing_is_kept_in_the_cog_written_back(tmp_path, crs_name, layout):
    """Reading then writing a float32 VV/VH scene gives the same values, CRS and transform, as a valid COG."""
    crs, transform = CRS_CASES[crs_name]
    power = sar_power()
    source = write_geotiff(tmp_path / "s1_grd.tif", power, crs=crs, transform=transform, **LAYOUTS[layout])
    raw, info = read_raster(source)
    write_raster(raw, tmp_path / "copy.tif", info)
    assert np.array_equal(read_bands(tmp_path / "copy.tif"), power)
    written_crs, written_transform, _, _ = georeferencing(tmp_path / "copy.tif")
    assert written_crs == crs and written_transform.almost_equals(transform, precision=1e-9)
    assert image_structure(tmp_path / "copy.tif")[0]["LAYOUT"] == "COG"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["copy.tif", "s1_grd.tif"], "no temporary left"


def test_written_rasters_are_cloud_optimized_with_overviews_and_no_data(tmp_path):
    """A 1,100 x 700 output: tiled 512 px, deflate, internal overviews, GDAL's LAYOUT=COG, no-data NaN."""
    values = np.random.default_rng(1).normal(-12, 3, (700, 1100, 1)).astype(np.float32)
    valid = np.ones((700, 1100), dtype=bool)
    valid[:, :80] = False  # a no-data strip
    path = write_raster(values, tmp_path / "scene_db.tif", read_raster(write_geotiff(
        tmp_path / "in.tif", np.zeros((700, 1100), np.uint8)))[1], valid, nodata=np.nan, units=("dB",))
    structure, overviews, block = image_structure(path)
    assert structure["LAYOUT"] == "COG" and structure["COMPRESSION"] == "DEFLATE"
    assert overviews[0] == 2 and block == (512, 512)
    back, info = read_raster(path)
    assert np.isnan(info.nodata) and np.array_equal(info.valid, valid)
    assert np.isnan(back[:, :80]).all() and np.array_equal(back[:, 80:], values[:, 80:])
    with rasterio.open(path) as dataset:
        assert dataset.units == ("dB",)


def test_no_data_round_trips_and_stays_out_of_the_window(tmp_path):
    """The file's no-data value masks pixels: left out of the percentile window, filled, written back as no-data."""
    values = np.arange(1, 401, dtype=np.float32).reshape(20, 20)
    values[:, :5] = -9999.0
    path = write_geotiff(tmp_path / "amplitude.tif", values, nodata=-9999.0)
    image, info = read_image_with_info(path, scaling=IntensityScaling("percentile", percentiles=(2.0, 98.0)))
    assert info.nodata == -9999.0 and not info.valid[:, :5].any() and info.valid[:, 5:].all()
    assert np.allclose(info.window, np.percentile(values[:, 5:], (2.0, 98.0)))
    assert torch.equal(image[0, :, :5], image[0, :, 6:11].flip(-1))  # filled by mirroring at the no-data edge
    write_raster(values[:, :, None], tmp_path / "out.tif", info, info.valid, nodata=-9999.0)
    back, again = read_raster(tmp_path / "out.tif")
    assert again.nodata == -9999.0 and np.array_equal(again.valid, info.valid) and np.array_equal(back[:, :, 0], values)


def test_nodata_option_replaces_the_files_value_and_per_domain_wins(tmp_path):
    """--nodata V masks pixels equal to V (instead of the file's value); --nodata_A wins over --nodata for A."""
    values = np.array([[0, 7, 9, 9], [5, 0, 7, 9]], dtype=np.uint16)
    path = write_geotiff(tmp_path / "s2.tif", values, nodata=0)
    assert read_raster(path)[1].valid.tolist() == [[False, True, True, True], [True, False, True, True]]
    parser = add_image_options(argparse.ArgumentParser())
    opt = parser.parse_args(["--nodata", "9", "--nodata_B", "7"])
    scaling_a, scaling_b = IntensityScaling.from_options(opt, "A"), IntensityScaling.from_options(opt, "B")
    assert (scaling_a.nodata, scaling_b.nodata, IntensityScaling.from_options(opt).nodata) == (9.0, 7.0, 9.0)
    _, info_a = read_image_with_info(path, scaling=scaling_a)
    _, info_b = read_image_with_info(path, scaling=scaling_b)
    assert info_a.valid.tolist() == [[True, True, False, False], [True, True, True, False]]
    assert info_b.valid.tolist() == [[True, False, True, True], [True, True, False, True]]


def test_nan_no_data_in_any_band_masks_the_pixel(tmp_path):
    """A NaN in one band masks the pixel (the file's no-data NaN, or no declaration at all)."""
    power = sar_power()
    power[3, 4, 1] = np.nan
    image, info = read_image_with_info(write_geotiff(tmp_path / "holes.tif", power), 2,
                                       IntensityScaling("db", bands=(1, 2)))
    assert not info.valid[3, 4] and info.valid.sum() == 12 * 16 - 1
    assert torch.isfinite(image).all()


def test_streamed_window_equals_the_whole_scene_window(tmp_path, monkeypatch):
    """A scene measured band of rows by band of rows gets exactly the window of the scene read at once."""
    monkeypatch.setattr("data.image_io.READ_CHUNK_PIXELS", 64)  # many small bands
    monkeypatch.setattr("data.radiometry.GATHER_LIMIT", 50)  # and the counting passes, not just one sort
    values = np.random.default_rng(2).gamma(1.5, 300.0, (30, 24, 2)).astype(np.float32)
    values[:4] = -1.0
    path = write_geotiff(tmp_path / "scene.tif", values, nodata=-1.0, tiled=True)
    for scaling in (IntensityScaling("percentile", percentiles=(2.0, 98.0)), IntensityScaling("minmax"),
                    IntensityScaling("percentile", percentiles=(0.5, 37.0), bands=(2,))):
        whole, info = read_image_with_info(path, scaling.bands and 1, scaling)
        with SceneReader(path, scaling.bands and 1, scaling) as scene:
            assert scene.window == info.window
            rows, valid = scene.rows(0, 30)
        assert torch.equal(valid, torch.from_numpy(info.valid))
        assert torch.equal(rows[:, 4:], whole[:, 4:])


def test_read_image_with_info_reports_window_size_and_georeferencing(tmp_path):
    """The info names the window, dtype, size, band count, CRS and transform; a plain TIFF has none."""
    path = write_geotiff(tmp_path / "vv_vh.tif", sar_power())
    image, info = read_image_with_info(path, 1, IntensityScaling("db", bands=(1,)))
    assert image.shape == (1, 12, 16)
    assert (info.window, info.dtype, info.size, info.band_count) == ((-25.0, 0.0), "float32", (12, 16), 2)
    assert info.georeferenced and info.crs == UTM_33N and info.valid is None
    _, plain = read_image_with_info(write_geotiff(tmp_path / "plain.tif", sar_power(), georeferenced=False), 1,
                                    IntensityScaling("db", bands=(1,)))
    assert not plain.georeferenced and plain.crs is None and plain.transform is None


def test_ground_control_points_are_kept(tmp_path):
    """A Sentinel-1 GRD-like file georeferenced by ground control points keeps them in the output."""
    gcps = [GroundControlPoint(row, col, 12.0 + col / 1000, 41.0 - row / 1000, 0.0)
            for row in (0, 11) for col in (0, 15)]
    with rasterio.open(tmp_path / "grd.tif", "w", driver="GTiff", width=16, height=12, count=1,
                       dtype="float32") as dataset:
        dataset.write(sar_power()[None, :, :, 0])
        dataset.gcps = (gcps, CRS.from_epsg(4326))
    raw, info = read_raster(tmp_path / "grd.tif")
    assert info.georeferenced and info.transform is None and len(info.gcps) == 4
    write_raster(raw, tmp_path / "out.tif", info)
    with rasterio.open(tmp_path / "out.tif") as dataset:
        points, crs = dataset.gcps
    assert crs == CRS.from_epsg(4326) and [(p.row, p.col, p.x, p.y) for p in points] == \
        [(p.row, p.col, p.x, p.y) for p in gcps]


def test_jpeg2000_and_vrt_read_like_the_geotiff(tmp_path):
    """A lossless JPEG2000 copy (Sentinel-2 bands) and a VRT over the GeoTIFF read the same pixels and grid."""
    array = (np.random.default_rng(5).random((20, 30, 2)) * 10000).astype(np.uint16)
    source = write_geotiff(tmp_path / "s2.tif", array)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        rasterio.shutil.copy(source, tmp_path / "s2.jp2", driver="JP2OpenJPEG", REVERSIBLE="YES", QUALITY=100)
        rasterio.shutil.copy(source, tmp_path / "mosaic.vrt", driver="VRT")
    for name in ("s2.jp2", "mosaic.vrt"):
        raw, info = read_raster(tmp_path / name)
        assert np.array_equal(raw, array) and info.crs == UTM_33N and info.transform == UTM_TRANSFORM, name


def test_a_vrt_never_reaches_the_network(tmp_path):
    """A VRT whose source is a URL fails at once with one line naming the file: GDAL is kept off the network."""
    source = write_geotiff(tmp_path / "s2.tif", np.ones((8, 8), np.uint8))
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        rasterio.shutil.copy(source, tmp_path / "remote.vrt", driver="VRT")
    text = (tmp_path / "remote.vrt").read_text()
    (tmp_path / "remote.vrt").write_text(text.replace('relativeToVRT="1">s2.tif',
                                                      'relativeToVRT="0">/vsicurl/http://192.0.2.1/s2.tif'))
    started = time.perf_counter()
    with pytest.raises(SargenError, match=r"cannot read image .*remote.vrt: .*vsicurl") as error:
        read_image(tmp_path / "remote.vrt")
    assert time.perf_counter() - started < 2.0 and "\n" not in str(error.value)


def test_reading_and_writing_leave_no_side_files(tmp_path):
    """GDAL writes no .aux.xml (PAM) or other side files next to the user's data."""
    source = write_geotiff(tmp_path / "in.tif", sar_power(), nodata=0.0)
    raw, info = read_raster(source)
    read_image(source, scaling=IntensityScaling("db", bands=(1,)))
    write_raster(raw, tmp_path / "out.tif", info, nodata=0.0)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.tif", "out.tif"]


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
    path = write_geotiff(tmp_path / "s2_b2348.tif", bands, interleave="band")
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


def test_a_stack_of_pages_is_one_line_naming_the_file(tmp_path):
    """A TIFF of several pages (not one multi-band image) gives one line naming the file and what to do."""
    frames = [Image.fromarray(np.full((8, 8), value, dtype=np.uint8)) for value in (1, 2)]
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    with pytest.raises(SargenError, match=r"cannot read image .*pages.tif: it holds 2 images .*multi-band GeoTIFF"):
        read_image(tmp_path / "pages.tif")


def test_complex_pixels_are_refused(tmp_path):
    """Complex (SLC) data is refused with what to do."""
    with rasterio.open(tmp_path / "slc.tif", "w", driver="GTiff", width=8, height=8, count=1,
                       dtype="complex64") as dataset:
        dataset.write(np.ones((1, 8, 8), dtype=np.complex64))
    with pytest.raises(SargenError, match=r"slc.tif holds complex .* intensity"):
        read_image(tmp_path / "slc.tif")


def test_gdal_failures_are_one_line_and_gdal_prints_nothing(tmp_path, capfd):
    """A damaged GeoTIFF stops with one line naming the file; GDAL's own messages never reach the console."""
    data = bytearray(write_geotiff(tmp_path / "ok.tif", sar_power(64, 64), compress="deflate").read_bytes())
    middle = len(data) // 2
    data[middle: middle + 400] = bytes(400)  # compressed strips zeroed
    (tmp_path / "damaged.tif").write_bytes(bytes(data))
    with pytest.raises(SargenError, match=r"^cannot read image .*damaged.tif: .*corrupt") as error:
        read_image(tmp_path / "damaged.tif", 2)
    assert "\n" not in str(error.value)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize("kind", ["lzw", "palette", "rgba"])
def test_tiffs_from_other_writers_still_read(tmp_path, kind):
    """Pillow's LZW and palette TIFFs read (palettes as their colours); RGBA drops the alpha band."""
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


def test_write_image_to_tif_is_eight_bit(tmp_path):
    """write_image to .tif writes the same 8-bit levels as to .png, through the one raster writer."""
    image = torch.rand(3, 6, 7)
    write_image(image, tmp_path / "a.tif")
    write_image(image, tmp_path / "a.png")
    assert np.array_equal(read_raster(tmp_path / "a.tif")[0], np.asarray(Image.open(tmp_path / "a.png")))

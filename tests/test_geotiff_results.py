"""test.py's GeoTIFF results (--results_format) in the target domain's physical units, and evaluate.py --results
scoring them per band in dB against the real Sentinel-1 files, on a tiny SEN12MS tree (2-band float32 dB)."""

import json
from argparse import Namespace

import numpy as np
import pytest
import torch
from raster_helpers import EPSG, north_up, optical_bands, read_raster_file, sen12ms_tree, write_raster
from torch.nn import functional
from ugatit_helpers import one_torch_thread, run_entry_point  # noqa: F401  (autouse fixture)

import evaluate
import test as test_script
import train as train_script
from data.image_io import read_raster
from data.radiometry import Radiometry
from models.raster_results import RasterOutputs
from util.results import ImageResult

TINY = ["--gpu_ids", "-1", "--num_threads", "0", "--img_size", "32", "--ch", "8", "--n_res", "1", "--light",
        "--n_dis", "5"]
PATCH = 24  # the patches' side: test images are translated at 32 px and written back at 24


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data root, checkpoints folder) of a U-GAT-IT trained 2 steps on a SEN12MS tree (S2 -> S1 VV/VH dB)."""
    root = sen12ms_tree(tmp_path_factory.mktemp("sen12ms"), scenes=4, patches=3, size=PATCH)
    work = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_entry_point(train_script, ["--model", "ugatit", "--dataset_mode", "sen12ms", "--dataroot", root, "--name",
                                       "s2s1", "--checkpoints_dir", work, *TINY, "--display_id", 0, "--iteration", 2],
                        monkeypatch)
    return root, work


def run_test(trained, results, monkeypatch, *extra):
    """test.py on the test split of the trained run; returns RESULTS/s2s1/test_latest."""
    root, work = trained
    run_entry_point(test_script, ["--model", "ugatit", "--dataset_mode", "sen12ms", "--dataroot", root, "--name",
                                  "s2s1", "--checkpoints_dir", work, "--results_dir", results, "--gpu_ids", "-1",
                                  "--num_threads", 0, "--precision", "float32", *extra], monkeypatch)
    return results / "s2s1" / "test_latest"


def decibels_of_mean_power(bands):
    """10 log10 of the mean linear power of each dB band of a C x H x W array."""
    return 10 * np.log10((10 ** (bands.astype(np.float64) / 10)).mean(axis=(1, 2)))


def test_tif_results_keep_units_and_georeferencing_and_evaluate_scores_them_per_band(trained, tmp_path, monkeypatch):
    folder = run_test(trained, tmp_path, monkeypatch)  # auto: the record says domain B is dB, so .tif results too
    record = json.loads((folder / "raster_outputs.json").read_text())
    assert record["domain"] == "B" and record["unit"] == "db" and record["db_window"] == [-25.0, 0.0]
    assert record["labels"] == ["fake_A2B"] and record["real_radiometry"]["bands"] == [1, 2]
    rasters = sorted((folder / "images").glob("*_fake_A2B.tif"))
    assert len(rasters) == 3 and all((folder / "images" / f"{path.stem}.png").is_file() for path in rasters)
    generated_means = {}
    for path in rasters:
        row = json.loads((folder / "images" / f"{path.stem[:-len('_fake_A2B')]}.row.json").read_text())
        source = row["sources"]["real_A"]
        assert "_s2_" in source and row["sources"]["real_B"] == source.replace("_s2_", "_s1_").replace("/s2_", "/s1_")
        bands, crs, transform = read_raster_file(path)
        _, source_crs, source_transform = read_raster_file(source)
        assert bands.shape == (2, PATCH, PATCH) and bands.dtype == np.float32  # back at the source's size
        assert (crs, transform) == (source_crs, source_transform)  # overlays its source
        assert -25.0 <= bands.min() < bands.max() <= 0.0  # dB in the recorded window
        generated_means[path.stem[:-len("_fake_A2B")]] = decibels_of_mean_power(bands)
    page = (folder / "index.html").read_text()
    assert "fake_A2B.tif" in page and "GeoTIFF results images/NAME_LABEL.tif: float32 dB" in page

    evaluate.main(["--results", str(folder), "--no_fid", "--no_lpips", "--vgg", "vgg16", "--vgg_weights", "random",
                   "--style_layer", "0", "--gpu_ids", "-1"])
    report = json.loads((folder / "metrics.json").read_text(), parse_constant=pytest.fail)
    assert report["settings"]["bands"] == ["band1", "band2"]
    assert report["settings"]["physical_units"]["generated"] == "0..1 -> -25..0 dB"
    assert report["settings"]["real_radiometry"]["bands"] == [1, 2]
    rows = {row["name"]: row for row in report["images"]}
    assert set(rows) == set(generated_means)
    for name, row in rows.items():
        assert row["fake"].endswith(f"{name}_fake_A2B.tif") and "_s1_" in row["real"] and row["resized"] is False
        assert [row["mean_db_band1"], row["mean_db_band2"]] == pytest.approx(generated_means[name], abs=1e-3)
        assert "histogram_wasserstein_db_real_band2" in row and np.isfinite(row["psnr"])
    domain = report["domain"]
    assert domain["mean_db_band1"]["real"]["mean"] == pytest.approx(-10.0, abs=0.5)  # the S1 files: VV about -10 dB
    assert domain["mean_db_band2"]["real"]["mean"] == pytest.approx(-17.0, abs=0.5)  # VH 7 dB below
    assert domain["mean_db_band1"]["real"]["count"] == 3 and "ratio" in domain["enl_band2"]
    computed = " | ".join(report["computed"])
    assert "on 3 pairs matched by name (NAME of NAME_LABEL.tif and the co-registered real_B file" in computed
    assert "GeoTIFF results" in computed and "--unpaired" not in computed


def test_png_format_writes_no_geotiff(trained, tmp_path, monkeypatch):
    folder = run_test(trained, tmp_path, monkeypatch, "--results_format", "png")
    assert not list((folder / "images").glob("*.tif")) and not (folder / "raster_outputs.json").exists()
    assert len(list((folder / "images").glob("*_fake_A2B.png"))) == 3


def raster_options(record, results_format="tif", direction="AtoB"):
    """The options RasterOutputs reads: the model's record per domain, --results_format and --direction."""
    return Namespace(radiometry_record=record, results_format=results_format, direction=direction, input_nc=3,
                     output_nc=2, dataset_mode="unaligned")


def test_raster_outputs_invert_the_recorded_rule_at_the_sources_size_and_grid(tmp_path):
    """A known output in [-1, 1] comes back through the record's window in its unit (here linear power), resized to
    the source's size on the source's grid; a domain read without a fixed window gives 8-bit levels."""
    source = write_raster(tmp_path / "s2.tif", optical_bands(size=16), origin=(600000.0, 4500000.0))
    record = {"A": Radiometry("percentile", bands=(4, 3, 2), domain="A"),
              "B": Radiometry("db", db_window=(-30.0, 5.0), input_unit="linear", domain="B")}
    rasters = RasterOutputs.from_options(raster_options(record))
    output = torch.linspace(-1.0, 1.0, 8 * 8 * 2).reshape(2, 8, 8)
    written = rasters.write(ImageResult("s2", {}, outputs={"fake_A2B": output}, sources={"real_A": source}), tmp_path)
    assert written == [("images/s2_fake_A2B.tif", "fake_A2B")]
    values, crs, transform = read_raster_file(tmp_path / "s2_fake_A2B.tif")
    assert values.shape == (2, 16, 16) and values.dtype == np.float32 and transform == north_up((600000.0, 4500000.0))
    assert crs.to_epsg() == EPSG
    expected = functional.interpolate(output[None], size=(16, 16), mode="bilinear", antialias=True)[0]
    assert values == pytest.approx(10 ** ((-30.0 + (expected.numpy() + 1) / 2 * 35.0) / 10), rel=1e-4)
    assert rasters.record(["fake_A2B"])["unit"] == "linear" and "linear power" in rasters.description()

    levels = RasterOutputs.from_options(raster_options(record, direction="BtoA"))  # target A: percentile, no window
    assert RasterOutputs.from_options(raster_options(record, "auto", "BtoA")) is None  # auto: PNG only for it
    levels.write(ImageResult("s1", {}, outputs={"fake_B2A": torch.zeros(3, 16, 16)}, sources={}), tmp_path)
    values, info = read_raster(tmp_path / "s1_fake_B2A.tif")  # no source given: no georeferencing
    assert not info.georeferenced and values.dtype == np.uint8 and values.shape == (16, 16, 3) and (values == 128).all()

"""Inputs without a valid pixel (all NaN, all no-data): every tool that reads them says so, naming
the file, and counts them in its summary; the run goes on (the outputs of such inputs are all no-data)."""

import json
import re

import numpy as np
import pytest
from geotiff_helpers import write_geotiff
from ugatit_helpers import one_torch_thread, perturbed_checkpoint  # noqa: F401  (autouse fixture)

import evaluate as evaluate_script
from data import create_dataset
from data.image_io import write_raster
from models.file_translation import app_main
from options.test_options import TestOptions


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A seeded light U-GAT-IT checkpoint, 1 -> 1 channel, 32 px (reference format)."""
    return perturbed_checkpoint(tmp_path_factory, input_nc=1)


@pytest.fixture
def scenes(tmp_path):
    """A folder of four 40 px scenes: all NaN, all no-data (-9999 float, 0 in 8 bits), and a valid one."""
    folder = tmp_path / "scenes"
    folder.mkdir()
    write_geotiff(folder / "all_nan.tif", np.full((40, 40), np.nan, np.float32))
    write_geotiff(folder / "all_nodata.tif", np.full((40, 40), -9999.0, np.float32), nodata=-9999.0)
    write_geotiff(folder / "all_zero.tif", np.zeros((40, 40), np.uint8), nodata=0)
    write_geotiff(folder / "valid.tif", np.random.default_rng(0).uniform(-20, -5, (40, 40)).astype(np.float32))
    return folder


@pytest.mark.parametrize("tile", [[], ["--tile", "32", "--overlap", "8"]])
def test_app_names_and_counts_inputs_without_a_valid_pixel(checkpoint, scenes, tmp_path, sargen_log, tile):
    """Whole and tiled: a warning naming each empty input, the totals line and manifest.json counting 3 of 4 (each
    noted in the manifest); every output written."""
    written = app_main(["--model_path", str(checkpoint), "--img", str(scenes), "--out", str(tmp_path / "out"),
                        "--device", "cpu", "--intensity_scaling_A", "minmax", *tile])
    assert len(written) == 4 and all(path.is_file() for path in written)
    warnings = [message for level, message in sargen_log.messages if "no valid pixel" in message]
    for name in ("all_nan.tif", "all_nodata.tif", "all_zero.tif"):
        assert sum(name in message and "all no-data" in message for message in warnings) == 1, (name, warnings)
    assert not any("valid.tif has" in message for message in warnings)
    summary = sargen_log.messages[-1][1]
    assert re.match(r"4 inputs: 4 written in .*, 3 without a valid pixel \(outputs all no-data: .*all_nan.tif", summary)
    assert "/valid.tif" not in summary
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["totals"]["without_valid_pixel"] == 3
    assert sum(entry["reason"].startswith("no valid pixel") for entry in manifest["inputs"]) == 3


def test_evaluate_names_and_counts_images_without_a_valid_pixel(tmp_path, sargen_log):
    """An all-NaN generated image: a warning naming it, and metrics.json lists it (its metrics are NaN)."""
    fake, real = tmp_path / "fake", tmp_path / "real"
    rng = np.random.default_rng(1)
    for index in range(2):
        write_raster(rng.uniform(-20, -5, (24, 24)).astype(np.float32), real / f"{index}.tif")
        values = np.full((24, 24), np.nan, np.float32) if index else rng.uniform(-20, -5, (24, 24)).astype(np.float32)
        write_raster(values, fake / f"gen_sar_{index}.tif")
    evaluate_script.main(["--fake_dir", str(fake), "--real_dir", str(real), "--no_fid", "--no_lpips", "--no_gram",
                          "--gpu_ids", "-1", "--intensity_scaling", "db", "--input_unit", "db"])
    assert any(f"{fake / 'gen_sar_1.tif'} has no valid pixel" in message for _, message in sargen_log.messages)
    report = json.loads((fake / "metrics.json").read_text())
    assert report["settings"]["without_valid_pixel"] == [str(fake / "gen_sar_1.tif")]
    assert any(line.startswith("1 file(s) without a valid pixel") for line in report["computed"])


def test_test_datasets_name_and_count_images_without_a_valid_pixel(scenes, tmp_path, sargen_log):
    """test.py's reading (every dataset mode's): a warning naming each empty file, and the count it reports."""
    opt = TestOptions().parse(["--model", "ugatit", "--dataset_mode", "single", "--dataroot", str(scenes),
                               "--gpu_ids", "-1", "--num_threads", "0", "--intensity_scaling", "minmax",
                               "--preprocess", "none",
                               "--checkpoints_dir", str(tmp_path / "checkpoints")], save=False)
    dataset = create_dataset(opt)
    for index in range(len(dataset)):
        dataset[index]
    assert dataset.report_empty_reads() == 3
    warnings = [message for _, message in sargen_log.messages if "no valid pixel" in message]
    assert sum("all_zero.tif" in message for message in warnings) == 1
    assert sargen_log.messages[-1][1].startswith("3 image file(s) read without a valid pixel")

"""Every hint in an error names an option the running tool accepts: app.py has no --input_nc or --dataroot,
evaluate.py no --input_nc or --output_nc; train.py and test.py do have them."""

import re

import numpy as np
import pytest
from geotiff_helpers import write_geotiff
from ugatit_helpers import one_torch_thread, perturbed_checkpoint  # noqa: F401  (autouse fixture)

import evaluate as evaluate_script
from data import create_dataset
from data.image_io import write_image, write_raster
from evaluation.options import build_parser as evaluate_parser
from models.file_translation import app_main
from options.app_options import AppOptions
from options.test_options import TestOptions
from util.errors import SargenError

OPTION = re.compile(r"(?<![\w-])--[a-z][A-Za-z0-9_]*")


def assert_names_only_options_of(message, parser):
    """Each --flag in `message` is an option of `parser`; return the flags."""
    accepted = {flag for action in parser._actions for flag in action.option_strings}
    flags = OPTION.findall(message)
    assert flags and set(flags) <= accepted, (sorted(set(flags) - accepted), message)
    return flags


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A light U-GAT-IT checkpoint taking 3 channels (reference format: no radiometry record)."""
    return perturbed_checkpoint(tmp_path_factory)


def app_error(checkpoint, tmp_path, *argv):
    """app.py's one-line error for `argv`."""
    with pytest.raises(SargenError) as error:
        app_main(["--model_path", str(checkpoint), "--out", str(tmp_path / "out"), "--device", "cpu", *argv])
    return str(error.value)


def test_app_hints_name_app_options(checkpoint, tmp_path):
    """A 5-band image for a 3-channel checkpoint (no --input_nc to set: pick bands), an empty or missing --img,
    a float GeoTIFF nothing says how to read: each hint names app.py's own options."""
    parser = AppOptions().build_parser()
    write_geotiff(tmp_path / "five.tif", np.random.default_rng(0).integers(0, 255, (32, 32, 5), dtype=np.uint8))
    message = app_error(checkpoint, tmp_path, "--img", str(tmp_path / "five.tif"), "--intensity_scaling_A", "minmax")
    assert "five.tif has 5 band(s)" in message and "--input_nc" not in message
    assert "--bands_A" in assert_names_only_options_of(message, parser)
    (tmp_path / "empty").mkdir()
    message = app_error(checkpoint, tmp_path, "--img", str(tmp_path / "empty"))
    assert "--img" in assert_names_only_options_of(message, parser) and "--dataroot" not in message
    message = app_error(checkpoint, tmp_path, "--img", str(tmp_path / "missing" / "*.png"))
    assert "--img" in assert_names_only_options_of(message, parser)
    # 8-bit rasters read as / 255 by default; a float GeoTIFF has no such default
    write_geotiff(tmp_path / "float.tif", np.random.default_rng(0).uniform(-20, 0, (32, 32, 3)).astype(np.float32))
    message = app_error(checkpoint, tmp_path, "--img", str(tmp_path / "float.tif"))
    assert "records no radiometry" in message
    assert_names_only_options_of(message, parser)


def test_evaluate_hints_name_evaluate_options(tmp_path):
    """Real images of 2 bands against 3-channel generated ones, an empty --fake_dir: no --input_nc/--output_nc."""
    parser = evaluate_parser()
    rng = np.random.default_rng(0)
    for index in range(2):
        write_image(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8), tmp_path / "fake" / f"gen_sar_{index}.png")
        write_raster(rng.uniform(-20, 0, (24, 24, 2)).astype(np.float32), tmp_path / "real" / f"{index}.tif")
    common = ["--real_dir", str(tmp_path / "real"), "--no_fid", "--no_lpips", "--no_gram", "--gpu_ids", "-1"]
    with pytest.raises(SargenError) as error:
        evaluate_script.main(["--fake_dir", str(tmp_path / "fake"), *common])
    message = str(error.value)
    assert "has 2 band(s)" in message and "_nc" not in message
    assert "--bands" in assert_names_only_options_of(message, parser)
    (tmp_path / "none").mkdir()
    with pytest.raises(SargenError) as error:
        evaluate_script.main(["--fake_dir", str(tmp_path / "none"), *common])
    assert "--fake_dir" in assert_names_only_options_of(str(error.value), parser)


def test_test_py_hints_name_its_channel_options(tmp_path):
    """test.py has --input_nc: its band-count hint offers it (and only its own options)."""
    (tmp_path / "data").mkdir()
    write_geotiff(tmp_path / "data" / "five.tif", np.random.default_rng(0).integers(0, 255, (32, 32, 5),
                                                                                     dtype=np.uint8))
    argv = ["--model", "ugatit", "--dataset_mode", "single", "--dataroot", str(tmp_path / "data"), "--gpu_ids", "-1",
            "--num_threads", "0", "--intensity_scaling", "minmax", "--preprocess", "none", "--input_nc", "3"]
    options = TestOptions()
    opt = options.parse(argv, save=False)
    with pytest.raises(SargenError) as error:
        create_dataset(opt)[0]
    flags = assert_names_only_options_of(str(error.value), options.parser)
    assert "--input_nc" in flags

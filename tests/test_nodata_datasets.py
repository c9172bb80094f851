"""No-data in training data: patches over --max_nodata are skipped, counted across workers and reported once."""

import logging
import shutil

import numpy as np
import pytest
from conftest import gatys_train_args, make_eo2sar
from geotiff_helpers import write_geotiff
from PIL import Image
from ugatit_helpers import one_torch_thread, ugatit_args  # noqa: F401  (autouse fixture)

from data import create_dataloader, create_dataset
from options.train_options import TrainOptions


@pytest.fixture(scope="module")
def eo2sar_root(tmp_path_factory):
    """A tiny unpaired EO/SAR set: 40 px, 4 images per training domain."""
    return make_eo2sar(tmp_path_factory, "eo2sar_nodata", size=40, n_train=4, n_test=1)


def with_nodata_image(source, target):
    """A copy of `source` whose first trainA image is a GeoTIFF with a no-data (0) left half; returns its path."""
    shutil.copytree(source, target)
    first = sorted((target / "trainA").iterdir())[0]
    pixels = np.asarray(Image.open(first).convert("RGB")).copy()
    pixels = np.maximum(pixels, 1)
    pixels[:, :20] = 0
    first.unlink()
    return write_geotiff(first.with_suffix(".tif"), pixels, nodata=0)


def test_patches_over_max_nodata_are_replaced_and_reported_once(eo2sar_root, tmp_path, sargen_log):
    """Default --max_nodata 0: the half-no-data image is replaced by the next one; the skip is counted and reported
    once; --max_nodata 1 keeps it."""
    masked = with_nodata_image(eo2sar_root, tmp_path / "eo2sar")
    opt = TrainOptions().parse(ugatit_args(tmp_path / "eo2sar", tmp_path, "nodata"), save=False)
    dataset = create_dataset(opt)
    item = dataset[(0, 0, 7)]
    assert item["A_paths"] != str(masked) and item["A_paths"] == str(sorted(masked.parent.iterdir())[1])
    assert dataset.report_nodata_skips() == 1
    warnings = [message for level, message in sargen_log.messages if level == logging.WARNING]
    assert warnings == ["--max_nodata 0: skipped 1 training patch(es) with more no-data (their files were replaced "
                        "or left out)"]
    kept = create_dataset(TrainOptions().parse(ugatit_args(tmp_path / "eo2sar", tmp_path, "nodata", "--max_nodata",
                                                           "1"), save=False))
    assert kept[(0, 0, 7)]["A_paths"] == str(masked) and kept.report_nodata_skips() == 0


def test_skips_in_worker_processes_are_counted_in_the_main_process(eo2sar_root, tmp_path):
    """With DataLoader workers the count still reaches the main process, which reports it."""
    masked = with_nodata_image(eo2sar_root, tmp_path / "eo2sar")
    opt = TrainOptions().parse(ugatit_args(tmp_path / "eo2sar", tmp_path, "nodata", "--num_threads", "2",
                                           "--serial_batches"), save=False)
    dataset = create_dataset(opt)
    paths = [path for batch in create_dataloader(dataset, opt, shuffle=False) for path in batch["A_paths"]]
    assert str(masked) not in paths and len(paths) == 4
    assert dataset.report_nodata_skips() == 1


def test_per_domain_nodata_masks_only_its_domain(eo2sar_root, tmp_path):
    """--nodata_A 0 masks black pixels of domain A images (their patches are skipped), not of domain B images."""
    shutil.copytree(eo2sar_root, tmp_path / "eo2sar")
    for domain in ("trainA", "trainB"):
        for path in (tmp_path / "eo2sar" / domain).iterdir():
            pixels = np.asarray(Image.open(path)).copy()
            pixels[:5] = 0
            Image.fromarray(pixels).save(path)
    opt = TrainOptions().parse(ugatit_args(tmp_path / "eo2sar", tmp_path, "nodata", "--nodata_A", "0",
                                           "--max_nodata", "0.5"), save=False)
    dataset = create_dataset(opt)
    _, a_info = dataset.read_with_mask(sorted((tmp_path / "eo2sar" / "trainA").iterdir())[0], "A")
    _, b_info = dataset.read_with_mask(sorted((tmp_path / "eo2sar" / "trainB").iterdir())[0], "B")
    assert a_info is not None and not a_info[:5].any() and b_info is None


def test_gatys_training_leaves_out_masked_style_images(x2ka_root, tmp_path):
    """An aligned (Gatys) training item whose patch is over --max_nodata is left out (None) and counted."""
    shutil.copytree(x2ka_root, tmp_path / "x2ka")
    first = sorted((tmp_path / "x2ka" / "train" / "B").iterdir())[0]
    pixels = np.asarray(Image.open(first).convert("L")).copy()
    pixels[:, :8] = 0
    first.unlink()
    write_geotiff(first.with_suffix(".tif"), pixels, nodata=0)
    opt = TrainOptions().parse(gatys_train_args(tmp_path / "x2ka", tmp_path), save=False)
    dataset = create_dataset(opt)
    items = [dataset[index] for index in range(len(dataset))]
    assert items[0] is None and all(item is not None for item in items[1:])
    assert dataset.report_nodata_skips() == 1

"""One bad file among good ones: by default the run stops naming it; with --skip_bad it warns and goes on.

Checked for every dataset mode, with images read in the main process and in DataLoader worker processes.
"""

import gc
import logging
import re
import shutil

import pytest
import torch
from conftest import gatys_test_args, make_eo2sar, run_script
from test_cli import assert_one_line_error
from ugatit_helpers import one_torch_thread, run_entry_point, ugatit_args  # noqa: F401  (autouse fixture)

import train as train_script
from data import create_dataloader, create_dataset
from data.base_dataset import BaseDataset
from models.ugatit_checkpoint import SARGEN_STATE_KEY, read_checkpoint
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.cli import one_line_message
from util.errors import SargenError

MODES = ["aligned", "single", "unaligned_test", "unaligned_train"]


@pytest.fixture(scope="module")
def eo2sar_root(tmp_path_factory):
    """A tiny unpaired EO/SAR set: 40 px, 4 images per training domain, 3 per test domain."""
    return make_eo2sar(tmp_path_factory, "eo2sar_bad", size=40, n_train=4, n_test=3)


def with_one_bad_file(source, target, folder):
    """A copy of the dataset `source` at `target` whose first image in `folder` is truncated; returns its path."""
    shutil.copytree(source, target)
    victim = sorted((target / folder).iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:80])
    return victim


def mode_setup(mode, x2ka_root, eo2sar_root, work, *extra):
    """(options, bad file, the folder whose files make the items) of a dataset mode with one bad file."""
    extra = list(map(str, extra))
    if mode in ("aligned", "single"):
        root = work / "x2ka"
        bad = with_one_bad_file(x2ka_root, root, "test/A")
        args = gatys_test_args(root, work, *extra)
        if mode == "single":
            args[args.index("--dataroot") + 1] = str(root / "test" / "A")
            args += ["--dataset_mode", "single"]
        return TestOptions().parse(args, save=False), bad, bad.parent
    root = work / "eo2sar"
    if mode == "unaligned_test":
        bad = with_one_bad_file(eo2sar_root, root, "testA")
        opt = TestOptions().parse(["--model", "ugatit", "--dataroot", str(root), "--gpu_ids", "-1", "--img_size", "32",
                                   "--output_nc", "1", *extra], save=False)
        return opt, bad, bad.parent
    bad = with_one_bad_file(eo2sar_root, root, "trainA")
    return TrainOptions().parse(ugatit_args(root, work, "bad", *extra), save=False), bad, bad.parent


def source_paths(opt):
    """The source-image paths of every batch the dataset's loader yields, in order."""
    dataset = create_dataset(opt)
    return [path for batch in create_dataloader(dataset, opt, shuffle=False) for path in batch["A_paths"]]


def error_line(opt):
    """The one-line message run_main would print for the error iterating the dataset's loader raises."""
    try:
        source_paths(opt)
    except SargenError as error:
        message = one_line_message(error)
    else:
        return None
    gc.collect()  # shut the failed loader's workers down now, while the test's short join timeout holds
    return message


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("mode", MODES)
def test_a_bad_file_stops_the_run_naming_it(x2ka_root, eo2sar_root, tmp_path, monkeypatch, mode, workers):
    """Without --skip_bad: one line naming the file, also when a worker process read it."""
    # After a worker raised, torch joins each worker for this long when the loader is dropped (a script exits at once).
    monkeypatch.setattr(torch.utils.data._utils, "MP_STATUS_CHECK_INTERVAL", 0.1)
    opt, bad, _ = mode_setup(mode, x2ka_root, eo2sar_root, tmp_path, "--num_threads", workers)
    message = error_line(opt)
    assert message.startswith(f"cannot read image {bad}:") and "\n" not in message, message


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("mode", MODES)
def test_skip_bad_warns_and_goes_on_with_the_good_files(x2ka_root, eo2sar_root, tmp_path, sargen_log, mode, workers):
    """--skip_bad: every good file is read, the bad one never; one warning names it (main-process reading)."""
    opt, bad, folder = mode_setup(mode, x2ka_root, eo2sar_root, tmp_path, "--num_threads", workers, "--skip_bad")
    good = sorted(str(path) for path in folder.iterdir() if path != bad)
    paths = source_paths(opt)
    if mode == "unaligned_train":  # the bad file's place is taken by the next file
        assert len(paths) == len(good) + 1 and set(paths) == set(good)
    else:
        assert sorted(paths) == good
    if workers == 0:
        warnings = [message for level, message in sargen_log.messages if level == logging.WARNING]
        assert len(warnings) == 1 and warnings[0].startswith(f"skipped (--skip_bad): cannot read image {bad}: ")
        assert "truncated" in warnings[0], warnings[0]


def test_unaligned_training_replaces_a_bad_file_deterministically(eo2sar_root, tmp_path):
    """The same (A, B, seed) index gives the same item, whose A is the file after the bad one; all bad: an error."""
    opt, bad, folder = mode_setup("unaligned_train", None, eo2sar_root, tmp_path, "--skip_bad")
    dataset = create_dataset(opt)
    first, again = dataset[(0, 1, 5)], dataset[(0, 1, 5)]
    assert first["A_paths"] == str(sorted(folder.iterdir())[1])
    assert torch.equal(first["A"], again["A"]) and torch.equal(first["B"], again["B"])
    assert BaseDataset.collate([None, first, None])["A"].shape[0] == 1
    assert BaseDataset.collate([None, None]) is None
    for path in folder.iterdir():
        path.write_bytes(b"broken")
    with pytest.raises(SargenError, match=r"none of the 4 domain A images in .*trainA can be read"):
        create_dataset(opt)[(2, 0, 1)]


def test_ugatit_training_goes_on_past_a_bad_file(eo2sar_root, tmp_path, monkeypatch):
    """train.py --model ugatit --skip_bad with a truncated trainA image runs all its steps."""
    root = tmp_path / "eo2sar"
    bad = with_one_bad_file(eo2sar_root, root, "trainA")
    args = ugatit_args(root, tmp_path, "skipping", "--iteration", 3, "--save_freq", 3, "--update_html_freq", 10,
                       "--ch", 4, "--batch_size", 2)
    with pytest.raises(SargenError, match=re.escape(str(bad))):
        run_entry_point(train_script, args, monkeypatch)
    run_entry_point(train_script, [*args, "--skip_bad"], monkeypatch)
    latest = tmp_path / "checkpoints" / "skipping" / "latest_net_ugatit.pth"
    assert read_checkpoint(latest)[SARGEN_STATE_KEY]["iteration"] == 3


def test_test_script_default_stops_and_skip_bad_finishes(x2ka_root, tmp_path):
    """test.py --model gatys with DataLoader workers: one error line naming the file; --skip_bad: a page of the rest."""
    root = tmp_path / "x2ka"
    bad = with_one_bad_file(x2ka_root, root, "test/A")
    args = gatys_test_args(root, tmp_path, "--style_source", "real", "--n_iter", 2, "--num_threads", 2)
    code, _, stderr = run_script("test.py", args)
    assert_one_line_error(code, stderr, "cannot read image", bad.name)
    code, _, stderr = run_script("test.py", [*args, "--skip_bad"])
    assert code == 0, stderr
    assert re.search(rf"skipped \(--skip_bad\): cannot read image \S*{re.escape(bad.name)}: ", stderr), stderr
    images = {path.name for path in (tmp_path / "results" / "tiny" / "test_latest" / "images").iterdir()}
    good = sorted(path.stem for path in (root / "test" / "A").iterdir() if path != bad)
    assert {name.split("_real_A")[0] for name in images if "_real_A" in name} == set(good)
    assert bad.stem not in (tmp_path / "results" / "tiny" / "test_latest" / "index.html").read_text()

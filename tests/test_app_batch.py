"""app.py over an archive: torchrun ranks sharing the inputs (2 CPU ranks, gloo), --skip_bad, --skip_existing after
a kill -9, and manifest.json."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, run_torchrun
from geotiff_helpers import write_geotiff
from PIL import Image
from test_app import smooth_texture
from ugatit_helpers import one_torch_thread, perturbed_generators  # noqa: F401  (autouse fixture)

from data.image_io import write_image
from models.batch_translation import MANIFEST_FORMAT, app_device
from models.file_translation import app_main
from util.errors import SargenError
from util.fileio import writer_id

SCENES = {"a": (72, 80), "b": (64, 64), "c": (90, 70), "d": (40, 104), "e": (56, 56)}
TILED = ["--tile", "32", "--overlap", "8", "--precision", "float32", "--device", "cpu",
         "--intensity_scaling", "auto"]  # 8-bit levels / 255: the checkpoint records no radiometry


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A light EO (3 channels) -> SAR (1 channel) checkpoint whose every weight is perturbed by 0.02 x randn."""
    path = tmp_path_factory.mktemp("ckpt") / "perturbed.pt"
    torch.save(perturbed_generators(ngf=8, n_blocks=2, img_size=32, input_nc=3, output_nc=1), path)
    return path


def write_scene(path, size, seed):
    """A 3-band uint8 GeoTIFF of smooth texture (values 1..255) of `size` (H, W)."""
    levels = (smooth_texture(*size, channels=3, seed=seed).numpy() * 254 + 1).astype(np.uint8)
    return write_geotiff(path, levels.transpose(1, 2, 0), tiled=True)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Five GeoTIFF scenes of different sizes, a.tif .. e.tif."""
    folder = tmp_path_factory.mktemp("archive")
    for seed, (name, size) in enumerate(SCENES.items()):
        write_scene(folder / f"{name}.tif", size, seed)
    return folder


def read_manifest(folder):
    """The manifest.json of an output folder."""
    return json.loads((folder / "manifest.json").read_text())


def statuses(manifest):
    """{input file name: (status, rank)} of a manifest."""
    return {os.path.basename(entry["input"]): (entry["status"], entry["rank"]) for entry in manifest["inputs"]}


def test_two_ranks_share_the_archive_and_write_what_one_process_writes(checkpoint, archive, tmp_path):
    """torchrun with 2 CPU ranks: 5 scenes split 3 + 2, every output (and heatmap) byte for byte one process's,
    each written once, by the rank its place gives; rank 0's manifest lists them all and the totals are logged."""
    args = ["--model_path", checkpoint, "--img", archive / "*.tif", "--heatmap", *TILED]
    code, _, stderr = run_torchrun("app.py", [*args, "--out", tmp_path / "ranks"])
    assert code == 0, stderr
    app_main([*map(str, args), "--out", str(tmp_path / "single")])  # one torch thread, as each rank has
    names = sorted(f"gen_sar_{name}{suffix}" for name in SCENES for suffix in (".tif", "_heatmap.png"))
    for folder in ("ranks", "single"):
        assert sorted(path.name for path in (tmp_path / folder).iterdir()) == sorted([*names, "manifest.json"])
    for name in names:
        assert (tmp_path / "ranks" / name).read_bytes() == (tmp_path / "single" / name).read_bytes(), name
    manifest = read_manifest(tmp_path / "ranks")
    assert manifest["format"] == MANIFEST_FORMAT and manifest["processes"] == 2
    assert statuses(manifest) == {f"{name}.tif": ("written", index % 2) for index, name in enumerate(SCENES)}
    assert [entry["output"] for entry in manifest["inputs"]] == [str(tmp_path / "ranks" / f"gen_sar_{name}.tif")
                                                                 for name in SCENES]
    assert manifest["totals"] == {"inputs": 5, "written": 5, "skipped": 0, "failed": 0, "without_valid_pixel": 0}
    assert re.search(r"5 inputs: 5 written in [\d.]+ s \([\d.]+ an hour\), 0 skipped .*, 0 failed ", stderr), stderr


def test_a_bad_file_on_one_rank_stops_the_run_naming_rank_and_file_or_is_skipped(checkpoint, archive, tmp_path):
    """The second input (rank 1's) is truncated: the run stops with '[rank 1]' and the file; with --skip_bad rank 1
    logs it once and goes on, and the manifest lists it as failed, why, and the others as written."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.tif").write_bytes((archive / f"{name}.tif").read_bytes())
    bad = folder / "b.tif"
    bad.write_bytes(bad.read_bytes()[:200])
    args = ["--model_path", checkpoint, "--img", folder, *TILED]
    code, _, stderr = run_torchrun("app.py", [*args, "--out", tmp_path / "stop"])
    errors = [line[line.index("error: "):] for line in stderr.splitlines() if "error: " in line]
    named = [error for error in errors if re.fullmatch(rf"error: \[rank 1\] cannot read image {re.escape(str(bad))}: "
                                                       rf".*", error)]
    # rank 0, done with its share, may see rank 1 leave while it waits for it
    waiting = "error: [rank 0] gathering the ranks' results failed, most likely because another rank stopped"
    others_stopped = [error for error in errors if error.startswith(waiting)]
    assert code != 0 and len(named) == 1 and len(named) + len(others_stopped) == len(errors), stderr
    code, _, stderr = run_torchrun("app.py", [*args, "--out", tmp_path / "skip", "--skip_bad"])
    assert code == 0, stderr
    warnings = re.findall(r"\[rank \d\] skipped \(--skip_bad\): .*", stderr)  # after rank 0's bar, maybe
    assert len(warnings) == 1 and warnings[0].startswith(f"[rank 1] skipped (--skip_bad): cannot read image {bad}: ")
    manifest = read_manifest(tmp_path / "skip")
    assert statuses(manifest) == {"a.tif": ("written", 0), "b.tif": ("failed", 1), "c.tif": ("written", 0)}
    failed = manifest["inputs"][1]
    assert failed["reason"].startswith(f"cannot read image {bad}: ")
    assert not os.path.exists(failed["output"])
    assert manifest["totals"] == {"inputs": 3, "written": 2, "skipped": 0, "failed": 1, "without_valid_pixel": 0}


def test_skip_bad_skips_unreadable_wrong_band_count_and_oversized_inputs(checkpoint, tmp_path, sargen_log,
                                                                         monkeypatch):
    """One process: by default the first bad file stops the run with one line naming it, later files untouched;
    with --skip_bad each bad input is logged once, listed as failed with its reason, and the good ones written."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # put back after --max_pixels
    folder = tmp_path / "in"
    write_image(smooth_texture(24, 24, seed=1), folder / "good1.png")
    (folder / "truncated.png").write_bytes((folder / "good1.png").read_bytes()[:60])
    write_geotiff(folder / "two_bands.tif", np.full((20, 20, 2), 7, np.uint8))
    write_image(smooth_texture(80, 80, seed=2), folder / "wide.png")
    write_image(smooth_texture(24, 24, seed=3), folder / "zgood2.png")
    args = ["--model_path", str(checkpoint), "--img", str(folder), "--device", "cpu", "--intensity_scaling", "auto",
            "--out_img_size", "32", "--max_pixels", "2000"]
    with pytest.raises(SargenError, match=rf"cannot read image {re.escape(str(folder / 'truncated.png'))}: "):
        app_main([*args, "--out", str(tmp_path / "stop")])
    assert sorted(path.name for path in (tmp_path / "stop").iterdir()) == ["gen_sar_good1.png"]
    app_main([*args, "--out", str(tmp_path / "skip"), "--skip_bad"])
    manifest = read_manifest(tmp_path / "skip")
    assert statuses(manifest) == {"good1.png": ("written", 0), "truncated.png": ("failed", 0),
                                  "two_bands.tif": ("failed", 0), "wide.png": ("failed", 0),
                                  "zgood2.png": ("written", 0)}
    reasons = {os.path.basename(entry["input"]): entry["reason"] for entry in manifest["inputs"]}
    assert "has 2 band(s)" in reasons["two_bands.tif"] and "--max_pixels" in reasons["wide.png"]
    warnings = [message for level, message in sargen_log.messages if "skipped (--skip_bad)" in message]
    assert len(warnings) == 3 and all(message.startswith("skipped (--skip_bad): ") for message in warnings)
    for name in ("good1", "zgood2"):
        with Image.open(tmp_path / "skip" / f"gen_sar_{name}.png") as image:
            assert image.size == (32, 32)


def launch(args, log):
    """app.py as a subprocess on one torch thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "app.py"), *map(str, args)], cwd=REPO_ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def visible_outputs(folder):
    """{name: (inode, mtime in ns)} of the outputs under their own names in `folder`."""
    return {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in folder.glob("gen_sar_*")}


def test_killed_batch_resumed_with_skip_existing_translates_each_input_once(checkpoint, tmp_path):
    """kill -9 in the middle of a batch, then --skip_existing: outputs complete before the kill stay the same files
    (inode, mtime), a temporary file of the killed writer never counts, and every output ends complete."""
    folder = tmp_path / "in"
    count = 12
    for index in range(count):
        write_image(smooth_texture(160, 144, seed=index), folder / f"img{index:02d}.png")
    out = tmp_path / "out"
    args = ["--model_path", checkpoint, "--img", folder, "--out", out, *TILED]
    with open(tmp_path / "first.log", "w") as log:
        process = launch(args, log)
        deadline = time.monotonic() + 120
        while len(visible_outputs(out)) < 3 and process.poll() is None:
            assert time.monotonic() < deadline, "the batch wrote no output"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
    before = visible_outputs(out)
    assert 3 <= len(before) < count, (tmp_path / "first.log").read_text()
    assert not (out / "manifest.json").exists()
    missing = next(name for name in (f"gen_sar_img{index:02d}.png" for index in range(count)) if name not in before)
    half_written = out / f".{missing[:-4]}.{writer_id().rpartition('-')[0]}-999999.x1y2.tmp.png"
    half_written.write_bytes(b"\x89PNG\r\n")  # what a writer killed mid-file leaves: under a temporary name only
    with open(tmp_path / "second.log", "w") as log:
        assert launch([*args, "--skip_existing"], log).wait() == 0, (tmp_path / "second.log").read_text()
    after = visible_outputs(out)
    assert sorted(after) == sorted(f"gen_sar_img{index:02d}.png" for index in range(count))
    assert {name: after[name] for name in before} == before
    for name in after:
        with Image.open(out / name) as image:
            image.load()
            assert image.size == (144, 160)
    manifest = read_manifest(out)
    expected = {f"img{index:02d}.png": "skipped" if f"gen_sar_img{index:02d}.png" in before else "written"
                for index in range(count)}
    assert {name: status for name, (status, _) in statuses(manifest).items()} == expected
    assert manifest["totals"] == {"inputs": count, "written": count - len(before), "skipped": len(before), "failed": 0,
                                  "without_valid_pixel": 0}
    log = (tmp_path / "second.log").read_text()
    assert f"--skip_existing: {len(before)} of {count} outputs are complete already" in log


def test_skip_existing_redoes_an_output_whose_heatmap_is_missing(checkpoint, tmp_path):
    """With --heatmap an output counts as complete only with its heatmap."""
    folder = tmp_path / "in"
    for index in range(2):
        write_image(smooth_texture(32, 32, seed=index), folder / f"img{index}.png")
    args = ["--model_path", str(checkpoint), "--img", str(folder), "--out", str(tmp_path / "out"), "--heatmap",
            "--device", "cpu", "--out_img_size", "32"]
    app_main(args)
    (tmp_path / "out" / "gen_sar_img1_heatmap.png").unlink()
    kept = visible_outputs(tmp_path / "out")["gen_sar_img0.png"]
    app_main([*args, "--skip_existing"])
    assert visible_outputs(tmp_path / "out")["gen_sar_img0.png"] == kept
    assert (tmp_path / "out" / "gen_sar_img1_heatmap.png").is_file()
    assert statuses(read_manifest(tmp_path / "out")) == {"img0.png": ("skipped", 0), "img1.png": ("written", 0)}


def test_a_foreign_manifest_json_is_refused_before_any_work(checkpoint, tmp_path):
    """A manifest.json that app.py did not write is not replaced unasked: the run stops first, naming it; with
    --overwrite it is replaced."""
    write_image(smooth_texture(24, 24, seed=1), tmp_path / "in" / "img.png")
    foreign = tmp_path / "out" / "manifest.json"
    foreign.parent.mkdir()
    foreign.write_text('{"format": 1, "files": []}')
    argv = ["--model_path", str(checkpoint), "--img", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
            "--device", "cpu"]
    with pytest.raises(SargenError, match=rf"{re.escape(str(foreign))} exists and was not written by sargen: "
                                          rf"pass --overwrite"):
        app_main(argv)
    assert foreign.read_text() == '{"format": 1, "files": []}'
    assert not (tmp_path / "out" / "gen_sar_img.png").exists()
    app_main([*argv, "--overwrite"])
    assert read_manifest(tmp_path / "out")["totals"]["written"] == 1


def test_under_torchrun_each_local_process_needs_its_own_gpu(monkeypatch):
    """--device cuda:N with several processes a machine, or fewer GPUs than processes: one line saying what to do."""
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(SargenError, match="--device cuda:1: under torchrun each of this machine's 4 processes"):
        app_device(torch.device("cuda:1"), "cuda:1")
    with pytest.raises(SargenError, match="has 2 CUDA device\\(s\\): give --nproc_per_node 2 or --device cpu"):
        app_device(torch.device("cuda"), "cuda")

"""Bad paths, as a hostile but realistic user gives them, against every tool: no data lost, one line each.

Families (util/fileio.py holds the rules, util/cli.py run_main the last resort):
- outputs equal to inputs, or to files sargen did not write: refused (those without --overwrite); a run whose
  output folder is its input folder leaves its own earlier outputs out;
- read-only and full targets (a small tmpfs each test mounts; skipped where mounting is not allowed): one `error:`
  line naming the path and the cause, the earlier files kept (a checkpoint stays loadable);
- a file where a folder is needed, an OS error on a read: one line.
"""

import errno
import functools
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import gatys_test_args, gatys_train_args
from geotiff_helpers import write_geotiff
from PIL import Image
from ugatit_helpers import one_torch_thread, perturbed_checkpoint, ugatit_args  # noqa: F401  (autouse fixture)

import evaluate as evaluate_script
import test as test_script
import train as train_script
from data.image_io import write_image, written_by_sargen
from datasets.make_dataset import main as make_dataset
from models.file_translation import app_main
from models.ugatit_checkpoint import SARGEN_STATE_KEY, read_checkpoint
from util.cli import run_main
from util.fileio import TEMPORARY_NAME, writer_id
from visualization.feature_optimization import parse_options, visualize

APP_COMMON = ["--device", "cpu", "--img_size", "32", "--out_img_size", "32", "--intensity_scaling_A", "minmax"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A seeded light U-GAT-IT checkpoint (ngf 8, 1 block, 32 px, EO 3 -> SAR 1 channel), reference format."""
    return perturbed_checkpoint(tmp_path_factory)


@pytest.fixture
def inputs(tmp_path):
    """A folder with an optical PNG and a 3-band GeoTIFF (40 px), the user's own files."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / "scene.png")
    write_geotiff(folder / "scene_geo.tif", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    return folder


@pytest.fixture
def mount_tmpfs(tmp_path):
    """mount(name, size, read_only): a fresh tmpfs under tmp_path (unmounted afterwards); skips the test where this
    machine does not allow mounting."""
    mounted = []

    def mount(name, size="2m", read_only=False):
        target = tmp_path / name
        target.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        try:
            result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                                    capture_output=True, text=True, timeout=30)
        except OSError as error:
            pytest.skip(f"cannot mount a tmpfs here: {error}")
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


def fill(folder, leave=0):
    """Fill the file system of `folder` (filler files of ever smaller writes) until no byte, or `leave`, is left."""
    for index, chunk in enumerate((65536, 512)):
        try:
            with open(folder / f"filler{index}", "wb") as handle:
                while True:
                    handle.write(b"\0" * chunk)
                    handle.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    if leave:
        filler = folder / "filler0"
        os.truncate(filler, filler.stat().st_size - leave)


def run_tool(main, capsys):
    """Run a tool's `main` (no arguments) through run_main as its script does: (exit code, stderr)."""
    capsys.readouterr()
    try:
        run_main(main)
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


def assert_one_line_error(code, stderr, *expected):
    """A non-zero exit, no traceback, one `error:` line holding each of `expected`."""
    assert code != 0 and "Traceback" not in stderr, stderr
    errors = [line[line.index("error: "):] for line in stderr.splitlines() if "error: " in line]
    assert len(errors) == 1, stderr
    for text in expected:
        assert str(text) in errors[0], errors[0]
    return errors[0]


def tree(folder):
    """{relative path: bytes} of every file under `folder`."""
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


# ---- outputs equal to inputs, or to files sargen did not write ----------------------------------------------


@pytest.mark.parametrize("case", ["png", "geotiff", "geotiff tiled", "relative", "symlink", "hard link"])
def test_app_refuses_an_output_that_is_its_input(checkpoint, inputs, tmp_path, capsys, case, monkeypatch):
    """app.py --img scene.tif --out scene.tif (untiled, tiled, PNG; by another name of the same file, even with
    --overwrite): refused with one line, the input byte for byte as it was."""
    source = inputs / ("scene.png" if case == "png" else "scene_geo.tif")
    out = source
    if case == "relative":
        monkeypatch.chdir(inputs.parent)
        out = f"./{inputs.name}/../{inputs.name}/{source.name}"
    elif case == "symlink":
        (tmp_path / "link.tif").symlink_to(source)
        out = tmp_path / "link.tif"
    elif case == "hard link":
        os.link(source, tmp_path / "hard.tif")
        source = tmp_path / "hard.tif"
    before = tree(inputs)
    tile = ["--tile", "32", "--overlap", "8"] if case == "geotiff tiled" else []
    argv = ["--model_path", str(checkpoint), "--img", str(source), "--out", str(out), *APP_COMMON, *tile,
            "--overwrite"]
    code, stderr = run_tool(functools.partial(app_main, argv), capsys)
    assert_one_line_error(code, stderr, "--out", "is the input", "would be overwritten")
    assert tree(inputs) == before


def test_app_replaces_only_its_own_outputs_unless_told(checkpoint, inputs, tmp_path, capsys):
    """An existing file at --out (or at the heatmap's name) that sargen did not write is refused; --overwrite
    replaces it; a rerun replaces app.py's own output without being told."""
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "result.png"
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(mine)
    argv = ["--model_path", str(checkpoint), "--img", str(inputs / "scene.png"), "--out", str(mine), *APP_COMMON]
    code, stderr = run_tool(functools.partial(app_main, argv), capsys)
    assert_one_line_error(code, stderr, str(mine), "not written by sargen", "--overwrite")
    assert np.asarray(Image.open(mine)).max() == 7
    code, stderr = run_tool(functools.partial(app_main, [*argv, "--overwrite"]), capsys)
    assert code == 0, stderr
    assert written_by_sargen(mine) and Image.open(mine).size == (32, 32)
    assert run_tool(functools.partial(app_main, argv), capsys)[0] == 0  # its own output: replaced again
    heatmap = out / "result_heatmap.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(heatmap)
    code, stderr = run_tool(functools.partial(app_main, [*argv, "--heatmap"]), capsys)
    assert_one_line_error(code, stderr, str(heatmap), "not written by sargen")
    assert Image.open(heatmap).size == (8, 8)


def test_app_refuses_two_inputs_with_one_output_name_and_a_non_image_out(checkpoint, inputs, tmp_path, capsys):
    """scene.png and scene.jpg would both become gen_sar_scene.png: refused before anything is written; --out naming
    an existing file that is not an image is refused too."""
    Image.open(inputs / "scene.png").convert("RGB").save(inputs / "scene.jpg")
    out = tmp_path / "out"
    argv = ["--model_path", str(checkpoint), "--img", str(inputs / "scene.*g"), "--out", str(out), *APP_COMMON]
    code, stderr = run_tool(functools.partial(app_main, argv), capsys)
    assert_one_line_error(code, stderr, "scene.jpg", "scene.png", "gen_sar_scene.png", "different --out")
    assert not out.exists()
    notes = tmp_path / "notes"
    notes.write_text("my notes")
    argv = ["--model_path", str(checkpoint), "--img", str(inputs / "scene.png"), "--out", str(notes), *APP_COMMON]
    code, stderr = run_tool(functools.partial(app_main, argv), capsys)
    assert_one_line_error(code, stderr, f"--out {notes}", "not an image")
    assert notes.read_text() == "my notes"


def test_app_run_into_its_input_folder_leaves_its_earlier_outputs_out(checkpoint, inputs, capsys):
    """--out equal to the --img folder: a second run translates the same two inputs again (its own earlier outputs,
    gen_sar_*, are left out, and replaced), so the folder holds the same files after it."""
    argv = ["--model_path", str(checkpoint), "--img", str(inputs), "--out", str(inputs), "--heatmap", *APP_COMMON]
    assert run_tool(functools.partial(app_main, argv), capsys)[0] == 0
    first = sorted(path.name for path in inputs.iterdir())
    assert first == ["gen_sar_scene.png", "gen_sar_scene_geo.tif", "gen_sar_scene_geo_heatmap.png",
                     "gen_sar_scene_heatmap.png", "manifest.json", "scene.png", "scene_geo.tif"]
    code, stderr = run_tool(functools.partial(app_main, argv), capsys)
    assert code == 0 and "left out 4 earlier output(s)" in stderr, stderr
    assert sorted(path.name for path in inputs.iterdir()) == first


def test_make_dataset_keeps_the_users_files(tmp_path, capsys):
    """make_dataset.py eo2sar --out FOLDER holding the user's trainA/building_0000.png and pairing.json: refused,
    both kept; --overwrite replaces them; a rerun replaces its own files and removes only its own stale ones."""
    out = tmp_path / "data"
    (out / "trainA").mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), 9, np.uint8)).save(out / "trainA" / "building_0000.png")
    (out / "pairing.json").write_text('{"mine": true}')
    Image.fromarray(np.full((8, 8, 3), 9, np.uint8)).save(out / "trainA" / "water_0004.png")  # generated-looking
    before = tree(out)
    argv = ["eo2sar", "--out", str(out), "--size", "16", "--n_train", "2", "--n_test", "1"]
    code, stderr = run_tool(functools.partial(make_dataset, argv), capsys)
    assert_one_line_error(code, stderr, "building_0000.png", "not written by sargen", "--overwrite")
    assert tree(out) == before
    (out / "trainA" / "building_0000.png").unlink()
    code, stderr = run_tool(functools.partial(make_dataset, argv), capsys)
    assert_one_line_error(code, stderr, "pairing.json", "not written by sargen")
    assert run_tool(functools.partial(make_dataset, [*argv, "--overwrite"]), capsys)[0] == 0
    assert written_by_sargen(out / "trainA" / "building_0000.png")
    assert run_tool(functools.partial(make_dataset, [*argv[:-4], "--n_train", "1", "--n_test", "1"]), capsys)[0] == 0
    assert not (out / "trainA" / "farmland_0001.png").exists()  # its own stale file
    assert (out / "trainA" / "water_0004.png").read_bytes() == before[(out / "trainA" / "water_0004.png")
                                                                      .relative_to(out)]


def test_evaluate_keeps_a_metrics_file_it_did_not_write(tmp_path, capsys):
    """evaluate.py --out FOLDER with the user's metrics.json: refused before scoring; its own report is replaced."""
    fake, real, out = tmp_path / "fake", tmp_path / "real", tmp_path / "out"
    for folder in (fake, real):
        for index in range(2):
            write_image(np.random.default_rng(index).integers(0, 256, (24, 24), dtype=np.uint8),
                        folder / f"{'gen_sar_' if folder == fake else ''}{index}.png")
    out.mkdir()
    (out / "metrics.json").write_text('{"my": "numbers"}')
    argv = ["--fake_dir", str(fake), "--real_dir", str(real), "--out", str(out), "--no_fid", "--no_lpips",
            "--no_gram", "--gpu_ids", "-1"]
    code, stderr = run_tool(functools.partial(evaluate_script.main, argv), capsys)
    assert_one_line_error(code, stderr, "metrics.json", "not written by sargen", "--overwrite")
    assert (out / "metrics.json").read_text() == '{"my": "numbers"}'
    assert run_tool(functools.partial(evaluate_script.main, [*argv, "--overwrite"]), capsys)[0] == 0
    assert run_tool(functools.partial(evaluate_script.main, argv), capsys)[0] == 0  # its own report
    assert '"software"' in (out / "metrics.json").read_text()


# ---- read-only and full targets ----------------------------------------------------------------------------


def tool_runs(checkpoint, inputs, x2ka_root, work, target):
    """{tool: main} of each tool writing into the folder `target` (a Gram file for test.py is made in `work`)."""
    gatys = gatys_train_args(x2ka_root, work)
    fake, real = x2ka_root / "test" / "B", x2ka_root / "test" / "B"
    return {
        "app.py": functools.partial(app_main, ["--model_path", str(checkpoint), "--img", str(inputs / "scene.png"),
                                               "--out", str(target), *APP_COMMON]),
        "app.py --tile": functools.partial(app_main, ["--model_path", str(checkpoint), "--img",
                                                      str(inputs / "scene_geo.tif"), "--out", str(target),
                                                      "--tile", "32", "--overlap", "8", *APP_COMMON]),
        "train.py": functools.partial(train_script.main, ugatit_args(x2ka_root, work, "ro", "--iteration", 1,
                                                                     "--checkpoints_dir", target)),
        "train.py --model gatys": functools.partial(train_script.main, [*gatys, "--checkpoints_dir", str(target)]),
        "test.py": functools.partial(test_script.main, [*gatys_test_args(x2ka_root, work, "--n_iter", "1"),
                                                        "--results_dir", str(target)]),
        "evaluate.py": functools.partial(evaluate_script.main, ["--fake_dir", str(fake), "--real_dir", str(real),
                                                                "--fake_prefix", "", "--out", str(target),
                                                                "--no_fid", "--no_lpips", "--no_gram",
                                                                "--gpu_ids", "-1"]),
        "make_dataset.py": functools.partial(make_dataset, ["x2ka", "--out", str(target), "--size", "16",
                                                            "--n_train", "1", "--n_test", "0"]),
        "ContentVisualization.py": lambda: visualize(*parse_options("content", [
            "--model", "vgg16", "--layers_ids", "3", "--n_channels", "1", "--n_iter", "1", "--im_size", "32",
            "--vgg_weights", "random", "--gpu_ids", "-1", "--results_dir", str(target)])),
    }


TOOLS = ["app.py", "app.py --tile", "train.py", "train.py --model gatys", "test.py", "evaluate.py", "make_dataset.py",
         "ContentVisualization.py"]


@pytest.fixture
def gram_work(x2ka_root, tmp_path):
    """A work folder with the Gram file test.py needs."""
    work = tmp_path / "work"
    train_script.main(gatys_train_args(x2ka_root, work))
    return work


@pytest.mark.parametrize("tool", TOOLS)
def test_a_read_only_target_is_one_line_naming_it(tool, checkpoint, inputs, x2ka_root, tmp_path, mount_tmpfs,
                                                   capsys, request):
    """Every tool writing into a read-only folder ends with one line naming the file and 'read-only file system'."""
    target = mount_tmpfs("read_only", read_only=True)
    work = request.getfixturevalue("gram_work") if tool == "test.py" else tmp_path / "work"
    code, stderr = run_tool(tool_runs(checkpoint, inputs, x2ka_root, work, target)[tool], capsys)
    assert_one_line_error(code, stderr, str(target), "read-only file system")


@pytest.mark.parametrize("tool", TOOLS)
def test_a_full_target_is_one_line_naming_it(tool, checkpoint, inputs, x2ka_root, tmp_path, mount_tmpfs, capsys,
                                             request):
    """Every tool writing into a full file system ends with one line naming the file and 'no space left on
    device'; no temporary file is left behind."""
    target = mount_tmpfs("full", size="1m")
    fill(target)
    work = request.getfixturevalue("gram_work") if tool == "test.py" else tmp_path / "work"
    code, stderr = run_tool(tool_runs(checkpoint, inputs, x2ka_root, work, target)[tool], capsys)
    assert_one_line_error(code, stderr, str(target), "no space left on device")
    assert not [path for path in target.rglob(".*") if TEMPORARY_NAME.fullmatch(path.name)]


def test_a_full_disk_while_saving_keeps_the_last_checkpoint_loadable(tmp_path, mount_tmpfs, capsys):
    """U-GAT-IT training whose disk fills up after iteration 1: saving iteration 2 fails with one line saying the
    last good checkpoint (iteration 1) is kept, and that file still loads, unchanged."""
    from conftest import make_eo2sar

    class Factory:  # make_eo2sar takes a tmp_path_factory
        def mktemp(self, name):
            folder = tmp_path / name
            folder.mkdir()
            return folder

    root = make_eo2sar(Factory(), "eo2sar", size=32, n_train=2, n_test=1)
    work = mount_tmpfs("checkpoints", size="4m")
    args = ugatit_args(root, tmp_path, "full", "--save_freq", 1, "--no_html", "--checkpoints_dir", work)
    assert run_tool(functools.partial(train_script.main, [*args, "--iteration", "1"]), capsys)[0] == 0
    latest = work / "full" / "latest_net_ugatit.pth"
    before = latest.read_bytes()
    fill(work, leave=len(before) // 4)  # room for the options and the loss log, not for a checkpoint
    code, stderr = run_tool(functools.partial(train_script.main, [*args, "--iteration", "2", "--continue_train"]),
                            capsys)
    line = assert_one_line_error(code, stderr, "2_net_ugatit.pth", "no space left on device")
    assert f"the last good checkpoint {latest} (iteration 1) is kept" in line and "--continue_train" in line
    assert latest.read_bytes() == before
    assert read_checkpoint(latest)[SARGEN_STATE_KEY]["iteration"] == 1
    assert sorted(path.name for path in (work / "full").glob("*.pth")) == ["1_net_ugatit.pth",
                                                                          "latest_net_ugatit.pth"]


def test_a_full_disk_keeps_the_earlier_output(checkpoint, inputs, mount_tmpfs, capsys):
    """app.py rerun onto a full disk: one line, and its earlier output is left as it was."""
    out = mount_tmpfs("out", size="1m")
    argv = ["--model_path", str(checkpoint), "--img", str(inputs / "scene_geo.tif"), "--out", str(out / "a.tif"),
            *APP_COMMON]
    assert run_tool(functools.partial(app_main, argv), capsys)[0] == 0
    before = (out / "a.tif").read_bytes()
    fill(out)
    code, stderr = run_tool(functools.partial(app_main, argv), capsys)
    assert_one_line_error(code, stderr, out / "a.tif", "no space left on device")
    assert (out / "a.tif").read_bytes() == before


# ---- files in the way, read errors, interrupted writes -------------------------------------------------------


def test_a_file_where_a_folder_is_needed_is_one_line(checkpoint, inputs, x2ka_root, tmp_path, capsys):
    """--checkpoints_dir, make_dataset --out or app --out/NAME below an existing file: one line naming that file."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, stderr = run_tool(functools.partial(train_script.main, gatys_train_args(x2ka_root, tmp_path) + [
        "--checkpoints_dir", str(blocker / "checkpoints")]), capsys)
    assert_one_line_error(code, stderr, f"{blocker} is a file, not a folder")
    code, stderr = run_tool(functools.partial(make_dataset, ["x2ka", "--out", str(blocker), "--size", "16"]), capsys)
    assert_one_line_error(code, stderr, f"--out {blocker} is a file, not a folder")
    code, stderr = run_tool(functools.partial(app_main, ["--model_path", str(checkpoint), "--img",
                                                         str(inputs / "scene.png"), "--out",
                                                         str(blocker / "out.png"), *APP_COMMON]), capsys)
    assert_one_line_error(code, stderr, f"{blocker} is a file, not a folder")
    assert blocker.read_text() == "x"


def test_run_main_words_any_os_error_in_one_line(capsys):
    """The last resort: an OSError nobody worded (here an I/O error reading a file) is one line with its path and
    cause, a MemoryError one line too, and both exit 2."""
    def fails(error):
        raise error

    code, stderr = run_tool(functools.partial(fails, OSError(errno.EIO, os.strerror(errno.EIO), "/data/scene.tif")),
                            capsys)
    assert_one_line_error(code, stderr, "/data/scene.tif: input/output error")
    code, stderr = run_tool(functools.partial(fails, MemoryError()), capsys)
    assert_one_line_error(code, stderr, "out of memory")


def test_app_removes_the_temporaries_of_a_killed_run(checkpoint, inputs, tmp_path, capsys):
    """A run killed mid-COG leaves .NAME.*.tmp.staging.tif and a 0-byte .NAME.*.tmp.tif: the next run removes
    them (those of a live writer stay)."""
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = writer_id().rpartition("-")[0]
    stale = [out / f".gen_sar_scene_geo.{host}-{dead.stdout.strip()}.k3j2.tmp.staging.tif",
             out / f".gen_sar_scene_geo.{host}-{dead.stdout.strip()}.x9q1.tmp.tif"]
    stale[0].write_bytes(b"II*\0partial")
    stale[1].write_bytes(b"")
    live = out / f".gen_sar_other.{writer_id()}.a1b2.tmp.tif"
    live.write_bytes(b"")
    argv = ["--model_path", str(checkpoint), "--img", str(inputs / "scene_geo.tif"), "--out", str(out),
            "--tile", "32", "--overlap", "8", *APP_COMMON]
    assert run_tool(functools.partial(app_main, argv), capsys)[0] == 0
    assert not any(path.exists() for path in stale) and live.exists()
    assert sorted(path.name for path in out.iterdir() if not path.name.startswith(".")) == ["gen_sar_scene_geo.tif",
                                                                                             "manifest.json"]
    shutil.rmtree(out)

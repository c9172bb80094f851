"""What a user sees on the command line: options, bad input as one line, results kept safe."""

import shutil

import pytest
from conftest import gatys_test_args, gatys_train_args, run_script

from models import create_model
from options.test_options import TestOptions
from util.errors import SargenError


def assert_one_line_error(code, stderr, *expected):
    """A non-zero exit with one 'error:' line naming what is wrong, and no traceback."""
    assert code != 0
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    for text in expected:
        assert text in errors[0], errors[0]


@pytest.fixture(scope="module")
def good_run(x2ka_root, tmp_path_factory):
    """A dataset copy with a Gram file and a finished test run, to check that failures keep them."""
    work = tmp_path_factory.mktemp("cli")
    root = work / "data"
    shutil.copytree(x2ka_root, root)
    code, _, stderr = run_script("train.py", gatys_train_args(root, work))
    assert code == 0, stderr
    code, _, stderr = run_script("test.py", gatys_test_args(root, work, "--n_iter", "3"))
    assert code == 0, stderr
    return root, work


def test_options_are_printed_and_saved(good_run):
    root, work = good_run
    saved = (work / "checkpoints" / "tiny" / "train_opt.txt").read_text()
    assert "vgg_weights: random" in saved and "[default: imagenet]" in saved
    saved = (work / "checkpoints" / "tiny" / "test_opt.txt").read_text()
    assert "vgg_weights: random" in saved and "style_source: total" in saved


def test_unknown_model_and_bad_values_list_the_choices(tmp_path):
    code, _, stderr = run_script("train.py", ["--model", "cycle_gan", "--dataroot", str(tmp_path)])
    assert code == 2 and "invalid choice: 'cycle_gan'" in stderr and "'gatys'" in stderr and "'pix2pix'" in stderr
    code, _, stderr = run_script("test.py", ["--model", "gatys", "--style_source", "mean", "--gpu_ids", "-1"])
    assert code == 2 and "'total', 'real', 'style'" in stderr
    code, _, stderr = run_script("test.py", ["--model", "gatys", "--batch_size", "0"])
    assert code == 2 and "--batch_size" in stderr


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_missing_or_empty_dataroot(tmp_path, case):
    root = tmp_path / "data"
    if case == "empty":
        (root / "train" / "B").mkdir(parents=True)
    code, _, stderr = run_script("train.py", gatys_train_args(root, tmp_path))
    expected = str(root) if case == "missing" else str(root / "train" / "B")
    assert_one_line_error(code, stderr, expected)


def test_corrupt_image_names_the_file_and_keeps_the_gram_file(good_run, tmp_path):
    root, work = good_run
    gram_file = work / "checkpoints" / "tiny" / "latest_gram.pth"
    before = gram_file.read_bytes()
    broken = tmp_path / "data"
    shutil.copytree(root, broken)
    victim = sorted((broken / "train" / "B").iterdir())[2]
    victim.write_bytes(victim.read_bytes()[:100])
    code, _, stderr = run_script("train.py", gatys_train_args(broken, work))
    assert_one_line_error(code, stderr, "cannot read image", victim.name)
    assert gram_file.read_bytes() == before


def test_a_text_file_named_like_an_image_is_refused_and_results_are_kept(good_run, tmp_path):
    root, work = good_run
    page = work / "results" / "tiny" / "test_latest" / "index.html"
    before = page.read_text()
    broken = tmp_path / "data"
    shutil.copytree(root, broken)
    victim = sorted((broken / "test" / "A").iterdir())[1]
    victim.write_text("this is not a PNG")
    code, _, stderr = run_script("test.py", gatys_test_args(broken, work, "--n_iter", "3"))
    assert_one_line_error(code, stderr, victim.name)
    assert page.read_text() == before


def test_gram_file_from_another_backbone(good_run):
    root, work = good_run
    code, _, stderr = run_script("test.py", gatys_test_args(root, work, "--vgg", "vgg19"))
    assert_one_line_error(code, stderr, "latest_gram.pth", "vgg16", "vgg19")


def test_nonexistent_weights_file(good_run, tmp_path):
    root, work = good_run
    args = gatys_test_args(root, work) + ["--vgg_weights", str(tmp_path / "nowhere.pth")]
    code, _, stderr = run_script("test.py", args)
    assert_one_line_error(code, stderr, "--vgg_weights", "nowhere.pth")


def test_a_pickle_that_would_run_code_is_refused(good_run, tmp_path):
    import pickle

    class Exploit:
        def __reduce__(self):
            return (exec, (f"open({str(tmp_path / 'pwned')!r}, 'w').write('x')",))

    root, work = good_run
    hostile = tmp_path / "hostile.pth"
    hostile.write_bytes(pickle.dumps({"features.0.weight": Exploit()}))
    # --style_source real: no Gram file whose record would refuse these weights before they are loaded
    args = gatys_test_args(root, work, "--style_source", "real") + ["--vgg_weights", str(hostile)]
    code, _, stderr = run_script("test.py", args)
    assert_one_line_error(code, stderr, "hostile.pth")
    assert not (tmp_path / "pwned").exists()


def test_a_missing_gram_epoch_lists_the_saved_ones(good_run):
    root, work = good_run
    opt = TestOptions().parse(gatys_test_args(root, work, "--epoch", "5000"), save=False)
    with pytest.raises(SargenError, match=r"Gram file not found: .*tiny/5000_gram.pth; saved in .*tiny: latest "):
        create_model(opt)  # the Gram file's record is read when the model is built (it fills the VGG options)

"""Cross-band style transfer: Gram files, optimization, batching and the results page."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO_ROOT, gatys_test_args, gatys_train_args

import test as test_script
import train as train_script
from data import create_dataloader, create_dataset
from models.gatys_model import GatysModel
from models.losses import content_loss, gram_matrix, style_loss
from options.test_options import TestOptions
from util.checkpoint import load_checkpoint
from util.errors import SargenError
from util.versions import software_versions


def test_gram_matrix_on_a_hand_checked_tensor():
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 1, 2)
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / 4.0  # F F^T / (C H W), C=2, H=1, W=2
    assert torch.allclose(gram_matrix(features)[0], expected)


def test_losses_are_per_image():
    grams = {"relu1_2": torch.zeros(2, 3, 3)}
    targets = {"relu1_2": torch.stack([torch.zeros(3, 3), torch.ones(3, 3)])}
    assert style_loss(grams, targets).tolist() == [0.0, 1.0]
    features = {"relu2_2": torch.zeros(2, 1, 2, 2)}
    assert content_loss(features, {"relu2_2": torch.full((2, 1, 2, 2), 2.0)}).tolist() == [4.0, 4.0]


@pytest.fixture(scope="module")
def trained(x2ka_root, tmp_path_factory):
    """A Gram file made by train.py on the tiny training set."""
    work = tmp_path_factory.mktemp("gatys")
    train_script.main(gatys_train_args(x2ka_root, work))
    return work


def build_model(root, work, *extra):
    """A set-up test-time GatysModel and its options."""
    opt = TestOptions().parse(gatys_test_args(root, work, *extra), save=False)
    model = GatysModel(opt)
    model.setup()
    return model, opt


def first_batch(opt):
    """The first test batch of the options' dataset."""
    return next(iter(create_dataloader(create_dataset(opt), opt, shuffle=False)))


@pytest.mark.numerics
def test_gram_file_round_trip_and_metadata(x2ka_root, trained):
    payload = load_checkpoint(trained / "checkpoints" / "tiny" / "latest_gram.pth")
    assert payload["backbone"] == "vgg16"
    assert payload["weights"] == "random:seed=0,unit-variance"
    assert payload["style_layers"] == ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"]
    assert payload["image_count"] == 5 and payload["image_size"] == [32, 32]
    assert payload["categories"] == {name: 1 for name in ("building", "farmland", "road", "vegetation", "water")}
    assert payload["software"] == software_versions()
    assert (trained / "checkpoints" / "tiny" / "train_opt.txt").is_file()
    model, opt = build_model(x2ka_root, trained)
    opt.phase, opt.sides = "train", "B"
    objective = model.objective
    grams = objective.grams(objective.features(first_batch(opt)["B"], precision=False))
    training_images = create_dataset(opt)
    all_images = torch.stack([item["B"] for item in training_images])
    all_grams = objective.grams(objective.features(all_images, precision=False))
    assert set(grams) == set(payload["gram"])
    for name, gram in payload["gram"].items():
        assert torch.allclose(gram, all_grams[name].mean(0), rtol=1e-4, atol=1e-7)
    water = [index for index, item in enumerate(training_images) if item["category"] == "water"][0]
    assert torch.allclose(payload["category_gram"]["water"]["relu3_3"], all_grams["relu3_3"][water], atol=1e-6)


def test_gram_file_from_another_backbone_is_refused_naming_both(x2ka_root, trained):
    with pytest.raises(SargenError, match=r"latest_gram.pth was made with backbone vgg16 .* uses vgg19"):
        build_model(x2ka_root, trained, "--vgg", "vgg19")
    with pytest.raises(SargenError, match=r"style_layers \['relu1_2'.*uses \['relu2_2'\]"):
        build_model(x2ka_root, trained, "--style_layer", "1")


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
@pytest.mark.parametrize("style_source", ["total", "real", "style"])
def test_optimization_lowers_the_total_loss(x2ka_root, trained, optimizer, style_source):
    model, opt = build_model(x2ka_root, trained, "--optimizer", optimizer, "--style_source", style_source,
                             "--batch_size", "2", "--n_iter", "15", "--log_freq", "1")
    model.set_input(first_batch(opt))
    model.test()
    for curve, final_total in zip(model.curves, model.final_losses[0]):
        assert curve[0]["step"] == 0 and len(curve) == 15
        assert final_total < 0.7 * curve[0]["total"]
    results = model.get_current_results()
    assert [result.name for result in results] == ["building_0000", "farmland_0001"]
    expected = {"real_A", "fake_B", "real_B"} | ({"style_B"} if style_source == "style" else set())
    assert set(results[0].visuals) == expected
    assert "mse_real_B" in results[0].scalars


def optimized_in_float64(root, work, batch, *options):
    """Run a model's test() in float64, where batched and single results must agree exactly."""
    model, _ = build_model(root, work, *options)
    model.objective.vgg.double()
    model.set_input({key: value.double() if isinstance(value, torch.Tensor) else value for key, value in batch.items()})
    model.test()
    return model


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_batch_gives_the_same_images_as_one_at_a_time(x2ka_root, trained, optimizer):
    common = ("--optimizer", optimizer, "--n_iter", "12", "--precision", "float32", "--style_source", "style")
    _, opt = build_model(x2ka_root, trained, *common, "--batch_size", "2")
    batch = first_batch(opt)
    together = optimized_in_float64(x2ka_root, trained, batch, *common, "--batch_size", "2").fake_B
    for index in range(2):
        single_batch = {key: value[index: index + 1] for key, value in batch.items()}
        single = optimized_in_float64(x2ka_root, trained, single_batch, *common, "--batch_size", "1")
        assert torch.allclose(single.fake_B[0], together[index], rtol=0, atol=1e-9)
        assert not torch.allclose(single.fake_B[0], single.real_A[0], atol=1e-3), "the image did change"


def test_same_category_uses_the_category_gram_and_style_image(x2ka_root, trained):
    model, opt = build_model(x2ka_root, trained, "--same_category", "--style_source", "style", "--batch_size", "2")
    model.set_input(first_batch(opt))
    chosen = [model.load_style_image(path, category) for path, category in zip(model.image_paths, model.categories)]
    style_folder = x2ka_root / "train" / "B"
    for image, category in zip(chosen, model.categories):
        same = [path for path in style_folder.iterdir() if path.name.startswith(category)]
        assert len(same) == 1
        assert torch.allclose(image, model.load_style_image(same[0], category), atol=0)
    total_model, _ = build_model(x2ka_root, trained, "--same_category")
    saved = total_model.saved_grams
    assert torch.equal(total_model.saved_category_grams("road")["relu1_2"], saved["category_gram"]["road"]["relu1_2"])
    assert torch.equal(total_model.saved_category_grams("unknown")["relu1_2"], saved["gram"]["relu1_2"])


def test_test_script_writes_every_image_page_and_log(x2ka_root, trained):
    test_script.main(gatys_test_args(x2ka_root, trained, "--batch_size", "2", "--save_midResult",
                                     "--save_epoch", "4"))
    web_dir = trained / "results" / "tiny" / "test_latest"
    page = (web_dir / "index.html").read_text()
    images = sorted(path.name for path in (web_dir / "images").glob("*.png"))
    assert images == sorted(f"{stem}_{label}.png" for stem in ("building_0000", "farmland_0001")
                            for label in ("real_A", "fake_B", "real_B", "fake_B_step_00004", "fake_B_step_00008"))
    rows = sorted(path.name for path in (web_dir / "images").glob("*.row.json"))
    assert rows == ["building_0000.row.json", "farmland_0001.row.json"]
    linked = set(re.findall(r'(?:src|href)="([^"]+)"', page))
    assert linked == {f"images/{name}" for name in images}
    assert all((web_dir / link).is_file() for link in linked)
    assert "random:seed=0,unit-variance" in page
    log = (web_dir / "loss_log.txt").read_text().splitlines()
    assert sum("(image: building_0000) final" in line for line in log) == 1
    assert any("(image: farmland_0001) step: 9" in line for line in log)
    assert (web_dir / "test_opt.txt").is_file()
    from PIL import Image

    assert Image.open(web_dir / "images" / "building_0000_fake_B.png").size == (32, 32)


def test_non_finite_loss_stops_naming_the_image_and_step(x2ka_root, trained):
    """A style weight that overflows float32 makes the total loss infinite: the run stops at the first check."""
    model, opt = build_model(x2ka_root, trained, "--lambda_style", "1e300", "--n_iter", "3")
    model.set_input(first_batch(opt))
    with pytest.raises(SargenError, match=r"^non-finite loss of image building_0000 at step 0: total = inf \(lower"):
        model.test()


def test_skip_existing_after_a_kill_does_only_the_images_not_yet_written(x2ka_root, trained, tmp_path):
    """SIGKILL test.py once the first image is finished; the rerun with --skip_existing does only the second."""
    args = gatys_test_args(x2ka_root, trained, "--results_dir", str(tmp_path), "--n_iter", "200")
    images = tmp_path / "tiny" / "test_latest" / "images"
    first_row, second_row = images / "building_0000.row.json", images / "farmland_0001.row.json"
    with open(tmp_path / "killed_run.log", "w") as log:
        process = subprocess.Popen([sys.executable, str(REPO_ROOT / "test.py"), *args], cwd=REPO_ROOT,
                                   stdout=log, stderr=log)
    deadline = time.monotonic() + 300
    while not first_row.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert first_row.exists() and not second_row.exists(), (tmp_path / "killed_run.log").read_text()[-2000:]
    finished = {path: path.stat().st_mtime_ns for path in images.glob("building_0000*")}

    test_script.main([*args[:-2], "--n_iter", "5", "--skip_existing"])
    assert {path: path.stat().st_mtime_ns for path in images.glob("building_0000*")} == finished
    assert second_row.exists() and (images / "farmland_0001_fake_B.png").is_file()
    page = (images.parent / "index.html").read_text()
    assert page.count("<h3>building_0000</h3>") == 1 and page.count("<h3>farmland_0001</h3>") == 1
    log = (images.parent / "loss_log.txt").read_text()
    assert "(image: building_0000) final" in log and "(image: farmland_0001) final" in log

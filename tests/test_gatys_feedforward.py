"""The feed-forward generator trained with the Gatys losses: training, resume, the test page, tiling, torchrun,
--model gatys --init feedforward, and the Gram file's record as the default VGG options."""

import re
import shutil

import pytest
import torch
from conftest import gatys_test_args, gatys_train_args, run_torchrun
from PIL import Image
from sgd_train import assert_same_gradients, assert_sgd_weights_agree, train_with_sgd
from ugatit_helpers import (
    loss_values,
    one_torch_thread,  # noqa: F401  (autouse fixture)
    read_loss_log,
    run_entry_point,
)

import test as test_script
import train as train_script
from data import available_dataset_modes, create_dataloader, create_dataset
from data.radiometry import radiometry_for
from evaluation.band_character import closer_counts
from models import available_models, create_model
from models.feedforward_generator import (
    CHECKPOINT_SUFFIX,
    HEAD_LR_SCALE,
    FeedForwardGenerator,
    FeedForwardTranslator,
    grain_noise,
    load_feedforward_translator,
    read_feedforward_checkpoint,
    translate_image,
)
from models.gatys_model import GatysModel
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.curves import read_log_curves
from util.errors import SargenError
from util.versions import software_text, software_versions

TINY_GENERATOR = ["--ngf", "8", "--n_layers", "2"]
LEARNING_RATE = 1e-3
GRADIENT_TOLERANCE = 1e-3  # of each gradient's scale (tests/sgd_train.py)
QUALITY_STEPS = 40
QUALITY_MIN_CLOSER = 5  # of the 7 x2ka image pairs (train and test)


def feedforward_args(root, work, name, *extra):
    """Options of a tiny feed-forward training run on the CPU (32 px, vgg16 random weights, no visdom)."""
    args = gatys_train_args(root, work, "--model", "gatys_feedforward", "--name", name, *TINY_GENERATOR,
                            "--display_id", "0", "--print_freq", "1", "--batch_size", "2")
    return [*map(str, args), *map(str, extra)]


def feedforward_test_args(root, work, name, *extra):
    """Options of test.py on a feed-forward run: only the data, the names and the folders (the rest is recorded)."""
    return ["--model", "gatys_feedforward", "--dataroot", str(root), "--name", name, "--gpu_ids", "-1",
            "--num_threads", "0", "--load_size", "32", "--crop_size", "32", "--checkpoints_dir",
            str(work / "checkpoints"), "--results_dir", str(work / "results"), *map(str, extra)]


@pytest.fixture(scope="module")
def trained(x2ka_root, tmp_path_factory):
    """A 4-step run saving at steps 2 and 4 (its Gram file computed on the way): the work folder."""
    work = tmp_path_factory.mktemp("feedforward")
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_entry_point(train_script, feedforward_args(x2ka_root, work, "ff", "--iteration", 4, "--save_freq", 2,
                                                       "--update_html_freq", 2), monkeypatch)
    return work


def total_losses(log_path):
    """The logged total loss of every step, in order."""
    log = read_loss_log(log_path)
    return [loss_values(log[step][1])["total"] for step in sorted(log)]


def test_model_choices_exclude_the_base_classes():
    """--model and --dataset_mode list plugins only: base_model.py and base_dataset.py hold the base classes."""
    assert "base" not in available_models() and "gatys_feedforward" in available_models()
    assert "base" not in available_dataset_modes() and "aligned" in available_dataset_modes()
    with pytest.raises(SystemExit):
        TrainOptions().parse(["--model", "base"], save=False)


def test_untrained_generator_is_the_identity_and_any_channel_count_works():
    """The output head starts as the source and the change and grain at zero: the untrained generator returns its
    source (in the output's channels)."""
    image = smooth_scene(36, 44)[None]
    torch.testing.assert_close(FeedForwardGenerator(3, 3, ngf=4, n_layers=1)(image), image, rtol=0, atol=1e-6)
    grey = FeedForwardGenerator(3, 1, ngf=4, n_layers=1)(image)
    assert grey.shape == (1, 1, 36, 44) and grey.min() >= -1 and grey.max() <= 1


def test_grain_noise_is_a_function_of_the_neighbourhood():
    """The grain's noise is unit-variance, differs between channels, and a crop's noise is the whole image's noise
    at the same pixels (save the crop's last row and column, whose right and lower neighbours are cut off)."""
    image = smooth_scene(64, 64)[None]
    noise = grain_noise(image, 3)
    assert noise.shape == (1, 3, 64, 64)
    assert abs(float(noise.std()) - 1.0) < 0.05 and abs(float(noise.mean())) < 0.05
    assert abs(float(torch.corrcoef(noise[0].flatten(1))[0, 1])) < 0.05
    torch.testing.assert_close(grain_noise(image[..., 8:40, 12:44], 3)[..., :-1, :-1], noise[..., 8:39, 12:43])


def test_old_design_checkpoints_are_refused_in_one_line(tmp_path):
    """A checkpoint of the first design (encoder, residual blocks), loaded by content as app.py loads it, stops with
    one line naming the file and asking for retraining."""
    from models.translators import load_translator

    path = tmp_path / "old.pth"
    torch.save({"generator": {"stem.1.weight": torch.zeros(32, 3, 7, 7)}, "sargen_gatys_feedforward": {},
                "sargen_format": 1}, path)
    with pytest.raises(SargenError, match=r"old.pth holds a feed-forward generator of sargen's first design.*retrain"):
        load_translator(path)


def test_content_targets_are_computed_once_per_image_when_reading_is_fixed():
    """With no flip and no random crop each image's content targets are computed once and then come from the
    cache, equal to fresh ones, in any batch order; with random crops (or flips) they are computed every step."""
    import argparse

    from models.gatys_feedforward_model import ContentTargetCache

    class CountingObjective:
        content_layers = ["relu2_2"]

        def __init__(self):
            self.images = 0

        def content_targets(self, images, precision=True):
            self.images += len(images)
            return {"relu2_2": images * 2.0}

    images = torch.rand(3, 3, 8, 8)
    paths = ["a.png", "b.png", "c.png"]
    fixed = argparse.Namespace(no_flip=True, preprocess="resize_and_crop", load_size=32, crop_size=32)
    cache, objective = ContentTargetCache(fixed), CountingObjective()
    first = cache.targets(objective, images[:2], paths[:2])
    again = cache.targets(objective, images[[2, 0]], [paths[2], paths[0]])
    assert objective.images == 3
    assert torch.equal(first["relu2_2"], images[:2] * 2.0) and torch.equal(again["relu2_2"], images[[2, 0]] * 2.0)
    cropped, objective = ContentTargetCache(argparse.Namespace(**{**vars(fixed), "load_size": 40})), CountingObjective()
    for _ in range(2):
        cropped.targets(objective, images, paths)
    assert objective.images == 6
    assert not ContentTargetCache(argparse.Namespace(**{**vars(fixed), "no_flip": False})).enabled


def test_training_lowers_the_loss(x2ka_root, tmp_path, monkeypatch):
    """Thirty steps on five images bring the total loss (style + content + total variation) well below its start."""
    args = feedforward_args(x2ka_root, tmp_path, "falls", "--iteration", 30, "--save_freq", 30, "--lambda_tv", 0.1,
                            "--decay_flag", "false", "--no_html")
    run_entry_point(train_script, args, monkeypatch)
    totals = total_losses(tmp_path / "checkpoints" / "falls" / "loss_log.txt")
    assert len(totals) == 30
    first, last = sum(totals[:5]) / 5, sum(totals[-5:]) / 5
    assert last < 0.5 * first, f"total loss went from {first:.4f} to {last:.4f}"
    gram_file = tmp_path / "checkpoints" / "falls" / "latest_gram.pth"
    assert gram_file.is_file(), "the missing Gram file is computed as train.py --model gatys would"


def paired_images(root, translator=None):
    """The x2ka pairs of training and test images in [-1, 1] (A, B), and A translated by `translator` if given."""
    from data.image_io import read_image

    sources, targets = [], []
    for split in ("train", "test"):
        for path in sorted((root / split / "A").iterdir()):
            sources.append(read_image(path, 3) * 2.0 - 1.0)
            targets.append(read_image(root / split / "B" / path.name, 3) * 2.0 - 1.0)
    generated = [translate_image(translator, image) for image in sources] if translator else None
    return sources, targets, generated


def test_trained_generator_moves_the_band_toward_the_target(x2ka_root, tmp_path, monkeypatch):
    """A seeded 40-step training with the default schedule and rates: on most of the 7 image pairs the generated
    band is closer to the real target band than the source is, in mean, spread and high-frequency share; the
    untrained generator (the identity) is closer in none."""
    args = feedforward_args(x2ka_root, tmp_path, "quality", "--iteration", QUALITY_STEPS, "--save_freq",
                            QUALITY_STEPS, "--no_html", "--precision", "float32")
    run_entry_point(train_script, args, monkeypatch)
    checkpoint = tmp_path / "checkpoints" / "quality" / f"latest{CHECKPOINT_SUFFIX}"
    sources, targets, generated = paired_images(x2ka_root, load_feedforward_translator(checkpoint, "cpu", "float32"))
    counts, averages = closer_counts(sources, generated, targets)
    assert all(count >= QUALITY_MIN_CLOSER for count in counts.values()), (counts, averages)
    untrained = FeedForwardTranslator(FeedForwardGenerator(3, 3, ngf=8, n_layers=2), "cpu", "float32")
    identity_counts, _ = closer_counts(sources, paired_images(x2ka_root, untrained)[2], targets)
    assert all(count < QUALITY_MIN_CLOSER for count in identity_counts.values())


@pytest.mark.numerics
def test_gram_file_is_the_one_gatys_training_writes(x2ka_root, trained, tmp_path):
    """The Gram file computed on the way equals train.py --model gatys's, and the checkpoint holds its targets."""
    train_script.main(gatys_train_args(x2ka_root, tmp_path))
    gatys = torch.load(tmp_path / "checkpoints" / "tiny" / "latest_gram.pth", weights_only=True)
    computed = torch.load(trained / "checkpoints" / "ff" / "latest_gram.pth", weights_only=True)
    for name, gram in gatys["gram"].items():  # batches of 2 and of 1 round differently
        assert torch.allclose(computed["gram"][name], gram, rtol=1e-5, atol=1e-9), name
    state = read_feedforward_checkpoint(trained / "checkpoints" / "ff" / f"latest{CHECKPOINT_SUFFIX}")
    targets = state["sargen_gatys_feedforward"]["style_targets"]
    assert targets["weights"] == "random:seed=0,unit-variance" and targets["backbone"] == "vgg16"
    assert torch.equal(targets["gram"]["relu3_3"], computed["gram"]["relu3_3"])


def test_resume_continues_like_an_uninterrupted_run(x2ka_root, trained, tmp_path, monkeypatch):
    """Resuming from step 2 gives the losses and weights of steps 3 and 4 of the uninterrupted run."""
    folder = tmp_path / "checkpoints" / "resumed"
    folder.mkdir(parents=True)
    shutil.copy(trained / "checkpoints" / "ff" / f"2{CHECKPOINT_SUFFIX}", folder / f"latest{CHECKPOINT_SUFFIX}")
    shutil.copy(trained / "checkpoints" / "ff" / "latest_gram.pth", folder / "latest_gram.pth")
    run_entry_point(train_script, feedforward_args(x2ka_root, tmp_path, "resumed", "--iteration", 4, "--save_freq", 2,
                                                   "--update_html_freq", 2, "--continue_train"), monkeypatch)
    full_log = read_loss_log(trained / "checkpoints" / "ff" / "loss_log.txt")
    resumed_log = read_loss_log(folder / "loss_log.txt")
    assert sorted(resumed_log) == [3, 4]
    assert resumed_log[3] == full_log[3] and resumed_log[4] == full_log[4]
    full = read_feedforward_checkpoint(trained / "checkpoints" / "ff" / f"4{CHECKPOINT_SUFFIX}")["generator"]
    again = read_feedforward_checkpoint(folder / f"4{CHECKPOINT_SUFFIX}")["generator"]
    for key, tensor in full.items():
        assert torch.allclose(tensor, again[key], atol=1e-6), f"{key} differs after resume"
    state = read_feedforward_checkpoint(folder / f"4{CHECKPOINT_SUFFIX}")["sargen_gatys_feedforward"]
    assert state["software"] == software_versions()
    page = (trained / "checkpoints" / "ff" / "web" / "index.html").read_text()
    assert "fake_B" in page and "real_A" in page and f"made with {software_text()}" in page


def test_test_page_lists_images_and_losses_like_gatys(x2ka_root, trained):
    """test.py needs no training flag: real_A, fake_B, real_B and the final losses, per image, as --model gatys."""
    test_script.main(feedforward_test_args(x2ka_root, trained, "ff"))
    web_dir = trained / "results" / "ff" / "test_latest"
    images = sorted(path.name for path in (web_dir / "images").glob("*.png"))
    assert images == sorted(f"{stem}_{label}.png" for stem in ("building_0000", "farmland_0001")
                            for label in ("real_A", "fake_B", "real_B"))
    assert sorted(path.name for path in (web_dir / "images").glob("*.row.json")) == [
        "building_0000.row.json", "farmland_0001.row.json"]
    page = (web_dir / "index.html").read_text()
    assert set(re.findall(r'src="images/([^"]+)"', page)) == set(images)
    assert "random:seed=0,unit-variance" in page and "step 4" in page
    finals = [line for line in (web_dir / "loss_log.txt").read_text().splitlines() if " final " in line]
    assert len(finals) == 2
    assert all(re.search(r"total: \S+ style: \S+ content: \S+ mse_real_B: \S+", line) for line in finals)
    assert Image.open(web_dir / "images" / "building_0000_fake_B.png").size == (32, 32)


@pytest.mark.numerics
def test_page_losses_are_the_gatys_losses_of_the_generated_image(x2ka_root, trained):
    """The page's losses are what --model gatys computes for the generator's output (its first logged step), both
    in float32 (auto would translate in bfloat16 on CPUs that have it, and --init feedforward here runs float32)."""
    opt = TestOptions().parse(feedforward_test_args(x2ka_root, trained, "ff", "--precision", "float32"), save=False)
    model = create_model(opt)
    model.setup()
    model.set_input(next(iter(create_dataloader(create_dataset(opt), opt, shuffle=False))))
    model.test()
    gatys = gatys_init_model(x2ka_root, trained, "--n_iter", "1")
    gatys.set_input(next(iter(create_dataloader(create_dataset(gatys.opt), gatys.opt, shuffle=False))))
    gatys.test()
    assert gatys.curves[0][0]["total"] == pytest.approx(model.final_losses[0][0], rel=1e-4)


def test_eval_freq_scores_the_generator_and_the_checkpoint_records_the_radiometry(x2ka_root, tmp_path, monkeypatch):
    """--eval_freq scores the generator on the aligned test pairs and keeps best_net; the checkpoint records how each
    domain was read, and test.py reads with that record (the page says so) without the training flags."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_cache"))  # no pytorch-fid weights: Gram and histograms
    args = feedforward_args(x2ka_root, tmp_path, "scored", "--iteration", 2, "--save_freq", 2, "--eval_freq", 1,
                            "--eval_size", 2, "--percentiles_B", "1,99", "--no_html")
    run_entry_point(train_script, args, monkeypatch)
    run_dir = tmp_path / "checkpoints" / "scored"
    curves = read_log_curves(run_dir / "metrics_log.txt")
    assert {"gram_distance", "histogram_js", "psnr", "ssim"} <= set(curves)
    assert [step for step, _ in curves["gram_distance"]] == [1, 2]
    best_step, best_value = min(curves["gram_distance"], key=lambda point: point[1])
    best = read_feedforward_checkpoint(run_dir / f"best{CHECKPOINT_SUFFIX}")["sargen_gatys_feedforward"]
    assert best["iteration"] == best_step and best["evaluation"]["value"] == pytest.approx(best_value, rel=1e-5)
    state = read_feedforward_checkpoint(run_dir / f"latest{CHECKPOINT_SUFFIX}")["sargen_gatys_feedforward"]
    assert state["radiometry"]["B"]["percentiles"] == [1.0, 99.0] and state["radiometry"]["A"]["percentiles"] == [
        2.0, 98.0]
    opt = TestOptions().parse(feedforward_test_args(x2ka_root, tmp_path, "scored"), save=False)
    model = create_model(opt)
    model.setup()
    assert radiometry_for(opt, "B").percentiles == (1.0, 99.0)
    assert any("domain B read as: " in note and "percentile 1,99" in note for note in model.result_notes())
    opt = TestOptions().parse(feedforward_test_args(x2ka_root, tmp_path, "scored", "--percentiles_B", "5,95"),
                              save=False)
    model = create_model(opt)
    model.setup()
    assert any("--percentiles_B 5,95 (training: 1,99)" in note for note in model.result_notes())


def gatys_init_model(root, work, *extra):
    """A set-up --model gatys test on the feed-forward run's images, starting from the generator's output."""
    checkpoint = work / "checkpoints" / "ff" / f"latest{CHECKPOINT_SUFFIX}"
    args = gatys_test_args(root, work, "--name", "ff", "--init", "feedforward", "--feedforward_checkpoint",
                           checkpoint, "--precision", "float32", "--content_layer", "3", *extra)
    model = GatysModel(TestOptions().parse(list(map(str, args)), save=False))
    model.setup()
    return model


def test_init_feedforward_starts_at_the_generators_output_and_lowers_the_loss(x2ka_root, trained):
    """--init feedforward: the starting images are the generator's outputs, and the optimization lowers the loss."""
    model = gatys_init_model(x2ka_root, trained, "--n_iter", "12", "--log_freq", "1", "--batch_size", "2")
    model.set_input(next(iter(create_dataloader(create_dataset(model.opt), model.opt, shuffle=False))))
    start = model.initial_images()
    for image, source in zip(start, model.real_A):
        torch.testing.assert_close(image, translate_image(model.feedforward, source))
    assert not torch.allclose(start, model.real_A, atol=1e-2)
    model.test()
    for curve, final in zip(model.curves, model.final_losses[0]):
        assert final < 0.9 * curve[0]["total"]
    assert "init feedforward (feed-forward generator (normalized-head-grain) ngf 8" in " ".join(model.result_notes())


def test_init_feedforward_errors_name_the_file(x2ka_root, trained, tmp_path):
    """A missing or foreign --feedforward_checkpoint stops with one line naming it."""
    with pytest.raises(SargenError, match=r"feed-forward generator checkpoint not found: .*nowhere.pth"):
        gatys_init_model(x2ka_root, trained, "--feedforward_checkpoint", tmp_path / "nowhere.pth")
    foreign = tmp_path / "gram_as_generator.pth"
    shutil.copy(trained / "checkpoints" / "ff" / "latest_gram.pth", foreign)
    with pytest.raises(SargenError, match=r"gram_as_generator.pth is not a --model gatys_feedforward checkpoint"):
        gatys_init_model(x2ka_root, trained, "--feedforward_checkpoint", foreign)


def smooth_scene(height, width, seed=1):
    """A smoothly varying random image in [-1, 1] with a little noise, like a land-cover scene."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 8 + 2, width // 8 + 2, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0]
    return (smooth + 0.2 * torch.rand(3, height, width, generator=generator)).clamp(0, 1) * 2 - 1


@pytest.mark.numerics
def test_tiled_translation_of_a_non_multiple_size_matches_the_untiled_one(trained):
    """The trained generator (its change and its normalized-source blend made larger, so the output leans on the
    image-wide statistics) on a 130 x 118 image in 32 px tiles (overlap 8) translated with the shared default
    context (32 px, more than the generator's reach: about 20 px through its context branch): the input's size and,
    with the default passes (the whole image's instance statistics), the whole image's translation at every
    pixel; per-tile statistics are far off."""
    payload = read_feedforward_checkpoint(trained / "checkpoints" / "ff" / f"latest{CHECKPOINT_SUFFIX}")
    generator = FeedForwardGenerator(3, 3, ngf=8, n_layers=2)
    generator.load_state_dict(payload["generator"])
    torch.manual_seed(0)
    with torch.no_grad():
        generator.change.weight.add_(0.05 * torch.randn_like(generator.change.weight))
        generator.normalized_weight.add_(0.3)
    translator = FeedForwardTranslator(generator, "cpu", "float32")
    image = smooth_scene(130, 118)
    whole = translate_image(translator, image)
    tiled = translate_image(translator, image, tile=32, overlap=8)
    assert whole.shape == tiled.shape == (3, 130, 118)
    difference = (tiled - whole).abs()
    assert difference.mean() < 1e-4 and difference.max() < 1e-3, (difference.mean(), difference.max())
    separate = (translate_image(translator, image, tile=32, overlap=8, passes=1) - whole).abs()
    assert separate.mean() > 100 * difference.mean()


def test_gram_file_record_is_the_default_and_no_weights_are_downloaded(x2ka_root, tmp_path, monkeypatch):
    """Trained with vgg16 random weights, a gatys test without VGG options uses them; an explicit conflicting option
    stops with the mismatch error before any weights are loaded."""
    train_script.main(gatys_train_args(x2ka_root, tmp_path, "--style_layer", "1,2"))

    def no_download(*args, **kwargs):
        raise AssertionError("tried to load ImageNet weights")

    monkeypatch.setattr("models.vgg.load_imagenet_weights", no_download)
    bare = ["--model", "gatys", "--dataroot", str(x2ka_root), "--name", "tiny", "--gpu_ids", "-1",
            "--checkpoints_dir", str(tmp_path / "checkpoints"), "--num_threads", "0"]
    model = GatysModel(TestOptions().parse(bare, save=False))
    model.setup()
    assert (model.opt.vgg, model.opt.vgg_weights, model.opt.vgg_seed) == ("vgg16", "random", 0)
    assert model.objective.style_layers == ["relu2_2", "relu3_3"]
    assert model.objective.vgg.weights_description == "random:seed=0,unit-variance"
    for option, value, found in (("--vgg_weights", "imagenet", "imagenet:vgg16"), ("--vgg", "vgg19", "vgg19"),
                                 ("--vgg_seed", "3", "seed=3"), ("--style_layer", "0", "relu1_2")):
        with pytest.raises(SargenError, match=rf"latest_gram.pth was made with \w+ .* but this run uses .*{found}"):
            GatysModel(TestOptions().parse([*bare, option, value], save=False))
    real_style = GatysModel(TestOptions().parse([*bare, "--style_source", "real", "--vgg_seed", "3"], save=False))
    assert real_style.objective.vgg.weights_description == "random:seed=3,unit-variance"


def test_gram_file_of_weights_from_a_file_asks_for_the_file(x2ka_root, tmp_path):
    """A record of file weights names the file only by its digest: the run asks for --vgg_weights PATH."""
    from models.vgg import build_architecture

    weights = tmp_path / "sar_vgg16.pth"
    torch.save(build_architecture("vgg16").state_dict(), weights)
    train_script.main(gatys_train_args(x2ka_root, tmp_path, "--vgg_weights", str(weights)))
    bare = ["--model", "gatys", "--dataroot", str(x2ka_root), "--name", "tiny", "--gpu_ids", "-1",
            "--checkpoints_dir", str(tmp_path / "checkpoints")]
    with pytest.raises(SargenError, match=r"made with VGG weights from a file \(file:[0-9a-f]{16}\): pass that file"):
        GatysModel(TestOptions().parse(bare, save=False))
    model = GatysModel(TestOptions().parse([*bare, "--vgg_weights", str(weights)], save=False))
    assert model.opt.vgg == "vgg16"


@pytest.mark.numerics
def test_two_ranks_train_like_one_process_on_the_global_batch(x2ka_root, tmp_path):
    """torchrun, 2 CPU ranks x batch 1 (computing the Gram file together): the gradients of 1 process x batch 2, so
    a plain-SGD step gives its weights (float32: the equivalence is DDP's, not bfloat16's), and its losses."""
    common = ("--iteration", 1, "--save_freq", 1, "--no_html", "--precision", "float32", "--lr", LEARNING_RATE)
    ddp_args = feedforward_args(x2ka_root, tmp_path, "ddp", *common, "--batch_size", 1)
    code, _, stderr = run_torchrun("tests/sgd_train.py", [tmp_path / "ddp_gradients.pt", *ddp_args])
    assert code == 0, stderr
    train_with_sgd(feedforward_args(x2ka_root, tmp_path, "single", *common), tmp_path / "single_gradients.pt")
    ranks = [torch.load(f"{tmp_path / 'ddp_gradients.pt'}.rank{rank}", weights_only=True) for rank in range(2)]
    scale = assert_same_gradients(ranks, torch.load(tmp_path / "single_gradients.pt", weights_only=True),
                                  ("generator",), GRADIENT_TOLERANCE)
    folder = tmp_path / "checkpoints"
    ddp = read_feedforward_checkpoint(folder / "ddp" / f"latest{CHECKPOINT_SUFFIX}")["generator"]
    single = read_feedforward_checkpoint(folder / "single" / f"latest{CHECKPOINT_SUFFIX}")["generator"]
    # the output head and grain learn at HEAD_LR_SCALE x --lr: the bound of the fastest parameters
    assert_sgd_weights_agree(ddp, single, LEARNING_RATE * HEAD_LR_SCALE * GRADIENT_TOLERANCE * scale, "generator")
    assert total_losses(folder / "ddp" / "loss_log.txt") == pytest.approx(
        total_losses(folder / "single" / "loss_log.txt"), rel=1e-4)


@pytest.mark.numerics
def test_app_translates_with_a_feedforward_checkpoint_told_apart_by_its_content(x2ka_root, trained, tmp_path):
    """app.py takes a gatys_feedforward checkpoint (no flag says which model): whole images at their own size, the
    translator's output, and --direction BtoA refused with one line naming the file."""
    import numpy as np

    from data.image_io import read_image, tensor_to_uint8
    from models.file_translation import app_main
    from models.translators import load_translator

    checkpoint = trained / "checkpoints" / "ff" / f"latest{CHECKPOINT_SUFFIX}"
    source = sorted((x2ka_root / "test" / "A").iterdir())[0]
    written = app_main(["--model_path", str(checkpoint), "--img", str(source), "--out", str(tmp_path / "out.png"),
                        "--device", "cpu", "--heatmap", "--precision", "float32"])
    assert written == [tmp_path / "out.png"] and not (tmp_path / "out_heatmap.png").exists()
    translator = load_translator(checkpoint, precision="float32")
    assert isinstance(translator, FeedForwardTranslator)
    image = read_image(source, translator.input_nc) * 2.0 - 1.0
    expected = tensor_to_uint8(translate_image(translator, image), (-1.0, 1.0)).astype(int)
    with Image.open(tmp_path / "out.png") as output:
        assert np.abs(np.asarray(output).astype(int) - expected).max() <= 1
    assert np.abs(expected - tensor_to_uint8(image, (-1.0, 1.0)).astype(int)).mean() > 0.5  # it did translate
    with pytest.raises(SargenError, match=r"ff.*gatys_feedforward generator.*--direction BtoA"):
        load_translator(checkpoint, direction="BtoA")

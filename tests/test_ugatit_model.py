"""Tests of U-GAT-IT training, checkpoints, resume, test-set translation and the unaligned dataset."""

import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import make_eo2sar, run_script
from PIL import Image
from sgd_train import GradientRecordingSGD, assert_same_gradients, assert_sgd_weights_agree
from ugatit_helpers import (
    identical_models,
    loss_values,
    one_torch_thread,  # noqa: F401  (autouse fixture)
    read_loss_log,
    run_entry_point,
    ugatit_args,
)

import test as test_script
import train as train_script
from benchmarks.ugatit_reference import original_training_step
from data import create_dataset
from models import create_model
from models.step_trained_model import TrainingSampler, linear_decay_learning_rate
from models.ugatit_checkpoint import NETWORK_NAMES, SARGEN_STATE_KEY, read_checkpoint
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.errors import SargenError
from util.versions import software_versions

PANELS = ["real_A", "heatmap_A2A", "fake_A2A", "heatmap_A2B", "fake_A2B", "heatmap_A2B2A", "fake_A2B2A"]


@pytest.fixture(scope="module")
def eo2sar_root(tmp_path_factory):
    """A tiny unpaired EO/SAR set: 40 px, 5 images per training domain, 2 per test domain."""
    return make_eo2sar(tmp_path_factory, "eo2sar", size=40, n_train=5, n_test=2)


@pytest.fixture(scope="module")
def trained(eo2sar_root, tmp_path_factory):
    """A 4-step run saving at steps 2 and 4: (work folder, options)."""
    work = tmp_path_factory.mktemp("ugatit")
    args = ugatit_args(eo2sar_root, work, "full", "--iteration", 4, "--save_freq", 2, "--update_html_freq", 2)
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_entry_point(train_script, args, monkeypatch)
    return work, args


def parse_train_options(args):
    """Parsed training options of `args`, without writing the option file."""
    return TrainOptions().parse(list(map(str, args)), save=False)


def test_training_lowers_cycle_loss(eo2sar_root, tmp_path, monkeypatch):
    """Thirty steps on five image pairs bring the cycle losses clearly below their start."""
    args = ugatit_args(eo2sar_root, tmp_path, "falls", "--iteration", 30, "--save_freq", 30, "--lr", "5e-4",
                       "--decay_flag", "false", "--update_html_freq", 100)
    run_entry_point(train_script, args, monkeypatch)
    log = read_loss_log(tmp_path / "checkpoints" / "falls" / "loss_log.txt")
    cycle = [sum(loss_values(log[step][1])[f"G_cycle_{d}"] for d in "AB") for step in sorted(log)]
    assert len(cycle) == 30
    first, last = sum(cycle[:5]) / 5, sum(cycle[-5:]) / 5
    assert last < 0.8 * first, f"cycle loss went from {first:.4f} to {last:.4f}"


def test_checkpoint_has_the_reference_layout_and_plain_extras(trained):
    """Saved files hold the six reference state dicts plus plain resume state, loadable with weights_only."""
    work, args = trained
    folder = work / "checkpoints" / "full"
    assert {path.name for path in folder.glob("*.pth")} == {"2_net_ugatit.pth", "4_net_ugatit.pth",
                                                           "latest_net_ugatit.pth"}
    payload = torch.load(folder / "4_net_ugatit.pth", weights_only=True)
    assert set(payload) == {*NETWORK_NAMES, SARGEN_STATE_KEY, "sargen_format"}  # extras only under sargen's key
    model = create_model(parse_train_options(args))
    for name in NETWORK_NAMES:
        assert list(payload[name]) == list(model.networks[name].state_dict())
    assert "weight_orig" in " ".join(payload["disGA"])
    extra = payload[SARGEN_STATE_KEY]
    assert extra["iteration"] == 4
    assert extra["options"]["img_size"] == 32 and extra["options"]["device"] == "cpu"
    assert extra["optimizer_G"]["param_groups"][0]["betas"] == (0.5, 0.999)
    assert extra["software"] == software_versions()  # what made it: sargen's commit, torch, numpy, GDAL, ...
    assert torch.equal(torch.load(folder / "latest_net_ugatit.pth", weights_only=True)["genA2B"]["FC.0.weight"],
                       payload["genA2B"]["FC.0.weight"])


def test_resume_continues_like_an_uninterrupted_run(trained, tmp_path, monkeypatch):
    """Resuming from step 2 gives the same learning rates and losses at steps 3 and 4 as the full run."""
    work, args = trained
    resumed = tmp_path / "checkpoints" / "resumed"
    resumed.mkdir(parents=True)
    shutil.copy(work / "checkpoints" / "full" / "2_net_ugatit.pth", resumed / "latest_net_ugatit.pth")
    resume_args = ugatit_args(args[args.index("--dataroot") + 1], tmp_path, "resumed", "--iteration", 4,
                              "--save_freq", 2, "--update_html_freq", 2, "--continue_train")
    run_entry_point(train_script, resume_args, monkeypatch)
    full_log = read_loss_log(work / "checkpoints" / "full" / "loss_log.txt")
    resumed_log = read_loss_log(resumed / "loss_log.txt")
    assert sorted(resumed_log) == [3, 4]
    assert resumed_log[3] == full_log[3] and resumed_log[4] == full_log[4]
    assert float(resumed_log[3][0]) == pytest.approx(5e-5)  # linear decay over the second half of 4 steps
    full = read_checkpoint(work / "checkpoints" / "full" / "4_net_ugatit.pth")
    again = read_checkpoint(resumed / "4_net_ugatit.pth")
    for name in NETWORK_NAMES:
        for key, tensor in full[name].items():
            assert torch.allclose(tensor, again[name][key], atol=1e-6), f"{name}.{key} differs after resume"


def test_plain_reference_file_resumes_at_its_step(trained, tmp_path, monkeypatch):
    """A file with only the six state dicts resumes (fresh optimizers) at the step its name gives."""
    work, args = trained
    payload = read_checkpoint(work / "checkpoints" / "full" / "2_net_ugatit.pth")
    folder = tmp_path / "checkpoints" / "plain"
    folder.mkdir(parents=True)
    torch.save({name: payload[name] for name in NETWORK_NAMES}, folder / "2_net_ugatit.pth")
    plain_args = ugatit_args(args[args.index("--dataroot") + 1], tmp_path, "plain", "--iteration", 3,
                             "--save_freq", 10, "--continue_train", "--epoch", 2)
    run_entry_point(train_script, plain_args, monkeypatch)
    assert sorted(read_loss_log(folder / "loss_log.txt")) == [3]
    assert read_checkpoint(folder / "3_net_ugatit.pth")[SARGEN_STATE_KEY]["iteration"] == 3


@pytest.mark.numerics
def test_fast_step_matches_the_original_step(eo2sar_root, tmp_path, monkeypatch):
    """Detaching translations for the discriminators changes neither the losses nor the gradients of either update
    (so nor a plain-SGD step's weights: Adam's would amplify the fused AdaLIN/LIN formula's rounding, see
    tests/sgd_train.py), over two steps."""
    monkeypatch.setattr(torch.optim, "Adam", GradientRecordingSGD)
    args = ugatit_args(eo2sar_root, tmp_path, "same", "--iteration", 10)
    opt = parse_train_options(args)
    dataset = create_dataset(opt)
    models = fast, original = identical_models(opt)
    for batch in list(fast.training_batches(dataset))[:2]:
        for model in models:
            model.set_input(batch)
        fast.optimize_parameters()
        original_training_step(original)
        for name, value in fast.get_current_losses().items():
            assert value == pytest.approx(original.get_current_losses()[name], rel=1e-4, abs=1e-6), name
    scale = assert_same_gradients([[fast.optimizer_G.steps, fast.optimizer_D.steps]],
                                  [original.optimizer_G.steps, original.optimizer_D.steps], ("G", "D"), 1e-3)
    for name in NETWORK_NAMES:
        assert_sgd_weights_agree(fast.networks[name].state_dict(), original.networks[name].state_dict(),
                                 opt.lr * 1e-3 * scale * 2, name)  # two steps


def test_learning_rate_decays_linearly_over_the_second_half():
    """--decay_flag: constant for the first half, then linear to zero; off keeps it constant."""
    class Options:
        lr, iteration, decay_flag = 1e-4, 100, True

    rates = [linear_decay_learning_rate(step, Options) for step in (1, 50, 75, 100)]
    assert rates == pytest.approx([1e-4, 1e-4, 5e-5, 0.0])
    Options.decay_flag = False
    assert linear_decay_learning_rate(100, Options) == 1e-4


def test_training_sampler_is_reproducible_from_any_step():
    """The samples of steps 3..6 are the same whether the sampler starts at step 0 or at step 2."""
    whole = list(TrainingSampler([5, 3], 2, 0, 6, seed=1))
    resumed = list(TrainingSampler([5, 3], 2, 2, 6, seed=1))
    assert whole[4:] == resumed
    assert sorted(a for a, _, _ in whole[:5]) == [0, 1, 2, 3, 4]  # each pass visits every A image once
    assert len({seed for _, _, seed in whole}) == len(whole)


def test_test_script_writes_seven_panels_at_the_checkpoints_size(trained, tmp_path, monkeypatch):
    """test.py takes img_size and channels from the checkpoint and writes U-GAT-IT's seven panels."""
    work, args = trained
    dataroot = args[args.index("--dataroot") + 1]
    run_entry_point(test_script, ["--model", "ugatit", "--dataroot", dataroot, "--name", "full", "--gpu_ids", "-1",
                                  "--checkpoints_dir", work / "checkpoints", "--results_dir", tmp_path,
                                  "--num_threads", "0"], monkeypatch)
    page = tmp_path / "full" / "test_latest" / "index.html"
    html = page.read_text()
    names = sorted(path.stem for path in (Path(dataroot) / "testA").iterdir())
    for name in names:
        for panel in PANELS:
            image_path = page.parent / "images" / f"{name}_{panel}.png"
            assert f"images/{name}_{panel}.png" in html
            with Image.open(image_path) as image:
                assert image.size == (32, 32)
                optical = panel.startswith("heatmap") or panel in ("real_A", "fake_A2A", "fake_A2B2A")
                assert image.mode == ("RGB" if optical else "L"), panel
    # a row of panels shown --display_winsize (256) px wide shrinks to fit a 1,400 px window (8 px body margins,
    # 1 px borders) before it wraps: it never runs off the page
    row = re.search(r'<div style="display:flex; flex-wrap:wrap; gap:(\d+)px; align-items:flex-start;">(.*?)</div>',
                    html, re.DOTALL)
    sizes = re.findall(r'<figure style="margin:0; flex:0 1 (\d+)px; min-width:(\d+)px;', row.group(2))
    assert len(sizes) in (len(PANELS), len(PANELS) + 1) and {int(width) for width, _ in sizes} == {256}  # + real_B
    gap, smallest = int(row.group(1)), max(int(minimum) for _, minimum in sizes)
    assert len(sizes) * (smallest + 2) + (len(sizes) - 1) * gap <= 1400 - 2 * 8
    assert 'style="width:100%; display:block;"' in row.group(2)


def test_test_script_direction_b_to_a(trained, tmp_path, monkeypatch):
    """--direction BtoA translates the SAR test images with genB2A."""
    work, args = trained
    dataroot = args[args.index("--dataroot") + 1]
    run_entry_point(test_script, ["--model", "ugatit", "--dataroot", dataroot, "--name", "full", "--gpu_ids", "-1",
                                  "--checkpoints_dir", work / "checkpoints", "--results_dir", tmp_path,
                                  "--num_threads", "0", "--direction", "BtoA"], monkeypatch)
    images = tmp_path / "full" / "test_latest" / "images"
    name = sorted((Path(dataroot) / "testB").iterdir())[0].stem
    with Image.open(images / f"{name}_fake_B2A.png") as fake, Image.open(images / f"{name}_real_B.png") as real:
        assert (fake.mode, real.mode) == ("RGB", "L")


def test_missing_checkpoint_is_one_line_naming_the_file(eo2sar_root, tmp_path):
    """test.py without a trained model prints one error line naming the expected checkpoint file."""
    code, _, stderr = run_script("test.py", ["--model", "ugatit", "--dataroot", eo2sar_root, "--name", "nothing",
                                             "--gpu_ids", "-1", "--checkpoints_dir", tmp_path,
                                             "--results_dir", tmp_path])
    assert code == 2
    assert stderr.strip().splitlines()[-1].startswith("error: U-GAT-IT checkpoint not found")
    assert "nothing/latest_net_ugatit.pth" in stderr
    assert "Traceback" not in stderr


def test_a_missing_epoch_lists_the_saved_steps(trained, monkeypatch):
    """test.py and --continue_train with --epoch naming no checkpoint say which steps were saved."""
    work, args = trained
    expected = r"U-GAT-IT checkpoint not found: .*full/5000_net_ugatit.pth; saved in .*full: 2, 4, latest \(pass one"
    dataroot = args[args.index("--dataroot") + 1]
    with pytest.raises(SargenError, match=expected):
        run_entry_point(test_script, ["--model", "ugatit", "--dataroot", dataroot, "--name", "full", "--gpu_ids", "-1",
                                      "--checkpoints_dir", work / "checkpoints", "--results_dir", work / "results",
                                      "--num_threads", "0", "--epoch", 5000], monkeypatch)
    with pytest.raises(SargenError, match=expected):
        run_entry_point(train_script, [*args, "--continue_train", "--epoch", 5000], monkeypatch)


def test_too_small_img_size_is_refused_with_the_option(eo2sar_root, tmp_path):
    """The 7-layer global discriminator needs 96 px: a smaller --img_size is a one-line error."""
    with pytest.raises(SargenError, match="--img_size 64 is too small.*>= 96"):
        create_model(parse_train_options(ugatit_args(eo2sar_root, tmp_path, "small", "--n_dis", 7,
                                                     "--img_size", 64)))


def test_unaligned_training_items_are_cropped_flipped_and_unpaired(eo2sar_root, tmp_path):
    """Training items: A with input_nc, B with output_nc channels, img_size crops of img_size+30 resizes."""
    opt = parse_train_options(ugatit_args(eo2sar_root, tmp_path, "data"))
    dataset = create_dataset(opt)
    assert len(dataset) == 5
    item = dataset[(1, 2, 99)]
    assert item["A"].shape == (3, 32, 32) and item["B"].shape == (1, 32, 32)
    assert item["A_paths"].endswith(sorted((eo2sar_root / "trainA").iterdir())[1].name)
    assert torch.equal(dataset[(1, 2, 99)]["A"], item["A"])  # the seed fixes crop and flip
    crops = {dataset[(1, 2, seed)]["A"].sum().item() for seed in range(8)}
    assert len(crops) > 1
    assert item["A"].min() >= -1 and item["A"].max() <= 1


def test_unaligned_test_items_are_resized_source_images(eo2sar_root, tmp_path):
    """Test items hold the source domain, resized to img_size without cropping, and the target image of the same
    name (its co-registered partner) resized alike."""
    opt = TestOptions().parse(["--model", "ugatit", "--dataroot", str(eo2sar_root), "--gpu_ids", "-1",
                               "--img_size", "32", "--direction", "BtoA", "--output_nc", "1"], save=False)
    dataset = create_dataset(opt)
    assert len(dataset) == 2
    item = dataset[0]
    assert set(item) == {"B", "B_paths", "B_valid", "A", "A_paths", "A_valid", "category"}
    assert item["B"].shape == (1, 32, 32) and item["A_valid"] is None and item["B_valid"] is None  # no no-data
    assert item["A"].shape == (3, 32, 32) and Path(item["A_paths"]).name == Path(item["B_paths"]).name
    assert Path(item["A_paths"]).parent.name == "testA"


def test_missing_domain_folder_is_named(tmp_path):
    """A dataroot without trainB says which folder is missing."""
    (tmp_path / "trainA").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "trainA" / "a.png")
    opt = parse_train_options(ugatit_args(tmp_path, tmp_path, "x"))
    with pytest.raises(SargenError, match="trainB"):
        create_dataset(opt)


def test_resume_with_other_network_options_names_key_and_shapes(trained, tmp_path, monkeypatch):
    """--continue_train with a different --ch stops with the first key whose shapes disagree."""
    work, args = trained
    folder = tmp_path / "checkpoints" / "wider"
    folder.mkdir(parents=True)
    shutil.copy(work / "checkpoints" / "full" / "latest_net_ugatit.pth", folder / "latest_net_ugatit.pth")
    wider = ugatit_args(args[args.index("--dataroot") + 1], tmp_path, "wider", "--iteration", 5, "--continue_train")
    wider[wider.index("--ch") + 1] = "16"
    with pytest.raises(SargenError, match=r"latest_net_ugatit.pth 'genA2B'.*'gap_fc.weight' has shape "
                                          r"\[1, 32\] in the checkpoint but \[1, 64\] in the model"):
        run_entry_point(train_script, wider, monkeypatch)


def test_test_script_reads_a_plain_reference_checkpoint(trained, tmp_path, monkeypatch):
    """--checkpoint takes a file of the reference code (state dicts only) without any network flags."""
    work, args = trained
    payload = read_checkpoint(work / "checkpoints" / "full" / "latest_net_ugatit.pth")
    torch.save({name: payload[name] for name in NETWORK_NAMES}, tmp_path / "params_latest.pt")
    dataroot = args[args.index("--dataroot") + 1]
    run_entry_point(test_script, ["--model", "ugatit", "--dataroot", dataroot, "--name", "plain", "--gpu_ids", "-1",
                                  "--checkpoints_dir", tmp_path, "--results_dir", tmp_path, "--num_threads", "0",
                                  "--checkpoint", tmp_path / "params_latest.pt", "--img_size", "24"], monkeypatch)
    page = (tmp_path / "plain" / "test_latest" / "index.html").read_text()
    assert "params_latest.pt, step unknown (reference-format file)" in page
    name = sorted((Path(dataroot) / "testA").iterdir())[0].stem
    with Image.open(tmp_path / "plain" / "test_latest" / "images" / f"{name}_fake_A2B.png") as image:
        assert (image.size, image.mode) == ((24, 24), "L")

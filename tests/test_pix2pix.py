"""--model pix2pix: the original's architectures and step, paired training items with valid masks, the masked L1,
a learning check on a known mapping, resume, the NaN stop, --eval_freq, torchrun, the test page with its dB error
map, evaluate.py's paired scores, app.py's GeoTIFFs, and tiles normalized as the whole image."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import run_torchrun
from geotiff_helpers import read_bands
from PIL import Image
from raster_helpers import read_raster_file, write_raster
from sgd_train import assert_same_gradients, assert_sgd_weights_agree, train_with_sgd
from ugatit_helpers import (
    identical_models,
    loss_values,
    one_torch_thread,  # noqa: F401  (autouse fixture)
    read_loss_log,
    run_entry_point,
)

import evaluate as evaluate_script
import test as test_script
import train as train_script
from benchmarks.pix2pix_reference import original_training_step, with_torch_transposed_convolutions
from data import create_dataset
from data.image_io import read_image_with_info
from data.radiometry import Radiometry
from datasets.make_dataset import main as make_dataset
from models import create_model
from models.file_translation import app_main
from models.pix2pix_checkpoint import (
    CHECKPOINT_SUFFIX,
    STATE_KEY,
    fold_batch_norm,
    generator_translator,
    read_pix2pix_checkpoint,
)
from models.pix2pix_model import masked_l1
from models.pix2pix_networks import TransposedConvolution, build_discriminator, build_generator, init_weights
from models.tiling import pooling_passes, translate_whole
from models.translators import load_translator
from options.train_options import TrainOptions
from util.errors import SargenError

SIZE = 32
TINY = ["--netG", "resnet_6blocks", "--ngf", "8", "--ndf", "8", "--load_size", SIZE, "--crop_size", SIZE]
S1_WINDOW = Radiometry("db", db_window=(-25.0, 0.0), input_unit="db", bands=(1, 2))  # the sen12ms layout's rule


def pix2pix_args(root, work, name, *extra, train=True):
    """Options of a tiny pix2pix run on a sen12ms tree on the CPU (layout defaults, no visdom)."""
    args = ["--model", "pix2pix", "--dataset_mode", "sen12ms", "--dataroot", root, "--name", name, "--gpu_ids", "-1",
            "--num_threads", "0", "--checkpoints_dir", work / "checkpoints"]
    if train:
        args += [*TINY, "--display_id", "0", "--print_freq", "1"]
    else:
        args += ["--results_dir", work / "results"]
    return [*map(str, args), *map(str, extra)]


def checkpoint_path(work, name, label="latest"):
    """CHECKPOINTS_DIR/NAME/LABEL_net_pix2pix.pth of a run in `work`."""
    return work / "checkpoints" / name / f"{label}{CHECKPOINT_SUFFIX}"


@pytest.fixture(scope="module")
def mapping_root(tmp_path_factory):
    """A SEN12MS tree whose Sentinel-1 is a known function of Sentinel-2 plus speckle: 4 scenes of 32 px patches."""
    root = tmp_path_factory.mktemp("known_mapping")
    make_dataset(["sen12ms", "--out", str(root), "--size", str(SIZE), "--n_scenes", "4", "--known_mapping"])
    return root


@pytest.fixture(scope="module")
def trained(mapping_root, tmp_path_factory):
    """4 steps with the layout's defaults (an image pool of 2), saved at steps 2 and 4, then test.py: the work
    folder."""
    work = tmp_path_factory.mktemp("pix2pix")
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_entry_point(train_script, pix2pix_args(mapping_root, work, "p2p", "--iteration", 4, "--save_freq", 2,
                                                   "--update_html_freq", 2, "--pool_size", 2), monkeypatch)
        run_entry_point(test_script, pix2pix_args(mapping_root, work, "p2p", train=False), monkeypatch)
    return work


def s1_db(path):
    """A Sentinel-1 file's VV/VH in dB through the layout's -25..0 dB window (CxHxW numpy)."""
    return -25.0 + 25.0 * read_image_with_info(path, None, S1_WINDOW)[0].numpy()


def test_networks_are_the_originals():
    """Parameter counts of pix2pix's networks (U-Net 256 with batch norm, ResNet 9 blocks with instance norm as
    CycleGAN prints them, the basic PatchGAN on 6 channels); U-Net sides are multiples of 2**levels."""
    assert sum(p.numel() for p in build_generator("unet_256", 3, 3).parameters()) == 54_413_955
    resnet = build_generator("resnet_9blocks", 3, 3, norm="instance")
    assert sum(p.numel() for p in resnet.parameters()) == 11_378_179
    assert sum(p.numel() for p in build_discriminator("basic", 6).parameters()) == 2_768_705
    unet = build_generator("unet_128", 2, 1, ngf=4)
    assert unet.size_multiple == 128 and resnet.size_multiple == 4
    assert unet(torch.zeros(1, 2, 128, 256)).shape == (1, 1, 128, 256)


@pytest.mark.numerics
@pytest.mark.parametrize("kernel, output_padding, side", [(4, 0, 1), (4, 0, 8), (3, 1, 4), (4, 0, 16)])
def test_transposed_convolution_computes_torchs(kernel, output_padding, side):
    """The generators' transposed convolution (a matrix product and col2im on maps up to 8x8, torch's beyond) gives
    torch's outputs and gradients, with the U-Net's and the ResNet's settings."""
    layers = []
    for _ in range(2):
        torch.manual_seed(0)
        layers.append(TransposedConvolution(16, 8, kernel, 2, 1, output_padding=output_padding))
    with_torch_transposed_convolutions(layers[1])
    inputs = [torch.randn(2, 16, side, side, generator=torch.Generator().manual_seed(1), requires_grad=True)
              for _ in layers]
    outputs = [layer(features) for layer, features in zip(layers, inputs)]
    assert outputs[0].shape == outputs[1].shape == (2, 8, 2 * side, 2 * side)
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)
    for output in outputs:
        (output * torch.linspace(-1, 1, output.numel()).view_as(output)).sum().backward()
    assert torch.allclose(inputs[0].grad, inputs[1].grad, atol=1e-5)
    assert torch.allclose(layers[0].weight.grad, layers[1].weight.grad, atol=1e-4)
    assert torch.allclose(layers[0].bias.grad, layers[1].bias.grad, atol=1e-4)


@pytest.mark.numerics
def test_sargen_step_computes_the_original_step(mapping_root, tmp_path):
    """One step of sargen (batched discriminator passes with per-pass batch norm, small transposed convolutions as
    matrix products; fused Adam replaced by SGD here) and of the original's step (torch's transposed convolutions),
    from the same weights, batch and dropout draws: the same losses, the same updates (SGD: the weights move by
    lr x gradient) and the same batch-norm running statistics."""
    args = pix2pix_args(mapping_root, tmp_path, "step", "--netG", "unet_128", "--ngf", "4", "--ndf", "4",
                        "--load_size", 128, "--crop_size", 128, "--batch_size", 2, "--iteration", 10)
    sargen, original = identical_models(TrainOptions().parse(args, save=False))
    with_torch_transposed_convolutions(original.generator)
    torch.manual_seed(3)
    batch = {"A": torch.rand(2, 3, 128, 128) * 2 - 1, "B": torch.rand(2, 2, 128, 128) * 2 - 1}
    before = {name: {key: value.clone() for key, value in network.state_dict().items()}
              for name, network in sargen.networks.items()}
    for model in (sargen, original):
        model.optimizer_G = torch.optim.SGD(model.generator.parameters(), lr=0.1)
        model.optimizer_D = torch.optim.SGD(model.discriminator.parameters(), lr=0.1)
        model.set_input(batch)
    torch.manual_seed(5)
    sargen.optimize_parameters()
    torch.manual_seed(5)
    losses = original_training_step(original)
    for name, value in losses.items():
        assert float(sargen.losses[name]) == pytest.approx(float(value), rel=1e-5), name
    for name, network in sargen.networks.items():
        other = original.networks[name].state_dict()
        for key, value in network.state_dict().items():
            if not value.is_floating_point():
                assert torch.equal(value, other[key]), f"{name}.{key}"
                continue
            moved, expected = before[name][key] - value, before[name][key] - other[key]
            scale = float(expected.abs().max())
            assert float((moved - expected).abs().max()) <= 1e-4 * scale + 1e-7, f"{name}.{key}"


def test_masked_l1_counts_valid_pixels_only():
    """The L1 term over valid pixels is the plain L1 of those pixels, and masked pixels get no gradient from it."""
    fake = torch.randn(2, 2, 8, 8, requires_grad=True)
    real = torch.randn(2, 2, 8, 8)
    valid = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    valid[0, :, :, :3] = False
    loss = masked_l1(fake, real, valid)
    kept = valid.expand_as(fake)
    assert float(loss.detach()) == pytest.approx(float((fake.detach() - real).abs()[kept].mean()), rel=1e-6)
    loss.backward()
    assert float(fake.grad[~kept].abs().max()) == 0.0 and float(fake.grad[kept].abs().min()) > 0.0
    assert float(masked_l1(fake, real, None).detach()) == pytest.approx(float((fake.detach() - real).abs().mean()),
                                                                        rel=1e-6)


def ramp_tree(root, nodata_corner=False):
    """A SEN12MS tree of 2 scenes x 2 patches whose Sentinel-2 RGB and Sentinel-1 VV both rise along x, and
    split.json with both scenes for training; with `nodata_corner`, one S1 patch has a NaN (no-data) corner."""
    ramp = np.linspace(0.0, 1.0, 40)[None, :].repeat(40, 0)
    for scene in (1, 2):
        region = ("ROIs1158_spring", "ROIs1868_summer")[scene - 1]
        for patch in (1, 2):
            optical = np.stack([np.full_like(ramp, 100)] + [500 + 2000 * ramp] * 3 + [np.full_like(ramp, 100)] * 9)
            radar = np.stack([-20 + 15 * ramp, -27 + 15 * ramp])
            if nodata_corner and scene == 1 and patch == 1:
                radar[:, :10, :10] = np.nan
            for sensor, bands in (("s2", optical.astype(np.int16)), ("s1", radar.astype(np.float32))):
                name = f"{region}_{sensor}_{scene}_p{patch}.tif"
                write_raster(root / region / f"{sensor}_{scene}" / name, bands, origin=(500000.0 + 400 * patch,
                                                                                        4600000.0))
    (root / "split.json").write_text(json.dumps({"train": ["ROIs1158_spring_1", "ROIs1868_summer_2"], "test": []}))
    return root


def test_training_items_are_co_registered_pairs_cropped_and_flipped_alike(tmp_path):
    """sen12ms training items for pix2pix: a patch and its own twin, one crop and flip for both (their ramps run the
    same way), and each image's valid mask after that geometry; unpaired folders are refused with one line."""
    root = ramp_tree(tmp_path / "ramps", nodata_corner=True)
    args = pix2pix_args(root, tmp_path, "items", "--netG", "resnet_6blocks", "--load_size", 40, "--crop_size", 32,
                        "--max_nodata", 1, "--split_file", root / "split.json")
    opt = TrainOptions().parse(args, save=False)
    dataset = create_dataset(opt)
    flips = set()
    for index in range(len(dataset)):
        for seed in range(10):
            item = dataset[(index, seed)]
            assert item["A_paths"].replace("_s2_", "_s1_").replace("/s2_", "/s1_") == item["B_paths"]
            optical_rise = float(item["A"][0, :, -1].mean() - item["A"][0, :, 0].mean())
            radar_rise = float(item["B"][0, :, -1].mean() - item["B"][0, :, 0].mean())
            assert optical_rise * radar_rise > 0
            flips.add(radar_rise > 0)
            assert item["A_valid"] is None
            if "_1_p1" in item["B_paths"]:
                assert item["B_valid"].shape == (1, 32, 32) and not bool(item["B_valid"].all())
            else:
                assert item["B_valid"] is None
    assert flips == {True, False}, "random flips of both images"
    eo2sar = tmp_path / "eo2sar"
    make_dataset(["eo2sar", "--out", str(eo2sar), "--size", "32", "--n_train", "2", "--n_test", "1"])
    unpaired = TrainOptions().parse(pix2pix_args(eo2sar, tmp_path, "unpaired", "--dataset_mode", "unaligned"),
                                    save=False)
    with pytest.raises(SargenError, match=r"^--model pix2pix trains on co-registered pairs, but none of the 2 domain A "
                                          r"training images has a partner under .*pairing.json records the folders "
                                          r"as unpaired\)$"):
        create_dataset(unpaired)


def test_crop_size_the_unet_cannot_take_is_refused(mapping_root, tmp_path):
    """--netG unet_256 on 32 px crops stops before training, saying which sizes it takes."""
    opt = TrainOptions().parse(pix2pix_args(mapping_root, tmp_path, "odd", "--netG", "unet_256"), save=False)
    with pytest.raises(SargenError, match=r"^--crop_size 32 is not a multiple of 256, which --netG unet_256 needs: "
                                          r"use --crop_size 256 or a resnet generator"):
        create_model(opt)


def test_learning_check_beats_the_mean_training_image_on_held_back_pairs(mapping_root, tmp_path, monkeypatch):
    """200 steps on a task whose mapping is known (S1 = abundance-weighted class backscatter of what S2 shows, x
    4-look speckle): on the held-back scene, pix2pix's dB error is clearly below the mean training SAR image's."""
    run_entry_point(train_script, pix2pix_args(mapping_root, tmp_path, "learn", "--iteration", 200, "--ngf", 16,
                                               "--ndf", 16, "--print_freq", 100, "--save_freq", 200, "--no_html"),
                    monkeypatch)
    run_entry_point(test_script, pix2pix_args(mapping_root, tmp_path, "learn", train=False), monkeypatch)
    rows = [json.loads(path.read_text()) for path in
            (tmp_path / "results" / "learn" / "test_latest" / "images").glob("*.row.json")]
    split = json.loads((tmp_path / "checkpoints" / "learn" / "split.json").read_text())
    training = [path for path in mapping_root.rglob("*_s1_*.tif")
                if any(path.name.startswith(scene.rsplit("_", 1)[0] + "_s1_" + scene.rsplit("_", 1)[1] + "_p")
                       for scene in split["train"])]
    assert len(rows) == 9 and len(training) == 27
    mean_image = np.mean([s1_db(path) for path in training], axis=0)
    constant = np.mean([np.abs(mean_image - s1_db(row["sources"]["real_B"])).mean() for row in rows])
    translated = np.mean([row["scalars"]["mean_abs_error_db"] for row in rows])
    assert translated < 0.8 * constant, f"pix2pix {translated:.2f} dB, the mean training image {constant:.2f} dB"


def test_checkpoint_records_radiometry_options_and_pool(trained):
    """The checkpoint holds G, D and the resume state: step, options, the radiometry of both domains as the
    layout's defaults read them, and the image pool."""
    payload = read_pix2pix_checkpoint(checkpoint_path(trained, "p2p"))
    state = payload[STATE_KEY]
    assert state["iteration"] == 4 and set(payload) >= {"G", "D", STATE_KEY}
    assert state["radiometry"]["A"]["bands"] == [4, 3, 2] and state["radiometry"]["A"]["channels"] == 3
    assert state["radiometry"]["B"]["intensity_scaling"] == "db" and state["radiometry"]["B"]["channels"] == 2
    assert state["options"]["netG"] == "resnet_6blocks" and state["options"]["lambda_L1"] == 100.0
    assert len(state["image_pool"]) == 2 and state["image_pool"][0].shape == (1, 5, SIZE, SIZE)
    page = (trained / "checkpoints" / "p2p" / "web" / "index.html").read_text()
    assert "real_A" in page and "fake_B" in page and "real_B" in page


def test_resume_continues_like_an_uninterrupted_run(mapping_root, trained, tmp_path, monkeypatch):
    """Resuming from step 2 (image pool, dropout and data order restored) gives steps 3 and 4 of the full run."""
    folder = tmp_path / "checkpoints" / "resumed"
    folder.mkdir(parents=True)
    shutil.copy(checkpoint_path(trained, "p2p", "2"), folder / f"latest{CHECKPOINT_SUFFIX}")
    shutil.copy(trained / "checkpoints" / "p2p" / "split.json", folder / "split.json")
    run_entry_point(train_script, pix2pix_args(mapping_root, tmp_path, "resumed", "--iteration", 4, "--save_freq", 2,
                                               "--pool_size", 2, "--continue_train", "--no_html"), monkeypatch)
    full_log = read_loss_log(trained / "checkpoints" / "p2p" / "loss_log.txt")
    resumed_log = read_loss_log(folder / "loss_log.txt")
    assert sorted(resumed_log) == [3, 4]
    for step in (3, 4):
        assert loss_values(resumed_log[step][1]) == pytest.approx(loss_values(full_log[step][1]), rel=1e-6)
    full = read_pix2pix_checkpoint(checkpoint_path(trained, "p2p", "4"))
    again = read_pix2pix_checkpoint(folder / f"4{CHECKPOINT_SUFFIX}")
    for name in ("G", "D"):
        for key, tensor in full[name].items():
            assert torch.allclose(tensor.float(), again[name][key].float(), atol=1e-6), f"{name}.{key}"


def test_non_finite_loss_stops_before_any_checkpoint(mapping_root, tmp_path, monkeypatch):
    """An L1 weight that overflows float32 stops the run at its first step, naming the term; no checkpoint written."""
    with pytest.raises(SargenError, match=r"^non-finite loss at iteration 1: G_L1 = inf; no checkpoint had been "
                                          r"saved yet \(lower --lr or check the data\)$"):
        run_entry_point(train_script, pix2pix_args(mapping_root, tmp_path, "overflow", "--iteration", 3,
                                                   "--lambda_L1", "1e39"), monkeypatch)
    assert not list((tmp_path / "checkpoints" / "overflow").glob("*.pth"))


def test_test_page_error_map_and_paired_scores(mapping_root, trained):
    """test.py needs no training flag: real_A, fake_B, real_B and the error map per patch; the mean dB errors on the
    page are those of the GeoTIFF result against the real Sentinel-1 file; evaluate.py scores them paired."""
    results = trained / "results" / "p2p" / "test_latest"
    rows = [json.loads(path.read_text()) for path in sorted((results / "images").glob("*.row.json"))]
    assert len(rows) == 9
    row = rows[0]
    assert [label for _, label in row["files"]] == ["real_A", "fake_B", "real_B", "error_map"]
    translated = read_bands(results / row["rasters"][0][0]).transpose(2, 0, 1)
    real = s1_db(row["sources"]["real_B"])
    assert translated.shape == real.shape == (2, SIZE, SIZE)
    assert row["scalars"]["mean_abs_error_db"] == pytest.approx(float(np.abs(translated - real).mean()), abs=1e-3)
    assert row["scalars"]["mean_abs_error_db_band2"] == pytest.approx(float(np.abs(translated - real)[1].mean()),
                                                                      abs=1e-3)
    assert "error_map: |fake - real| per pixel in dB" in (results / "index.html").read_text()
    evaluate_script.main(["--results", str(results), "--gpu_ids", "-1", "--no_gram", "--no_fid", "--no_lpips"])
    scored = json.loads((results / "metrics.json").read_text())["images"]
    assert len(scored) == 9 and all("psnr" in image and "_s1_" in image["real"] for image in scored)
    assert scored[0]["fake"].endswith("_fake_B.tif")


def test_app_writes_db_geotiffs_on_the_inputs_grid(mapping_root, trained, tmp_path):
    """app.py tells the pix2pix checkpoint apart by its content and writes VV/VH dB GeoTIFFs on each Sentinel-2
    patch's grid, equal to the translator's output; a wrong direction and a file holding no generator are one line."""
    checkpoint = checkpoint_path(trained, "p2p")
    sources = sorted(mapping_root.rglob("*_s2_1_p1.tif"))
    written = app_main(["--model_path", str(checkpoint), "--img", str(sources[0]), "--out", str(tmp_path),
                        "--device", "cpu"])
    output, crs, transform = read_raster_file(written[0])
    _, source_crs, source_transform = read_raster_file(sources[0])
    assert output.shape == (2, SIZE, SIZE) and output.dtype == np.float32
    assert (crs, transform) == (source_crs, source_transform)
    translator = load_translator(checkpoint)
    record = read_pix2pix_checkpoint(checkpoint)[STATE_KEY]["radiometry"]["A"]
    image = read_image_with_info(sources[0], None, Radiometry.from_record(record, "A"))[0] * 2 - 1
    expected = -25.0 + 25.0 * (translate_whole(translator, image)[0].clamp(-1, 1) + 1) / 2
    assert np.abs(output - expected.numpy()).max() < 1e-3
    with pytest.raises(SargenError, match=r"p2p.*trained for --direction AtoB.*pass --direction AtoB"):
        load_translator(checkpoint, direction="BtoA")
    bad = tmp_path / "bad.pth"
    torch.save({"weights": torch.zeros(1)}, bad)
    with pytest.raises(SargenError, match=r"bad.pth holds no generator sargen can run .*--model pix2pix checkpoint"):
        load_translator(bad)


def test_thirteen_bands_to_vv_vh(mapping_root, tmp_path, monkeypatch):
    """All 13 Sentinel-2 bands in, VV+VH out: trained and tested with the bands recorded in the checkpoint."""
    bands = ",".join(str(band) for band in range(1, 14))
    run_entry_point(train_script, pix2pix_args(mapping_root, tmp_path, "all", "--iteration", 1, "--bands_A", bands,
                                               "--input_nc", 13, "--no_html"), monkeypatch)
    run_entry_point(test_script, pix2pix_args(mapping_root, tmp_path, "all", "--num_test", 1, train=False),
                    monkeypatch)
    payload = read_pix2pix_checkpoint(checkpoint_path(tmp_path, "all"))
    assert payload["G"]["model.1.weight"].shape[1] == 13
    assert payload[STATE_KEY]["radiometry"]["A"]["bands"] == list(range(1, 14))
    assert len(list((tmp_path / "results" / "all" / "test_latest" / "images").glob("*_error_map.png"))) == 1


def test_sar_to_optical_direction(mapping_root, tmp_path, monkeypatch):
    """--direction BtoA: a 2 -> 3 channel generator from Sentinel-1 to Sentinel-2; the page shows real_B, fake_A,
    real_A and the error map in 8-bit levels (Sentinel-2 has no dB window); app.py reads its input as domain B."""
    run_entry_point(train_script, pix2pix_args(mapping_root, tmp_path, "s1s2", "--iteration", 1, "--direction",
                                               "BtoA", "--no_html"), monkeypatch)
    run_entry_point(test_script, pix2pix_args(mapping_root, tmp_path, "s1s2", "--num_test", 1, "--direction", "BtoA",
                                              train=False), monkeypatch)
    row = json.loads(next((tmp_path / "results" / "s1s2" / "test_latest" / "images").glob("*.row.json")).read_text())
    assert [label for _, label in row["files"]] == ["real_B", "fake_A", "real_A", "error_map"]
    assert "mean_abs_error_levels" in row["scalars"] and "_s1_" in row["sources"]["real_B"]
    translator = load_translator(checkpoint_path(tmp_path, "s1s2"), direction="BtoA")
    assert (translator.input_nc, translator.generator.output_nc) == (2, 3)


def test_eval_freq_keeps_the_best_checkpoint(mapping_root, tmp_path, monkeypatch):
    """--eval_freq scores the generator on the co-registered test patches (PSNR among them) and saves best_net."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_cache"))  # no pytorch-fid weights: Gram and histograms
    run_entry_point(train_script, pix2pix_args(mapping_root, tmp_path, "scored", "--iteration", 2, "--eval_freq", 1,
                                               "--eval_size", 2, "--best_metric", "psnr", "--no_html"), monkeypatch)
    best = read_pix2pix_checkpoint(checkpoint_path(tmp_path, "scored", "best"))[STATE_KEY]
    assert best["evaluation"]["metric"] == "psnr" and best["iteration"] in (1, 2)
    assert "psnr" in (tmp_path / "checkpoints" / "scored" / "metrics_log.txt").read_text()


@pytest.mark.numerics
def test_two_ranks_train_like_one_process_on_the_global_batch(mapping_root, tmp_path):
    """torchrun, 2 CPU ranks x batch 1 with instance norm and no dropout: the gradients of both updates are those of
    1 process x batch 2 (recorded in place of Adam by tests/sgd_train.py), so a plain-SGD step gives its weights;
    the first step's losses (before any update) are its losses; rank 0 alone writes a checkpoint with plain keys."""
    common = ("--iteration", 1, "--save_freq", 1, "--no_html", "--norm", "instance", "--no_dropout")
    code, _, stderr = run_torchrun("tests/sgd_train.py", [tmp_path / "ddp_gradients.pt", *pix2pix_args(
        mapping_root, tmp_path, "ddp", *common, "--batch_size", 1)])
    assert code == 0, stderr
    train_with_sgd(pix2pix_args(mapping_root, tmp_path, "single", *common, "--batch_size", 2),
                   tmp_path / "single_gradients.pt")
    ranks = [torch.load(f"{tmp_path / 'ddp_gradients.pt'}.rank{rank}", weights_only=True) for rank in range(2)]
    scale = assert_same_gradients(ranks, torch.load(tmp_path / "single_gradients.pt", weights_only=True), ("G", "D"))
    ddp = loss_values(read_loss_log(tmp_path / "checkpoints" / "ddp" / "loss_log.txt")[1][1])
    single = loss_values(read_loss_log(tmp_path / "checkpoints" / "single" / "loss_log.txt")[1][1])
    for name in ("D_real", "D_fake", "G_L1"):  # G_GAN comes after the discriminator's update
        assert ddp[name] == pytest.approx(single[name], rel=1e-4), name
    ddp_state = read_pix2pix_checkpoint(checkpoint_path(tmp_path, "ddp"))
    single_state = read_pix2pix_checkpoint(checkpoint_path(tmp_path, "single"))
    assert not any(key.startswith("module.") for key in ddp_state["G"])
    learning_rate = TrainOptions().build_parser(["--model", "pix2pix"]).get_default("lr")
    assert_sgd_weights_agree(ddp_state["G"], single_state["G"], learning_rate * 1e-3 * scale, "G")


def perturbed_generator(norm):
    """A resnet_6blocks generator (ngf 4) with seeded weights and, for batch norm, perturbed running statistics."""
    torch.manual_seed(0)
    generator = init_weights(build_generator("resnet_6blocks", 3, 2, ngf=4, norm=norm), gain=0.3)
    for module in generator.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return generator


@pytest.mark.numerics
def test_eval_batch_norm_normalizes_a_tile_as_the_whole_image():
    """With batch norm at eval (running statistics, folded into the convolutions) a window translated alone equals
    the whole image's translation wherever the receptive field stays inside the window; instance norm does not
    (its statistics are the window's: the tiler pools them)."""
    image = torch.rand(3, 256, 256, generator=torch.Generator().manual_seed(1)) * 2 - 1
    window, inner = (slice(32, 224), slice(32, 224)), (slice(64 + 32, 128 + 32), slice(64 + 32, 128 + 32))
    for norm, equal in (("batch", True), ("instance", False)):
        generator = perturbed_generator(norm)
        translator = generator_translator(generator, "cpu")
        whole = translate_whole(translator, image)[0]
        alone = translate_whole(translator, image[:, window[0], window[1]])[0]
        difference = float((alone[:, 64:128, 64:128] - whole[:, inner[0], inner[1]]).abs().max())
        assert (difference < 1e-5) == equal, f"{norm}: {difference}"
    generator = perturbed_generator("batch").eval()
    with torch.no_grad():
        assert torch.allclose(fold_batch_norm(generator)(image[None]), generator(image[None]), atol=1e-5)
    # nothing to pool with batch norm: the tiler makes one pass whatever --tile_passes says; instance norm pools
    assert pooling_passes(generator, 2) == 1 and pooling_passes(perturbed_generator("instance"), 2) == 2


def test_no_data_is_left_out_of_the_l1(tmp_path):
    """A training pair whose Sentinel-1 patch has a no-data corner (--max_nodata 1): its valid mask reaches the
    model, and the logged L1 is the mean over the valid pixels only (the filled corner would change it)."""
    root = ramp_tree(tmp_path / "ramps", nodata_corner=True)
    args = pix2pix_args(root, tmp_path, "masked", "--max_nodata", 1, "--split_file", root / "split.json",
                        "--iteration", 1, "--serial_batches")
    opt = TrainOptions().parse(args, save=False)
    model = identical_models(opt, count=1)[0]
    batch = next(iter(model.training_batches(create_dataset(opt))))
    assert batch["B_paths"][0].endswith("ROIs1158_spring_s1_1_p1.tif")
    model.set_input(batch)
    model.optimize_parameters()
    valid = model.valid[0]
    assert valid.shape == (1, SIZE, SIZE) and 0 < int(valid.sum()) < SIZE * SIZE
    _, fake, real = (image[None] for image in model.current_images)
    assert float(model.losses["G_L1"]) == pytest.approx(100 * float(masked_l1(fake, real, valid[None])), rel=1e-5)
    assert float(model.losses["G_L1"]) != pytest.approx(100 * float(masked_l1(fake, real)), rel=1e-3)


def test_error_map_leaves_no_data_out(tmp_path, monkeypatch):
    """On a test patch whose Sentinel-1 twin has a no-data corner, the error map is black there and the page's mean
    dB error is the mean over the valid pixels of the GeoTIFF result against the real file."""
    root = ramp_tree(tmp_path / "ramps", nodata_corner=True)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["ROIs1868_summer_2"], "test": ["ROIs1158_spring_1"]}))
    common = ("--split_file", split, "--max_nodata", 1)
    run_entry_point(train_script, pix2pix_args(root, tmp_path, "holes", *common, "--iteration", 1, "--no_html"),
                    monkeypatch)
    run_entry_point(test_script, pix2pix_args(root, tmp_path, "holes", "--split_file", split, train=False),
                    monkeypatch)
    images = tmp_path / "results" / "holes" / "test_latest" / "images"
    row = json.loads((images / "ROIs1158_spring_s2_1_p1.row.json").read_text())
    translated = read_bands(images.parent / row["rasters"][0][0]).transpose(2, 0, 1)
    real = s1_db(row["sources"]["real_B"])
    valid = ~np.isnan(read_bands(row["sources"]["real_B"]).transpose(2, 0, 1)[0])
    assert valid.shape == (40, 40) and not valid[:10, :10].any() and valid[10:].all()
    expected = float(np.abs(translated - real)[:, valid].mean())
    assert row["scalars"]["mean_abs_error_db"] == pytest.approx(expected, abs=1e-3)
    with Image.open(images / "ROIs1158_spring_s2_1_p1_error_map.png") as error_map:
        pixels = np.asarray(error_map)
    assert pixels.shape == (40, 40, 3) and pixels[:10, :10].max() == 0 and pixels[10:].max() > 0

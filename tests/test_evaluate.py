"""evaluate.py: every metric on inputs with a known answer or against the reference package, pairing, the report."""

import contextlib
import csv
import dataclasses
import io
import json
import math
import re
import warnings
from unittest import mock

import lpips
import numpy as np
import pytest
import pytorch_fid.inception
import tifffile
import torch
import torchvision
from conftest import run_script
from PIL import Image
from pytorch_fid.fid_score import calculate_fid_given_paths, calculate_frechet_distance, get_activations
from pytorch_fid.inception import InceptionV3
from scipy.stats import wasserstein_distance
from skimage.feature import graycoprops

import evaluate
from data.pairing import write_pairing
from data.radiometry import IntensityScaling
from evaluation import evaluator as evaluator_module
from evaluation import metrics, speckle, texture
from evaluation.collect import NamedImage, collect_folders, collect_results
from evaluation.evaluator import ImageReader
from evaluation.features import filled
from evaluation.inception import FeatureSet, FIDFeatures, fid_weights_path
from evaluation.perceptual import LPIPSDistance, lpips_backbone_path
from evaluation.physical import clipped_masks, physical_scale
from util.cli import run_main
from util.errors import SargenError
from util.html import HTMLPage, HTMLSection
from util.results import ImageResult, ResultsWriter
from util.versions import software_versions

SIZE = 32
DB_WINDOW = (-25.0, 0.0)


def quantized(image):
    """An image rounded to 8-bit grey levels, as read back from a PNG."""
    return np.round(image * 255.0) / 255.0


def random_image(seed, low=0.2, high=0.6, channels=1, size=SIZE):
    """A seeded smooth-and-noisy test image in [low, high], on 8-bit levels, H x W x C."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((size // 4, size // 4, channels))
    smooth = np.kron(coarse, np.ones((4, 4, 1)))
    image = 0.7 * smooth + 0.3 * rng.random((size, size, channels))
    return quantized(low + (high - low) * image)


def gamma_speckle(looks, size=128, mean=0.3, seed=0):
    """Linear intensity of a homogeneous scene with fully developed speckle of `looks` looks: Gamma(L, mean/L)."""
    return np.random.default_rng(seed).gamma(looks, mean / looks, (size, size))


def db_rendering(intensity, window=DB_WINDOW):
    """Linear intensity as an 8-bit dB rendering (window -> 0..255, clipped), as SAR PNGs are made."""
    low, high = window
    return np.clip(np.round((10 * np.log10(intensity) - low) / (high - low) * 255), 0, 255).astype(np.uint8)


def save_png(array, path):
    """Write an H x W (x 3) uint8 array or [0, 1] float image as a PNG."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        array = np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


# Paired metrics


def test_identical_images_give_infinite_psnr_ssim_one_and_zero_errors():
    image = random_image(0, channels=3)
    assert metrics.paired_metrics(image, image) == {"psnr": math.inf, "ssim": 1.0, "mae": 0.0, "rmse": 0.0}


def test_known_gaussian_noise_gives_its_sigma_as_rmse_and_psnr_from_it():
    rng = np.random.default_rng(1)
    real = np.full((64, 64, 1), 0.5)
    fake = real + rng.normal(0.0, 0.05, real.shape)  # within [0, 1]: no clipping
    values = metrics.paired_metrics(fake, real)
    assert values["rmse"] == pytest.approx(0.05, rel=0.03)
    assert values["psnr"] == pytest.approx(20 * math.log10(1 / values["rmse"]), rel=1e-9)
    assert values["mae"] == pytest.approx(0.05 * math.sqrt(2 / math.pi), rel=0.03)  # E|N(0, s)| = s sqrt(2/pi)


def test_masked_pixels_do_not_change_any_paired_metric():
    real, fake = random_image(2, channels=3, size=48), random_image(3, channels=3, size=48)
    valid = np.ones((48, 48), bool)
    valid[:, 30:] = False
    spoiled = fake.copy()
    spoiled[:, 30:] = 1.0 - spoiled[:, 30:]
    assert metrics.paired_metrics(spoiled, real, valid) == pytest.approx(metrics.paired_metrics(fake, real, valid))
    assert metrics.paired_metrics(spoiled, real)["mae"] > metrics.paired_metrics(fake, real)["mae"]
    cropped = metrics.paired_metrics(fake[:, :30], real[:, :30])
    masked = metrics.paired_metrics(fake, real, valid)
    assert masked["mae"] == pytest.approx(cropped["mae"]) and masked["psnr"] == pytest.approx(cropped["psnr"])


def test_a_db_offset_moves_the_histogram_by_the_offset_and_a_shift_keeps_it():
    decibels = -25 + 20 * random_image(2)[:, :, 0]
    counts = metrics.db_histogram(decibels, DB_WINDOW)
    shifted = metrics.db_histogram(decibels + 2.0, DB_WINDOW)
    assert metrics.histogram_wasserstein(shifted, counts, DB_WINDOW) == pytest.approx(2.0, abs=0.05)
    assert metrics.histogram_wasserstein(shifted, counts, DB_WINDOW) == pytest.approx(
        wasserstein_distance(decibels.ravel() + 2.0, decibels.ravel()), abs=0.1)
    rolled = metrics.db_histogram(np.roll(decibels, 3, axis=1), DB_WINDOW)
    assert metrics.histogram_wasserstein(rolled, counts, DB_WINDOW) == 0.0
    assert metrics.histogram_jensen_shannon(rolled, counts) == 0.0
    dark, bright = metrics.db_histogram(np.full((8, 8), -20.0), DB_WINDOW), metrics.db_histogram(
        np.full((8, 8), -3.0), DB_WINDOW)
    assert metrics.histogram_jensen_shannon(dark, bright) == pytest.approx(1.0)


def test_masked_pixels_stay_out_of_histograms_and_textures():
    decibels = -25 + 20 * random_image(4, size=40)[:, :, 0]
    valid = np.zeros(decibels.shape, bool)
    valid[5:35, 5:35] = True
    spoiled = np.where(valid, decibels, 0.0)
    assert np.array_equal(metrics.db_histogram(spoiled, DB_WINDOW, valid),
                          metrics.db_histogram(decibels[5:35, 5:35], DB_WINDOW))
    assert np.array_equal(texture.cooccurrence_counts(spoiled, DB_WINDOW, valid),
                          texture.cooccurrence_counts(decibels[5:35, 5:35], DB_WINDOW))


def test_texture_distance_separates_textures_and_properties_follow_scikit_image():
    rng = np.random.default_rng(5)
    smooth = -15 + np.kron(rng.normal(0, 3, (8, 8)), np.ones((8, 8)))
    rough = -15 + rng.normal(0, 3, (64, 64))
    counts_smooth = texture.cooccurrence_counts(smooth, DB_WINDOW)
    counts_rough = texture.cooccurrence_counts(rough, DB_WINDOW)
    assert texture.texture_distance(counts_smooth, counts_smooth) == 0.0
    assert texture.texture_distance(counts_smooth, counts_rough) > 0.5
    properties = texture.texture_properties(counts_rough)
    assert properties["contrast"] > 5 * texture.texture_properties(counts_smooth)["contrast"]
    expected = graycoprops((counts_rough / counts_rough.sum())[:, :, None, None], "homogeneity")[0, 0]
    assert properties["homogeneity"] == pytest.approx(expected)


# Speckle in physical units


@pytest.mark.parametrize("looks", [1, 4])
def test_enl_of_gamma_speckle_is_the_number_of_looks(looks):
    assert speckle.equivalent_number_of_looks(gamma_speckle(looks)) == pytest.approx(looks, rel=0.1)


def test_enl_picks_the_homogeneous_half_of_a_textured_scene_and_ignores_masked_pixels():
    intensity = gamma_speckle(4, size=128)
    texture_field = np.exp(np.random.default_rng(5).normal(0.0, 1.0, (16, 8)))
    textured = intensity.copy()
    textured[:, 64:] *= np.kron(texture_field, np.ones((8, 8)))
    assert speckle.equivalent_number_of_looks(textured) == pytest.approx(4, rel=0.1)
    assert 1 / speckle.coefficient_of_variation(textured) ** 2 < 1.5  # the whole image looks far from 4 looks
    spoiled = intensity.copy()
    spoiled[::2, ::3] = 50.0  # bright no-data values scattered everywhere, masked
    valid = spoiled != 50.0
    assert speckle.equivalent_number_of_looks(spoiled) < 1
    assert speckle.equivalent_number_of_looks(spoiled, valid) == pytest.approx(4, rel=0.1)
    assert speckle.coefficient_of_variation(spoiled, valid) == pytest.approx(0.5, rel=0.05)  # 1 / sqrt(4)


def test_enl_of_a_constant_image_is_infinite_and_its_variation_zero():
    constant = np.full((40, 40), 0.37)
    assert speckle.equivalent_number_of_looks(constant) == math.inf
    assert speckle.coefficient_of_variation(constant) == 0.0
    assert math.isnan(speckle.equivalent_number_of_looks(np.zeros((40, 40))))


@pytest.mark.parametrize("looks, mean_db, plain_error", [(1, -5.0, 0.2), (1, -20.0, 0.15), (4, -20.0, 0.0)])
def test_enl_read_back_from_a_db_rendered_8_bit_png_is_the_number_of_looks(tmp_path, looks, mean_db, plain_error):
    """Clipping at the window's ends cuts the speckle's tails (1 look at -5 dB: 4 % of the pixels above 0 dB; at
    -20 dB: 27 % below -25 dB): the plain estimate is off by more than `plain_error`, the censored one within 10 %."""
    intensity = gamma_speckle(looks, size=192, mean=10 ** (mean_db / 10), seed=3)
    path = save_png(db_rendering(intensity), tmp_path / "speckle.png")
    image = ImageReader(IntensityScaling()).read(NamedImage("speckle", path))
    assert image.scale.unit == "db" and image.scale.values([0.0, 1.0]) == pytest.approx(DB_WINDOW)
    unit_values = image.values[0].numpy()
    linear = image.scale.linear(unit_values)
    low, high = clipped_masks(unit_values)
    assert (low | high).mean() > 0.03
    clipped = speckle.ClippedPixels(low, high, image.scale.censoring())
    assert speckle.equivalent_number_of_looks(linear, clipped=clipped) == pytest.approx(looks, rel=0.1)
    assert abs(speckle.equivalent_number_of_looks(linear) / looks - 1) >= plain_error


def test_physical_scale_inverts_each_reading_rule():
    db_rule = physical_scale(IntensityScaling("db", db_window=(-30.0, 5.0)), (-30.0, 5.0), "float32")
    assert db_rule.decibels([0.0, 0.5, 1.0]) == pytest.approx([-30.0, -12.5, 5.0])
    assert db_rule.linear([0.0, 1.0]) == pytest.approx([1e-3, 10 ** 0.5]) and db_rule.step == 0.0
    rendering = physical_scale(IntensityScaling(), (0.0, 255.0), "uint8", "auto", (-20.0, 0.0))
    assert rendering.decibels([0.0, 1.0]) == pytest.approx([-20.0, 0.0]) and rendering.step == pytest.approx(1 / 255)
    censoring = rendering.censoring()
    assert censoring.low_value == pytest.approx(0.01) and censoring.low_threshold == pytest.approx(
        10 ** ((-20 + 0.5 / 255 * 20) / 10))
    amplitude = physical_scale(IntensityScaling(), (0.0, 255.0), "uint8", "amplitude")
    assert amplitude.linear([0.5]) == pytest.approx([0.25])
    float_power = physical_scale(IntensityScaling("percentile"), (0.01, 0.2), "float32")
    assert float_power.unit == "intensity" and float_power.linear([0.0, 1.0]) == pytest.approx([0.01, 0.2])
    float_db = physical_scale(IntensityScaling("percentile", input_unit="db"), (-18.0, -2.0), "float32")
    assert float_db.decibels([0.5]) == pytest.approx([-10.0])


# Feature distances


def test_kernel_distance_is_the_unbiased_mmd_with_the_cubic_kernel():
    rng = np.random.default_rng(8)
    features_a, features_b = rng.normal(size=(5, 3)), rng.normal(1.0, 1.0, size=(4, 3))

    def kernel(x, y):
        return (x @ y / 3 + 1) ** 3

    within_a = sum(kernel(x, y) for i, x in enumerate(features_a) for j, y in enumerate(features_a) if i != j) / 20
    within_b = sum(kernel(x, y) for i, x in enumerate(features_b) for j, y in enumerate(features_b) if i != j) / 12
    across = sum(kernel(x, y) for x in features_a for y in features_b) / 20
    assert metrics.kernel_distance(features_a, features_b) == pytest.approx(within_a + within_b - 2 * across)
    same = metrics.kernel_distance(rng.normal(size=(200, 3)), rng.normal(size=(200, 3)))
    shifted = metrics.kernel_distance(rng.normal(size=(200, 3)), rng.normal(1.0, 1.0, size=(200, 3)))
    assert abs(same) < 0.05 * shifted  # unbiased: near 0 (either sign) for samples of one distribution


def pytorch_fid_frechet(features_a, features_b):
    """pytorch-fid's calculate_frechet_distance (scipy's sqrtm) on the features' means and np.cov covariances."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its notes on a singular product (fewer images than dimensions)
        return calculate_frechet_distance(features_a.mean(axis=0), np.cov(features_a, rowvar=False),
                                          features_b.mean(axis=0), np.cov(features_b, rowvar=False))


@pytest.mark.numerics
@pytest.mark.parametrize("count_a, count_b, dims", [(150, 120, 64), (300, 40, 64), (40, 90, 64), (12, 9, 256)])
def test_frechet_distance_equals_pytorch_fids_with_more_or_fewer_images_than_dims(count_a, count_b, dims):
    """The fast exact form against pytorch-fid's sqrtm: more images than dims, mixed, fewer (singular product)."""
    rng = np.random.default_rng(count_a)
    features_a = rng.gamma(0.5, 1.0, size=(count_a, dims))  # non-negative and skewed, as pooled activations
    features_b = rng.gamma(0.6, 1.2, size=(count_b, dims)) + rng.random(dims)
    expected = pytorch_fid_frechet(features_a, features_b)
    assert metrics.frechet_distance(features_a, features_b) == pytest.approx(expected, rel=1e-6) and expected > 0
    assert abs(metrics.frechet_distance(features_a, features_a)) < 1e-9 * expected


@pytest.mark.numerics
def test_frechet_distance_equals_pytorch_fids_for_close_sets_with_dead_features():
    """Two samples of one distribution (a small FID: the trace terms nearly cancel) whose first features are
    constant, as dead activations are (singular covariances), still agree with pytorch-fid's sqrtm."""
    rng = np.random.default_rng(7)
    features_a, features_b = rng.gamma(0.5, 1.0, size=(200, 64)), rng.gamma(0.5, 1.0, size=(180, 64))
    features_a[:, :5] = features_b[:, :5] = 1.0
    expected = pytorch_fid_frechet(features_a, features_b)
    assert metrics.frechet_distance(features_a, features_b) == pytest.approx(expected, rel=1e-6)
    assert expected < 0.3 * np.cov(features_a, rowvar=False).trace()


def test_summary_leaves_out_infinite_and_missing_values():
    assert metrics.mean_and_std([1.0, 3.0, math.inf, None, math.nan]) == {"mean": 2.0, "std": 1.0, "count": 2}
    assert metrics.mean_and_std([None])["count"] == 0


# Which images


def test_app_naming_pairs_with_plain_names_and_heatmaps_are_left_out(tmp_path):
    for name in ("gen_sar_a", "gen_sar_a_heatmap", "gen_sar_b", "other"):
        save_png(random_image(0), tmp_path / "fake" / f"{name}.png")
    for name in ("a", "b", "c"):
        save_png(random_image(1), tmp_path / "real" / f"{name}.png")
    images = collect_folders(tmp_path / "fake", tmp_path / "real").pair_names()
    assert sorted(image.name for image in images.fakes) == ["a", "b", "other"]
    assert {name: real.path.name for name, real in images.pairs.items()} == {"a": "a.png", "b": "b.png"}
    assert images.out_dir == tmp_path / "fake" and any("heatmap" in note for note in images.notes)
    assert collect_folders(tmp_path / "fake", tmp_path / "real", prefix="").pair_names().pairs == {}
    assert collect_folders(tmp_path / "fake", tmp_path / "real").pair_names("--unpaired").pairs == {}


def write_results(folder, images):
    """A results folder written by ResultsWriter: {name: {label: H x W x C array in [0, 1]}}."""
    writer = ResultsWriter(folder, "test results")
    for name, visuals in images.items():
        writer.add(ImageResult(name, {label: torch.from_numpy(array.transpose(2, 0, 1)).float() * 2 - 1
                                      for label, array in visuals.items()}))
    writer.save()
    return folder


def test_missing_empty_or_unlabelled_folders_are_refused(tmp_path):
    with pytest.raises(SargenError, match="results folder not found: .*nowhere"):
        collect_results(tmp_path / "nowhere")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(SargenError, match="no images in .*empty.*run test.py first"):
        collect_results(tmp_path / "empty")
    with pytest.raises(SargenError, match="no generated images .*--fake_label"):
        collect_results(write_results(tmp_path / "other", {"a": {"real_A": random_image(0)}}))
    with pytest.raises(SargenError, match="no images .* in --fake_dir .*empty"):
        collect_folders(tmp_path / "empty", tmp_path / "other" / "images")
    with pytest.raises(SargenError, match="--real_dir folder not found"):
        collect_folders(tmp_path / "other" / "images", tmp_path / "missing")


def test_results_labels_are_detected_and_real_dir_images_paired_by_name(tmp_path):
    image = random_image(0)
    gatys = write_results(tmp_path / "gatys", {"farmland_0001": {"real_A": image, "fake_B": image, "real_B": image,
                                                                 "fake_B_step_00100": image}})
    found = collect_results(gatys).pair_names()
    assert [fake.name for fake in found.fakes] == ["farmland_0001"]
    assert found.pairs["farmland_0001"].path.name == "farmland_0001_real_B.png" and len(found.reals) == 1
    ugatit = write_results(tmp_path / "ugatit", {name: {"real_A": image, "fake_A2B": image} for name in "ab"})
    assert collect_results(ugatit).pair_names().reals == []
    real_dir = save_png(image, tmp_path / "real" / "b.png").parent
    found = collect_results(ugatit, real_dir=real_dir).pair_names()
    assert list(found.pairs) == ["b"]


def test_a_page_section_replaces_its_earlier_version_and_escapes_text(tmp_path):
    page = HTMLPage(tmp_path, "results")
    page.add_header("image row")
    page.save()
    for text in ("first <b>", "second <b>"):
        section = HTMLSection("metrics")
        section.add_table(["metric"], [[text]])
        section.save_into(page.index_path)
    html = page.index_path.read_text()
    assert html.count("sargen section metrics: begin") == 1 and "second &lt;b&gt;" in html and "first" not in html
    assert html.index("<h1>results</h1>") < html.index("sargen-metrics") < html.index("image row")


# End to end


def evaluate_args(*extra):
    """Options of a small, fast evaluation on the CPU (random VGG, two Gram layers)."""
    return ["--vgg", "vgg16", "--vgg_weights", "random", "--style_layer", "0,1", "--gpu_ids", "-1", *map(str, extra)]


def read_report(folder):
    """metrics.json of a folder, parsed strictly (no NaN/Infinity literals)."""
    return json.loads((folder / "metrics.json").read_text(), parse_constant=pytest.fail)


def test_two_folders_give_paired_rows_distribution_metrics_and_say_why(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_cache"))
    real = {name: random_image(seed, channels=1, size=40) for seed, name in enumerate(("a", "b", "c"))}
    fakes = {"a": real["a"], "b": np.clip(real["b"] + 20 / 255, 0, 1), "d": random_image(9, size=40)}
    for name, image in fakes.items():
        save_png(image, tmp_path / "fake" / f"gen_sar_{name}.png")
    for name, image in real.items():
        save_png(image, tmp_path / "real" / f"{name}.png")
    out = tmp_path / "scores"
    code, _, stderr = run_script("evaluate.py", ["--fake_dir", tmp_path / "fake", "--real_dir", tmp_path / "real",
                                                 "--out", out, *evaluate_args()])
    assert code == 3, stderr  # FID, KID and LPIPS unavailable: the report is written, the exit code says so
    assert stderr.strip().splitlines()[-1] == "some metrics are unavailable (exit code 3): fid, lpips, kid"
    report = read_report(out)
    assert list(report) == ["settings", "computed", "images", "summary", "domain", "software"]
    assert {key: value for key, value in report["software"].items() if key != "sargen"} == {
        key: value for key, value in software_versions().items() if key != "sargen"} and report["software"]["sargen"]
    rows = {row["name"]: row for row in report["images"]}
    assert list(rows) == ["a", "b", "d"] and rows["a"]["real"].endswith("real/a.png") and rows["d"]["real"] is None
    assert rows["a"]["psnr"] == "inf" and rows["a"]["ssim"] == 1.0 and rows["a"]["gram_distance_real"] == 0.0
    assert rows["b"]["histogram_wasserstein_db_real"] == pytest.approx(20 / 255 * 25, abs=0.05)  # 20 levels in dB
    assert "psnr" not in rows["d"] and rows["d"]["enl"] > 0 and "histogram_js_domain" in rows["d"]
    assert report["summary"]["psnr"]["count"] == 1 and report["summary"]["mae"]["count"] == 2
    computed = " | ".join(report["computed"])
    assert "paired metrics" in computed and "on 2 pairs matched by name" in computed and "'gen_sar_'" in computed
    assert "FID, KID: unavailable: pytorch-fid's Inception weights are not in" in computed and "empty_cache" in computed
    assert "LPIPS: unavailable" in computed and "alexnet-owt-7be5be79.pth" in computed
    assert "FID, KID: unavailable" in stderr  # said in the log as well
    domain = report["domain"]
    assert domain["fid"].startswith("unavailable") and domain["real_images"] == 3
    assert domain["enl"]["real"]["count"] == 3
    assert domain["histogram_wasserstein_db"] > 0 and 0 <= domain["texture_distance"] <= 1
    with open(out / "metrics.csv", newline="") as handle:
        table = {row["metric"]: row for row in csv.DictReader(handle)}
    assert table["psnr"]["a"] == "inf" and table["psnr"]["d"] == "" and table["psnr"]["count"] == "1"
    assert not (out / "index.html").exists()  # no page there: json and csv only


def test_a_metric_without_weights_is_unavailable_unless_requested(tmp_path, monkeypatch):
    """One rule for the Gram distance, FID/KID and LPIPS: weights absent -> unavailable with where to put them, the
    other metrics computed, exit code 3; all computed -> 0; a metric asked for that cannot run -> an error."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_cache"))
    for name in ("a", "b"):
        save_png(random_image(ord(name), size=40), tmp_path / "fake" / f"{name}.png")
        save_png(random_image(ord(name) + 5, size=40), tmp_path / "real" / f"{name}.png")
    folders = ["--fake_dir", str(tmp_path / "fake"), "--real_dir", str(tmp_path / "real"), "--out", str(tmp_path),
               "--vgg", "vgg16", "--style_layer", "0,1", "--gpu_ids", "-1"]
    assert evaluate.main(folders) == 3  # no --vgg_weights and no ImageNet VGG16 in the cache
    report = read_report(tmp_path)
    gram = report["domain"]["gram_distance"]
    assert gram.startswith("unavailable: ImageNet vgg16 weights are not in ") and "empty_cache" in gram
    assert "vgg16-397923af.pth" in gram and "--vgg_weights random" in gram
    assert all("gram_distance_real" not in row and math.isfinite(row["psnr"]) for row in report["images"])
    assert any(line.startswith("Gram distance: unavailable") for line in report["computed"])
    assert report["domain"]["histogram_js"] >= 0 and report["domain"]["fid"].startswith("unavailable")
    assert evaluate.main([*folders, "--vgg_weights", "random", "--no_fid", "--no_lpips"]) == 0
    assert read_report(tmp_path)["domain"]["gram_distance"] >= 0
    offline = mock.patch("torchvision.models._api.WeightsEnum.get_state_dict", side_effect=OSError("offline"))
    with offline, pytest.raises(SargenError, match="^ImageNet vgg16 weights are not in .*could not be downloaded"):
        evaluate.main([*folders, "--gram", "--no_fid", "--no_lpips"])
    with pytest.raises(SargenError, match="^--lpips: the alexnet ImageNet weights of LPIPS are not in .*empty_cache"):
        evaluate.main([*folders, "--vgg_weights", "random", "--no_fid", "--lpips"])
    with mock.patch("torch.hub.download_url_to_file", side_effect=OSError("offline")), \
            pytest.raises(SargenError, match="^pytorch-fid's Inception weights are not in .*could not be downloaded"):
        evaluate.main([*folders, "--vgg_weights", "random", "--no_lpips", "--fid"])
    with pytest.raises(SargenError, match="^--lpips: LPIPS compares pairs"):
        evaluate.main([*folders, "--vgg_weights", "random", "--no_fid", "--lpips", "--unpaired"])


def test_no_common_names_gives_distribution_metrics_only_and_unpaired_forces_it(tmp_path):
    for name in ("x", "y"):
        save_png(random_image(1, size=24), tmp_path / "fake" / f"gen_sar_{name}.png")
    for name in ("a", "b"):
        save_png(random_image(2, size=24), tmp_path / "real" / f"{name}.png")
    evaluate.main(["--fake_dir", str(tmp_path / "fake"), "--real_dir", str(tmp_path / "real"), "--no_fid",
                   *evaluate_args("--no_gram")])
    report = read_report(tmp_path / "fake")
    assert "no common names between the generated and the real images: distribution metrics only" in report["computed"]
    assert all("psnr" not in row for row in report["images"]) and report["domain"]["histogram_js"] >= 0
    save_png(random_image(2, size=24), tmp_path / "real" / "x.png")
    evaluate.main(["--fake_dir", str(tmp_path / "fake"), "--real_dir", str(tmp_path / "real"), "--no_fid",
                   "--unpaired", *evaluate_args("--no_gram")])
    report = read_report(tmp_path / "fake")
    assert "--unpaired: distribution metrics only" in report["computed"]
    assert all("psnr" not in row for row in report["images"])


def test_pairs_of_different_sizes_are_resized_by_the_stated_rule(tmp_path):
    image = random_image(3, size=64)
    save_png(image, tmp_path / "real" / "a.png")
    save_png(image[::2, ::2], tmp_path / "fake" / "a.png")
    evaluate.main(["--fake_dir", str(tmp_path / "fake"), "--real_dir", str(tmp_path / "real"), "--no_fid",
                   *evaluate_args("--no_gram")])
    report = read_report(tmp_path / "fake")
    row = report["images"][0]
    assert row["resized"] is True and row["ssim"] > 0.5 and report["settings"]["resized_pairs"] == 1
    assert any("pair(s) of different sizes: a real image of another size is resized" in line
               for line in report["computed"])


def test_unreadable_files_stop_the_run_or_are_left_out_with_skip_bad(tmp_path, capsys):
    for name in ("a", "b"):
        save_png(random_image(4, size=24), tmp_path / "fake" / f"{name}.png")
        save_png(random_image(5, size=24), tmp_path / "real" / f"{name}.png")
    (tmp_path / "real" / "b.png").write_bytes(b"not a png")
    args = ["--fake_dir", str(tmp_path / "fake"), "--real_dir", str(tmp_path / "real"), "--no_fid",
            *evaluate_args("--no_gram")]
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: evaluate.main(args))
    error = capsys.readouterr().err.split("\r")[-1]  # after the progress bar
    assert exit_info.value.code == 2 and "Traceback" not in error
    assert error.splitlines()[-1].startswith("error: cannot read image ") and "real/b.png" in error
    evaluate.main([*args, "--skip_bad"])
    report = read_report(tmp_path / "fake")
    rows = {row["name"]: row for row in report["images"]}
    assert rows["a"]["psnr"] > 0 and "psnr" not in rows["b"] and report["domain"]["real_images"] == 1
    assert report["settings"]["skipped"] == [str(tmp_path / "real" / "b.png")]


def test_empty_folders_and_missing_options_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "fake").mkdir()
    save_png(random_image(0), tmp_path / "real" / "a.png")
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: evaluate.main(["--fake_dir", str(tmp_path / "fake"), "--real_dir", str(tmp_path / "real")]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: no images (.png, .jpg, .tif) in --fake_dir {tmp_path / 'fake'}: give " \
                                      f"the folder that holds them\n"
    with pytest.raises(SystemExit):
        evaluate.main(["--fake_dir", str(tmp_path / "fake")])
    assert "--fake_dir needs --real_dir" in capsys.readouterr().err


def test_results_layout_writes_json_csv_and_a_page_section(tmp_path):
    real = {name: random_image(seed, channels=3) for seed, name in enumerate(("a", "b", "c"))}
    fakes = {"a": real["a"], "b": np.clip(real["b"] + 20 / 255, 0, 1), "c": random_image(9, channels=3)}
    folder = write_results(tmp_path / "results", {name: {"real_A": real[name], "fake_B": fakes[name],
                                                         "real_B": real[name]} for name in real})
    evaluate.main(["--results", str(folder), "--no_fid", *evaluate_args()])
    report = read_report(folder)
    rows = {row["name"]: row for row in report["images"]}
    assert rows["a"]["real"] == "images/a_real_B.png" and rows["a"]["psnr"] == "inf"
    assert report["settings"]["gram"]["weights"] == "random:seed=0,unit-variance"
    assert report["domain"]["fid"] == "skipped (--no_fid)" and "enl_band1" in report["domain"]
    assert "histogram_wasserstein_db_real_band3" in rows["b"] and "histogram_wasserstein_db_real" in rows["b"]
    html = (folder / "index.html").read_text()
    assert "Metrics (evaluate.py)" in html and 'href="metrics.csv"' in html and "paired metrics" in html
    # laid out as read: a row per paired metric (mean, std, then each image), the sets side by side, plots
    tables = [[re.findall(r"<t[hd]>(.*?)</t[hd]>", row) for row in re.findall(r"<tr>(.*?)</tr>", table, re.DOTALL)]
              for table in re.findall(r"<table[^>]*>(.*?)</table>", html, re.DOTALL)]
    paired = tables[0]
    assert paired[0][:3] == ["metric", "mean", "std"] and paired[0][-3:] == ["a", "b", "c"]
    psnr = next(row for row in paired if row[0] == "psnr")
    assert psnr[-3] == "inf" and float(psnr[-1]) == pytest.approx(rows["c"]["psnr"], rel=1e-5)
    assert [row[0] for row in paired[1:5]] == ["psnr", "ssim", "mae", "rmse"] and len(paired) < 15
    statistics = next(table for table in tables if table[0][:6] == ["metric", "generated band1", "generated std band1",
                                                                     "real band1", "real std band1", "ratio band1"])
    enl = next(row for row in statistics if row[0] == "enl")
    assert float(enl[5]) == pytest.approx(report["domain"]["enl_band1"]["ratio"], rel=1e-5)
    for title in ("dB histogram band1", "ENL per image band3"):
        chart = re.search(rf"<svg[^>]*>(?:(?!</svg>).)*>{title}<.*?</svg>", html, re.DOTALL).group()
        assert ">generated<" in chart and ">real<" in chart and chart.count("<polyline") == 2


# FID and KID with pytorch-fid's network


def make_fid_weights(path):
    """pytorch-fid's FID Inception with seeded random weights (batch-norm statistics measured on noise), saved."""
    torch.manual_seed(0)
    with mock.patch.object(pytorch_fid.inception, "load_state_dict_from_url", lambda *args, **kwargs: {}), \
            mock.patch.object(torchvision.models.Inception3, "load_state_dict", lambda self, state: None):
        network = pytorch_fid.inception.fid_inception_v3()
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average: one batch sets the statistics
    with torch.no_grad():
        network.train()(torch.rand(2, 3, 80, 80) * 2 - 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def fid_home(tmp_path_factory):
    """A TORCH_HOME whose hub cache holds a random-valued file with pytorch-fid's keys where pytorch-fid looks."""
    home = tmp_path_factory.mktemp("fid_home")
    with mock.patch.dict("os.environ", {"TORCH_HOME": str(home)}):
        make_fid_weights(fid_weights_path())
    return home


@pytest.fixture(scope="module")
def fid_folders(tmp_path_factory):
    """Two folders of 3 PNGs each (grey and RGB) as pytorch-fid reads them: the same size in each folder."""
    root = tmp_path_factory.mktemp("fid_images")
    for index in range(3):
        save_png(random_image(index, channels=1 + 2 * (index % 2), size=40), root / "fake" / f"s{index}.png")
        save_png(random_image(10 + index, low=0.1, high=0.9, channels=3, size=48), root / "real" / f"t{index}.png")
    return root / "fake", root / "real"


@pytest.mark.numerics
def test_fid_equals_pytorch_fid_on_the_same_folders(fid_home, fid_folders, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(fid_home))
    fake_dir, real_dir = fid_folders
    out = fid_folders[0].parent / "scores"
    evaluate.main(["--fake_dir", str(fake_dir), "--real_dir", str(real_dir), "--out", str(out), "--fid_dims", "192",
                   "--batch_size", "2", "--no_lpips", *evaluate_args("--no_gram")])
    domain = read_report(out)["domain"]
    expected = calculate_fid_given_paths([str(fake_dir), str(real_dir)], 50, "cpu", 192, num_workers=0)
    assert domain["fid"]["value"] == pytest.approx(expected, rel=1e-4) and expected > 0
    assert domain["fid"]["generated_images"] == 3 and domain["fid"]["real_images"] == 3
    assert "299" in domain["fid"]["resize"] and math.isfinite(domain["kid"]["value"])
    # The 2048-d pool features of the whole network, batch by batch, equal pytorch-fid's on the same files.
    extractor = FIDFeatures(fid_weights_path(), 2048, torch.device("cpu"), batch_size=2)
    features = FeatureSet(extractor)
    for path in sorted(fake_dir.glob("*.png")):
        features.add(ImageReader(IntensityScaling()).read(NamedImage(path.stem, path)).values)
    with mock.patch.object(pytorch_fid.inception, "load_state_dict_from_url",
                           lambda *args, **kwargs: torch.load(fid_weights_path(), weights_only=True)):
        reference = get_activations(sorted(fake_dir.glob("*.png")), InceptionV3([3]).eval(), 50, 2048, "cpu", 0)
    assert features.features() == pytest.approx(reference, rel=1e-4, abs=1e-5)


def test_fid_weights_missing_are_recorded_unavailable_or_refused(tmp_path, fid_folders, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_cache"))
    fake_dir, real_dir = fid_folders
    evaluate.main(["--fake_dir", str(fake_dir), "--real_dir", str(real_dir), "--out", str(tmp_path), "--no_lpips",
                   *evaluate_args("--no_gram")])
    fid = read_report(tmp_path)["domain"]["fid"]
    assert fid.startswith("unavailable: pytorch-fid's Inception weights are not in ") and "no_cache" in fid
    assert "pt_inception-2015-12-05-6726825d.pth" in fid
    with pytest.raises(SargenError, match="--inception_weights file not found: .*missing.pth"):
        evaluate.main(["--fake_dir", str(fake_dir), "--real_dir", str(real_dir), "--out", str(tmp_path),
                       "--inception_weights", str(tmp_path / "missing.pth"), *evaluate_args("--no_gram")])


# LPIPS with the lpips package


def write_alexnet_weights(path):
    """torchvision's alexnet keys with seeded random values (the classifier as a broadcast scalar: a small file)."""
    torch.manual_seed(0)
    state = torchvision.models.alexnet(weights=None).state_dict()
    state = {key: value if key.startswith("features") else torch.zeros(1).expand(value.shape)
             for key, value in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


@pytest.mark.numerics
def test_lpips_equals_the_lpips_package_on_the_same_pair(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = write_alexnet_weights(lpips_backbone_path("alex"))
    fake, real = torch.rand(3, 40, 36), torch.rand(3, 40, 36)
    distance = LPIPSDistance("alex", path, torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = lpips.LPIPS(net="alex", verbose=False)  # loads the same file from the hub cache itself
    expected = float(reference(fake[None], real[None], normalize=True).detach())
    assert distance(fake, real) == pytest.approx(expected, rel=1e-5) and expected > 0
    assert distance(fake, fake) == 0.0
    valid = np.ones((40, 36), bool)
    valid[:, 18:] = False  # with a mask: the package's spatial map of the filled images over the valid pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spatial = lpips.LPIPS(net="alex", spatial=True, verbose=False)(
            filled(fake, valid)[None], filled(real, valid)[None], normalize=True)
    assert distance(fake, real, valid) == pytest.approx(float(spatial[0, 0][torch.from_numpy(valid)].mean()),
                                                        rel=1e-5)


def test_multi_band_db_geotiffs_are_scored_band_by_band(tmp_path, fid_home, monkeypatch):
    """VV and VH in float dB: every statistic per band (FID on each band as a grey image, and their mean)."""
    monkeypatch.setenv("TORCH_HOME", str(fid_home))
    rng = np.random.default_rng(6)
    for index in range(3):
        for folder, looks in (("fake", 2), ("real", 4)):
            bands = [10 * np.log10(rng.gamma(looks, mean / looks, (48, 48))) for mean in (0.1, 0.02)]
            path = tmp_path / folder / f"scene{index}.tif"
            path.parent.mkdir(exist_ok=True)
            tifffile.imwrite(path, np.stack(bands).astype(np.float32), planarconfig="separate")
    evaluate.main(["--fake_dir", str(tmp_path / "fake"), "--real_dir", str(tmp_path / "real"), "--intensity_scaling",
                   "db", "--input_unit", "db", "--db_window=-40,5", "--fid_dims", "64", "--no_lpips",
                   *evaluate_args("--no_gram")])
    report = read_report(tmp_path / "fake")
    domain, row = report["domain"], report["images"][0]
    assert report["settings"]["bands"] == ["band1", "band2"]
    assert domain["fid"]["value"] == pytest.approx((domain["fid_band1"]["value"] + domain["fid_band2"]["value"]) / 2)
    for band in ("band1", "band2"):
        assert domain[f"enl_{band}"]["ratio"] == pytest.approx(0.5, rel=0.25)  # 2 looks against 4
        assert f"histogram_wasserstein_db_real_{band}" in row and f"enl_real_{band}" in row
    assert domain["mean_db_band1"]["generated"]["mean"] == pytest.approx(-10, abs=0.3)
    assert domain["mean_db_band2"]["generated"]["mean"] == pytest.approx(-17, abs=0.3)
    # metrics.csv: a row per metric, bands and images as columns; metrics_sets.csv: generated beside real
    with open(tmp_path / "fake" / "metrics.csv", newline="") as handle:
        table = {line["metric"]: line for line in csv.DictReader(handle)}
    summary = report["summary"]
    assert table["psnr"]["kind"] == "paired" and table["psnr"]["count"] == "3"
    assert float(table["psnr"]["mean"]) == pytest.approx(summary["psnr"]["mean"])
    assert float(table["histogram_js_real"]["std band2"]) == pytest.approx(summary["histogram_js_real_band2"]["std"])
    assert float(table["enl"]["scene0 band2"]) == pytest.approx(row["enl_band2"]) and table["enl"]["scene0"] == ""
    assert table["enl"]["kind"] == "generated image" and table["enl_real"]["kind"] == "real twin's statistic"
    with open(tmp_path / "fake" / "metrics_sets.csv", newline="") as handle:
        sets = {line["metric"]: line for line in csv.DictReader(handle)}
    assert float(sets["fid"]["value band2"]) == pytest.approx(domain["fid_band2"]["value"])
    assert float(sets["enl"]["ratio band1"]) == pytest.approx(domain["enl_band1"]["ratio"])
    contrast = domain["glcm_contrast_band2"]
    assert float(sets["glcm_contrast"]["ratio band2"]) == pytest.approx(contrast["generated"]["mean"]
                                                                        / contrast["real"]["mean"])
    assert float(sets["mean_db (ratio: difference in dB)"]["ratio band1"]) == pytest.approx(
        domain["mean_db_band1"]["difference"])
    assert len(sets) < 20 and "glcm_contrast_band1" not in (tmp_path / "fake" / "metrics.csv").read_text()


@pytest.mark.numerics
def test_the_readers_validity_mask_keeps_no_data_pixels_out(tmp_path, monkeypatch):
    """RasterInfo.valid (where image_io provides it) reaches every metric: spoiling masked pixels changes nothing."""
    real = random_image(7, size=48)
    save_png(real, tmp_path / "real" / "a.png")
    save_png(np.clip(real + 0.05, 0, 1), tmp_path / "fake" / "a.png")
    spoiled = np.clip(real + 0.05, 0, 1)
    spoiled[:, 32:] = 1.0
    save_png(spoiled, tmp_path / "spoiled" / "a.png")
    valid = np.ones((48, 48), bool)
    valid[:, 32:] = False
    original = evaluator_module.read_image_with_info

    def read_with_mask(path, channels=None, scaling=None):
        """The reader's result with a no-data mask over the right third, as GeoTIFFs with no-data get it."""
        values, info = original(path, channels, scaling)
        return values, dataclasses.replace(info, valid=valid)

    monkeypatch.setattr(evaluator_module, "read_image_with_info", read_with_mask)
    rows = []
    for fake in ("fake", "spoiled"):
        evaluate.main(["--fake_dir", str(tmp_path / fake), "--real_dir", str(tmp_path / "real"), "--no_fid",
                       *evaluate_args()])
        rows.append(read_report(tmp_path / fake)["images"][0])
    for key in ("psnr", "ssim", "mae", "histogram_wasserstein_db_real", "texture_distance_real", "enl",
                "gram_distance_real"):
        assert rows[1][key] == pytest.approx(rows[0][key], rel=1e-4), key


def test_the_datasets_pairing_record_decides_whether_names_pair(tmp_path):
    """A real folder recorded as unpaired (pairing.json) is never scored as paired, even where names match."""
    for name in ("a", "b"):
        save_png(random_image(1, size=24), tmp_path / "fake" / f"{name}.png")
        for folder in ("trainB", "testB"):
            save_png(random_image(2, size=24), tmp_path / "data" / folder / f"{name}.png")
    write_pairing(tmp_path / "data", co_registered=[("testA", "testB")], unpaired=[("trainA", "trainB")])
    args = ["--fake_dir", str(tmp_path / "fake"), "--no_fid", *evaluate_args("--no_gram")]
    evaluate.main([*args, "--real_dir", str(tmp_path / "data" / "trainB")])
    report = read_report(tmp_path / "fake")
    assert any("as unpaired (different scenes): distribution metrics only" in line for line in report["computed"])
    assert all("psnr" not in row for row in report["images"])
    evaluate.main([*args, "--real_dir", str(tmp_path / "data" / "testB")])
    report = read_report(tmp_path / "fake")
    assert all("psnr" in row for row in report["images"]) and "co-registered" in report["settings"]["pairing"]

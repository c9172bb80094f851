"""evaluate.py: every metric on inputs with a known answer, the results-folder handling, the report."""

import csv
import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torchvision
from conftest import run_script
from scipy.stats import wasserstein_distance

import evaluate
from evaluation import metrics
from evaluation.collect import collect_images
from util.cli import run_main
from util.errors import SargenError
from util.html import HTMLPage, HTMLSection
from util.results import ImageResult, ResultsWriter

SIZE = 32


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
    assert values["psnr"] == pytest.approx(26.02, abs=0.3)
    assert values["mae"] == pytest.approx(0.05 * math.sqrt(2 / math.pi), rel=0.03)  # E|N(0, s)| = s sqrt(2/pi)


def test_an_intensity_offset_moves_the_histogram_by_the_offset():
    real = random_image(2, channels=3)
    offset = 20 / 255
    fake = real + offset
    histograms_fake, histograms_real = metrics.intensity_histograms(fake), metrics.intensity_histograms(real)
    distance = metrics.histogram_wasserstein(histograms_fake, histograms_real)
    assert distance == pytest.approx(offset, abs=1e-9)
    assert distance == pytest.approx(wasserstein_distance(fake[:, :, 0].ravel(), real[:, :, 0].ravel()), abs=1e-9)
    values = metrics.paired_metrics(fake, real)
    assert values["mae"] == pytest.approx(offset) and values["rmse"] == pytest.approx(offset)
    assert values["ssim"] < 1.0
    assert metrics.histogram_jensen_shannon(histograms_fake, histograms_real) > 0.0


def test_a_spatial_shift_keeps_the_histogram_but_lowers_ssim():
    real = random_image(3)
    fake = np.roll(real, 3, axis=1)
    histograms_fake, histograms_real = metrics.intensity_histograms(fake), metrics.intensity_histograms(real)
    assert metrics.histogram_wasserstein(histograms_fake, histograms_real) == 0.0
    assert metrics.histogram_jensen_shannon(histograms_fake, histograms_real) == 0.0
    values = metrics.paired_metrics(fake, real)
    assert values["ssim"] < 0.9 and values["mae"] > 0.0


def test_jensen_shannon_is_zero_for_equal_and_one_for_disjoint_histograms():
    dark, bright = np.full((8, 8, 1), 0.1), np.full((8, 8, 1), 0.9)
    assert metrics.histogram_jensen_shannon(metrics.intensity_histograms(dark),
                                            metrics.intensity_histograms(dark)) == 0.0
    assert metrics.histogram_jensen_shannon(metrics.intensity_histograms(dark),
                                            metrics.intensity_histograms(bright)) == pytest.approx(1.0)


# Speckle


@pytest.mark.parametrize("looks", [1, 4])
def test_enl_of_gamma_speckle_is_the_number_of_looks(looks):
    assert metrics.equivalent_number_of_looks(gamma_speckle(looks)) == pytest.approx(looks, rel=0.1)


def test_enl_picks_the_homogeneous_half_of_a_textured_scene():
    intensity = gamma_speckle(4, size=128)
    texture = np.exp(np.random.default_rng(5).normal(0.0, 1.0, (16, 8)))
    intensity[:, 64:] *= np.kron(texture, np.ones((8, 8)))  # strong texture in the right half
    assert metrics.equivalent_number_of_looks(intensity) == pytest.approx(4, rel=0.1)
    assert 1 / metrics.coefficient_of_variation(intensity) ** 2 < 1.5  # the whole image looks far from 4 looks


def test_enl_of_a_constant_image_is_infinite_and_its_variation_zero():
    constant = np.full((40, 40), 0.37)
    assert metrics.equivalent_number_of_looks(constant) == math.inf
    assert metrics.coefficient_of_variation(constant) == 0.0
    assert math.isnan(metrics.equivalent_number_of_looks(np.zeros((40, 40))))


def test_pixel_values_become_linear_intensity_by_unit():
    values = np.array([0.0, 0.5, 1.0])
    assert metrics.to_linear_intensity(values, "db", (-20.0, 0.0)) == pytest.approx([0.01, 0.1, 1.0])
    assert metrics.to_linear_intensity(values, "amplitude", (-25.0, 0.0)) == pytest.approx([0.0, 0.25, 1.0])
    assert metrics.to_linear_intensity(values, "intensity", (-25.0, 0.0)) == pytest.approx(values)


def test_speckle_statistics_convert_amplitude_and_db_images_to_intensity():
    intensity = gamma_speckle(4)
    amplitude = np.sqrt(intensity)[:, :, None]
    assert metrics.speckle_statistics(amplitude, "amplitude", None)["enl"] == pytest.approx(4, rel=0.1)
    db_window = (-30.0, 5.0)
    scaled = (10 * np.log10(intensity) - db_window[0]) / (db_window[1] - db_window[0])
    statistics = metrics.speckle_statistics(scaled[:, :, None], "db", db_window)
    assert statistics["enl"] == pytest.approx(4, rel=0.1)
    assert statistics["intensity_cv"] == pytest.approx(intensity.std() / intensity.mean())


# Feature distances


def features_with_moments(mean, standard_deviations, count):
    """count x D features whose sample mean and sample covariance are exactly `mean` and diag(sd^2)."""
    columns = np.column_stack([np.ones(count), np.random.default_rng(6).normal(size=(count, len(mean)))])
    basis = np.linalg.qr(columns)[0][:, 1:]  # orthonormal columns orthogonal to the constant one: zero means
    return np.asarray(mean) + np.sqrt(count - 1) * basis * np.asarray(standard_deviations)


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    mean_a, deviations_a = np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 0.5])
    mean_b, deviations_b = np.array([1.0, 1.0, 0.0]), np.array([3.0, 1.0, 0.5])
    features_a = features_with_moments(mean_a, deviations_a, 20)
    features_b = features_with_moments(mean_b, deviations_b, 30)
    assert np.cov(features_a.T) == pytest.approx(np.diag(deviations_a ** 2))
    expected = ((mean_a - mean_b) ** 2).sum() + ((deviations_a - deviations_b) ** 2).sum()
    assert metrics.frechet_distance(features_a, features_b) == pytest.approx(expected)


def test_frechet_distance_matches_scipy_sqrtm_and_is_zero_for_identical_sets():
    rng = np.random.default_rng(7)
    features_a, features_b = rng.normal(size=(40, 6)), rng.normal(0.5, 2.0, size=(50, 6)) @ rng.normal(size=(6, 6))
    covariance_a, covariance_b = np.cov(features_a.T), np.cov(features_b.T)
    difference = features_a.mean(axis=0) - features_b.mean(axis=0)
    expected = difference @ difference + np.trace(covariance_a + covariance_b
                                                  - 2 * scipy.linalg.sqrtm(covariance_a @ covariance_b).real)
    assert metrics.frechet_distance(features_a, features_b) == pytest.approx(expected, rel=1e-6)
    few = rng.normal(size=(5, 64))  # fewer samples than dimensions: singular covariances
    assert metrics.frechet_distance(few, few) == pytest.approx(0.0, abs=1e-9)


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


def test_summary_leaves_out_infinite_and_missing_values():
    assert metrics.mean_and_std([1.0, 3.0, math.inf, None, math.nan]) == {"mean": 2.0, "std": 1.0, "count": 2}
    assert metrics.mean_and_std([None])["count"] == 0


# Results folders


def write_results(folder, images):
    """A results folder written by ResultsWriter: {name: {label: H x W x C array in [0, 1]}}."""
    writer = ResultsWriter(folder, "test results")
    for name, visuals in images.items():
        writer.add(ImageResult(name, {label: torch.from_numpy(array.transpose(2, 0, 1)).float() * 2 - 1
                                      for label, array in visuals.items()}))
    writer.save()
    return folder


def test_missing_empty_or_unlabelled_results_folders_are_refused(tmp_path):
    with pytest.raises(SargenError, match="results folder not found: .*nowhere"):
        collect_images(tmp_path / "nowhere")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(SargenError, match="no images in .*empty.*run test.py first"):
        collect_images(tmp_path / "empty")
    folder = write_results(tmp_path / "other", {"a": {"real_A": random_image(0)}})
    with pytest.raises(SargenError, match="no generated images .*--fake_label"):
        collect_images(folder)
    with pytest.raises(SargenError, match="no real images NAME_real_C.png"):
        collect_images(write_results(tmp_path / "gatys", {"a": {"fake_B": random_image(0)}}), real_label="real_C")


def test_labels_are_detected_and_real_dir_images_paired_by_name(tmp_path):
    image = random_image(0)
    gatys = write_results(tmp_path / "gatys", {"farmland_0001": {"real_A": image, "fake_B": image, "real_B": image,
                                                                 "fake_B_step_00100": image}})
    found = collect_images(gatys)
    assert found.fake_label == "fake_B" and [pair.name for pair in found.pairs] == ["farmland_0001"]
    assert found.pairs[0].real.name == "farmland_0001_real_B.png" and len(found.real_domain) == 1
    ugatit = write_results(tmp_path / "ugatit", {name: {"real_A": image, "heatmap_A2B": image, "fake_A2B": image,
                                                        "fake_A2B2A": image} for name in ("a", "b")})
    found = collect_images(ugatit)
    assert found.fake_label == "fake_A2B" and found.real_domain == [] and found.pairs[0].real is None
    real_dir = write_results(tmp_path / "real", {"unused": {"x": image}}) / "images"
    (real_dir / "b.png").write_bytes((real_dir / "unused_x.png").read_bytes())
    found = collect_images(ugatit, real_dir=real_dir)
    assert [pair.real.name if pair.real else None for pair in found.pairs] == [None, "b.png"]
    assert len(found.real_domain) == 2


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


def evaluate_args(folder, *extra):
    """Options of a small, fast evaluation on the CPU."""
    return ["--results", str(folder), "--vgg", "vgg16", "--vgg_weights", "random", "--style_layer", "0,1",
            "--gpu_ids", "-1", *extra]


def test_evaluate_writes_json_csv_and_a_page_section(tmp_path):
    real = {name: random_image(seed, channels=3) for seed, name in enumerate(("a", "b", "c"))}
    fakes = {"a": real["a"], "b": np.clip(real["b"] + 20 / 255, 0, 1), "c": random_image(9, channels=3)}
    folder = write_results(tmp_path / "results", {name: {"real_A": real[name], "fake_B": fakes[name],
                                                         "real_B": real[name]} for name in real})
    code, _, stderr = run_script("evaluate.py", evaluate_args(folder, "--no_fid"))
    assert code == 0, stderr
    report = json.loads((folder / "metrics.json").read_text(), parse_constant=pytest.fail)  # strict JSON
    rows = {row["name"]: row for row in report["images"]}
    assert list(rows) == ["a", "b", "c"] and rows["a"]["real"] == "images/a_real_B.png"
    assert rows["a"]["psnr"] == "inf" and rows["a"]["ssim"] == 1.0 and rows["a"]["gram_distance_real"] == 0.0
    assert rows["b"]["histogram_wasserstein_real"] == pytest.approx(20 / 255, abs=1e-6)
    assert report["summary"]["psnr"]["count"] == 2 and report["summary"]["mae"]["count"] == 3
    assert report["settings"]["gram"]["weights"] == "random:seed=0,unit-variance"
    assert report["domain"]["fid"] == "skipped (--no_fid)" and report["domain"]["enl"]["real"]["count"] == 3
    with open(folder / "metrics.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["name"] for row in table] == ["a", "b", "c", "summary:mean", "summary:std"]
    assert table[0]["psnr"] == "inf" and float(table[3]["mae"]) == pytest.approx(report["summary"]["mae"]["mean"])
    html = (folder / "index.html").read_text()
    assert "Metrics (evaluate.py)" in html and 'href="metrics.csv"' in html and "images/a_fake_B.png" in html


def test_bad_results_folder_is_one_line_error(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: evaluate.main(evaluate_args(tmp_path, "--no_fid")))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"error: no images in {tmp_path / 'images'}: run test.py first, or pass the "
                                       f"folder that holds images/NAME_LABEL.png\n")


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """A random Inception-v3 state dict whose batch-norm statistics are measured on noise (else features vanish)."""
    torch.manual_seed(0)
    network = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average: one batch sets the statistics
    with torch.no_grad():
        network.train()(torch.rand(2, 3, 299, 299) * 2 - 1)
    path = tmp_path_factory.mktemp("inception") / "inception_random.pth"
    torch.save(network.state_dict(), path)
    return path


def test_fid_and_kid_with_given_weights_are_zero_for_identical_sets(tmp_path, inception_file):
    images = {name: random_image(seed, channels=3, size=24) for seed, name in enumerate("ab")}
    folder = write_results(tmp_path / "results", {name: {"fake_B": image, "real_B": image}
                                                  for name, image in images.items()})
    evaluate.main(evaluate_args(folder, "--no_gram", "--fid", "--inception_weights", str(inception_file)))
    report = json.loads((folder / "metrics.json").read_text())
    # KID(X, X) = 2/N (mean k(x, y) over x != y - mean k(x, x)) <= 0 by Cauchy-Schwarz: the unbiased estimate
    # of a zero distance from a small set.
    assert report["domain"]["fid"] == pytest.approx(0.0, abs=1e-6) and report["domain"]["kid"] <= 0.0
    assert report["settings"]["inception"].startswith("file:")
    inverted = write_results(tmp_path / "inverted", {name: {"x": 1 - image} for name, image in images.items()})
    evaluate.main(evaluate_args(folder, "--no_gram", "--real_dir", str(inverted / "images"),
                                "--inception_weights", str(inception_file)))
    domain = json.loads((folder / "metrics.json").read_text())["domain"]
    assert domain["fid"] > 1e-3 and domain["kid"] > 0.0


def test_fid_is_recorded_unavailable_without_weights_and_refused_when_asked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_cache"))
    image = random_image(0)
    folder = write_results(tmp_path / "results", {name: {"fake_B": image, "real_B": image} for name in "ab"})
    evaluate.main(evaluate_args(folder, "--no_gram"))
    fid = json.loads((folder / "metrics.json").read_text())["domain"]["fid"]
    assert fid.startswith("unavailable: ImageNet Inception-v3 weights are not in") and "empty_cache" in fid
    with pytest.raises(SargenError, match="Inception-v3 weights not found: .*missing.pth"):
        evaluate.main(evaluate_args(folder, "--no_gram", "--fid", "--inception_weights", str(tmp_path / "missing.pth")))
    single = write_results(tmp_path / "single", {"a": {"fake_B": image, "real_B": image}})
    with pytest.raises(SargenError, match="--fid: needs at least 2 generated and 2 real target images, found 1 and 1"):
        evaluate.main(evaluate_args(single, "--no_gram", "--fid"))

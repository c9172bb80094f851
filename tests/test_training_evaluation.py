"""--eval_freq: scores over steps, best_net by --best_metric across a resume; loss and metric curves on the pages."""

import json
import logging

import pytest
import torch
from conftest import make_eo2sar
from raster_helpers import sen12ms_tree
from ugatit_helpers import one_torch_thread, read_loss_log, run_entry_point, ugatit_args  # noqa: F401

import train as train_script
from data import find_dataset_class
from evaluation.training import BestCheckpoint, evenly_spaced
from models.ugatit_checkpoint import SARGEN_STATE_KEY, read_checkpoint
from options.train_options import TrainOptions
from util.curves import line_chart, read_log_curves
from util.errors import SargenError
from util.results import ImageResult, ResultsWriter


@pytest.fixture(scope="module")
def eo2sar_root(tmp_path_factory):
    """A tiny unpaired EO/SAR set: 40 px, 3 images per training domain, 3 per test domain."""
    return make_eo2sar(tmp_path_factory, "eo2sar_eval", size=40, n_train=3, n_test=3)


def test_best_checkpoint_follows_the_metric_direction_and_its_resume_state(caplog):
    best = BestCheckpoint("auto")
    best.start(["histogram_js", "gram_distance"], "settings")
    assert best.metric == "gram_distance"
    assert [best.update(step, {"gram_distance": value}) for step, value in ((2, 3.0), (4, 1.0), (6, 2.0))] == [
        True, True, False]
    assert (best.value, best.step) == (1.0, 4)
    resumed = BestCheckpoint("auto")
    resumed.load(best.state())
    resumed.start(["histogram_js", "gram_distance"], "settings")
    assert not resumed.update(8, {"gram_distance": 1.5}) and resumed.step == 4
    higher = BestCheckpoint("psnr")
    higher.start(["psnr", "ssim"], "settings")
    assert [higher.update(step, {"psnr": value}) for step, value in ((1, 20.0), (2, 25.0), (3, 22.0))] == [
        True, True, False]
    assert higher.step == 2
    with caplog.at_level(logging.WARNING, logger="sargen"):
        other = BestCheckpoint("auto")
        other.load(best.state())
        other.start(["fid", "kid"], "other settings")
    assert other.metric == "fid" and other.value is None and "starting a new best" in caplog.text
    with pytest.raises(SargenError, match="--best_metric fid: not computed here"):
        BestCheckpoint("fid").start(["gram_distance"], "settings")


def test_the_fixed_subset_is_evenly_spaced():
    assert evenly_spaced(list(range(10)), 4) == [0, 2, 5, 7] and evenly_spaced([1, 2], 5) == [1, 2]


def checkpoint_state(path):
    """sargen's resume state of a U-GAT-IT checkpoint."""
    return read_checkpoint(path)[SARGEN_STATE_KEY]


def test_eval_freq_logs_scores_keeps_the_best_net_and_survives_a_resume(eo2sar_root, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_cache"))  # no pytorch-fid weights: Gram and histograms
    plain = ugatit_args(eo2sar_root, tmp_path, "plain", "--iteration", 4, "--save_freq", 2)
    run_entry_point(train_script, plain, monkeypatch)
    args = ugatit_args(eo2sar_root, tmp_path, "scored", "--iteration", 4, "--save_freq", 2, "--eval_freq", 2,
                       "--eval_size", 2)
    run_entry_point(train_script, args, monkeypatch)
    run_dir = tmp_path / "checkpoints" / "scored"
    assert read_loss_log(run_dir / "loss_log.txt") == read_loss_log(tmp_path / "checkpoints" / "plain" / "loss_log.txt")
    curves = read_log_curves(run_dir / "metrics_log.txt")
    assert set(curves) == {"gram_distance", "histogram_wasserstein_db", "histogram_js", "texture_distance", "psnr",
                           "ssim", "mae", "rmse"}  # the example test sets are co-registered (pairing.json)
    assert [step for step, _ in curves["gram_distance"]] == [2, 4]
    best_step, best_value = min(curves["gram_distance"], key=lambda point: point[1])
    best_state = checkpoint_state(run_dir / "best_net_ugatit.pth")
    assert best_state["iteration"] == best_step
    assert best_state["evaluation"]["metric"] == "gram_distance"
    assert best_state["evaluation"]["value"] == pytest.approx(best_value, rel=1e-5)
    page = (run_dir / "web" / "index.html").read_text()
    assert "Losses over steps" in page and "Metrics over steps" in page and page.count("<polyline") >= 16

    resume = ugatit_args(eo2sar_root, tmp_path, "scored", "--iteration", 6, "--save_freq", 2, "--eval_freq", 2,
                         "--eval_size", 2, "--continue_train")
    run_entry_point(train_script, resume, monkeypatch)
    curves = read_log_curves(run_dir / "metrics_log.txt")
    assert [step for step, _ in curves["gram_distance"]] == [2, 4, 6]
    best_step, best_value = min(curves["gram_distance"], key=lambda point: point[1])
    assert checkpoint_state(run_dir / "best_net_ugatit.pth")["iteration"] == best_step
    latest = checkpoint_state(run_dir / "latest_net_ugatit.pth")
    assert latest["iteration"] == 6 and latest["evaluation"]["step"] == best_step
    assert latest["evaluation"]["value"] == pytest.approx(best_value, rel=1e-5)


def test_eval_freq_scores_the_sen12ms_test_split_by_patch(tmp_path, monkeypatch, caplog):
    """sen12ms: the test scenes' Sentinel-2 patches, translated, against their Sentinel-1 partners (VV and VH in dB),
    chosen by the dataset mode: the split's test scenes only, each patch paired with the same patch of the other
    sensor, so the paired scores are computed."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_cache"))
    root = sen12ms_tree(tmp_path / "sen12ms", scenes=4, patches=2, size=24)
    args = ugatit_args(root, tmp_path, "s12", "--dataset_mode", "sen12ms", "--output_nc", 2, "--iteration", 2,
                       "--eval_freq", 1, "--eval_size", 3)
    with caplog.at_level(logging.INFO, logger="sargen"):
        run_entry_point(train_script, args, monkeypatch)
    split = json.loads((tmp_path / "checkpoints" / "s12" / "split.json").read_text())
    sets = find_dataset_class("sen12ms").evaluation_sets(TrainOptions().parse(args, save=False))
    assert {path.name.split("_p")[0].replace("_s2_", "_") for path in sets.sources} == set(split["test"])
    assert len(sets.sources) == 2 and all(sets.partners[source].name == source.name.replace("_s2_", "_s1_")
                                          for source in sets.sources)
    assert "--eval_freq 1: 2 images of Sentinel-2 patches of the 'test' scenes of" in caplog.text
    assert "against 2 of Sentinel-1 patches (pairs by patch)" in caplog.text
    curves = read_log_curves(tmp_path / "checkpoints" / "s12" / "metrics_log.txt")
    assert {"gram_distance", "histogram_wasserstein_db", "psnr", "ssim", "mae", "rmse"} <= set(curves)
    assert [step for step, _ in curves["psnr"]] == [1, 2] and all(0 < value < 100 for _, value in curves["psnr"])
    assert (tmp_path / "checkpoints" / "s12" / "best_net_ugatit.pth").is_file()


def test_eval_freq_without_test_images_is_one_line(eo2sar_root, tmp_path, monkeypatch):
    empty = tmp_path / "data"
    (empty / "trainA").mkdir(parents=True)
    (empty / "trainB").mkdir()
    for domain in ("A", "B"):
        for path in (eo2sar_root / f"train{domain}").iterdir():
            (empty / f"train{domain}" / path.name).write_bytes(path.read_bytes())
    with pytest.raises(SargenError, match="--eval_freq: no test images to score: expected .*testA"):
        run_entry_point(train_script, ugatit_args(empty, tmp_path, "x", "--iteration", 2, "--eval_freq", 1),
                        monkeypatch)


def test_log_curves_keep_the_last_values_of_repeated_steps_and_draw_as_svg(tmp_path):
    log = tmp_path / "loss_log.txt"
    log.write_text("================ Training Loss (date) ================\n"
                   "(step: 1, lr: 0.1, time: 0.5) D: 4.0 G: 10.0\n"
                   "(step: 2, lr: 0.1, time: 0.5) D: 3.0 G: 9.0\n"
                   "================ Training Loss (date) ================\n"
                   "(step: 2, lr: 0.1, time: 0.5) D: 2.5 G: nan\n"
                   "(step: 3, lr: 0.1, time: 0.5) D: 2.0 G: 8.0\n")
    curves = read_log_curves(log)
    assert curves["D"] == [(1, 4.0), (2, 2.5), (3, 2.0)]
    chart = line_chart("G", curves["G"]).render()
    assert chart.startswith("<svg") and ">G<" in chart
    points = chart.split('points="')[1].split('"')[0].split()
    assert len(points) == 2  # the NaN of step 2 is left out
    heights = [float(point.split(",")[1]) for point in points]
    assert heights[0] < heights[1]  # 10 above 8: smaller y is higher on the chart


def test_the_test_page_draws_image_curves_and_the_training_curves(tmp_path):
    training = tmp_path / "checkpoints"
    training.mkdir()
    (training / "metrics_log.txt").write_text("(step: 2) fid: 30.0\n(step: 4) fid: 20.0\n")
    writer = ResultsWriter(tmp_path / "results", "test", training_dir=training)
    curve = [{"step": step, "seconds": 0.1 * step, "total": 10.0 / step, "style": 5.0 / step} for step in (1, 2, 3)]
    writer.add(ImageResult("a", {"fake_B": torch.zeros(1, 8, 8)}, {"total": 3.3}, curve))
    page = writer.save().read_text()
    assert "Metrics over steps" in page and "Losses over steps" not in page
    assert page.count("<svg") == 3 and ">total<" in page and ">style<" in page and "seconds" not in page

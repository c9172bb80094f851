"""Tests for feature visualization: batched objectives, channel selection, optimization, grids, pages, errors."""

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.losses import gram_matrix
from models.vgg import ChannelSelectedVGG, load_vgg_features, vgg_input
from util.errors import SargenError
from visualization import feature_optimization as fo

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = fo.Settings(kind="content", n_iter=3, lr=0.05, param="fourier", im_size=24, jitter=2, scale=0.1,
                   tv_weight=0.5, max_batch=8, seed=3)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these small ops only lose time to thread synchronization on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def features():
    """A seeded random VGG16 `features`, frozen."""
    torch.manual_seed(0)
    network, _ = load_vgg_features("vgg16", "random", 0)
    return network.requires_grad_(False).eval()


@pytest.fixture(scope="module")
def visualizer():
    """A float32 engine on the seeded random VGG16."""
    return fo.FeatureVisualizer("vgg16", "random", TINY, "cpu", "float32")


def run_script(kind, argv):
    """Parse a script's options and run it in-process."""
    fo.visualize(*fo.parse_options(kind, argv))


# ---------------------------------------------------------------- channel selection


@pytest.mark.numerics
@pytest.mark.parametrize("layer_index", [0, 1, 2, 3, 4, 8, 15])
def test_channel_selected_layer_equals_full_layer(features, layer_index):
    """Each image's selected channels equal the full layer's, for conv, ReLU and pooling layers, gradients too."""
    torch.manual_seed(layer_index)
    images = torch.rand(3, 3, 24, 24, requires_grad=True)
    channels = torch.tensor([[0, 5], [7, 7], [63, 1]])
    network = ChannelSelectedVGG(features, layer_index)
    selected = network(images, channels)
    selected.square().sum().backward()
    selected_gradient, images.grad = images.grad.clone(), None
    # Same memory layout on both sides: max-pooling may break exact ties differently in channels-last.
    layout = torch.channels_last if network.channels_last else torch.contiguous_format
    full = features[:layer_index + 1](vgg_input(images).contiguous(memory_format=layout))
    expected = full[torch.arange(3)[:, None], channels]
    torch.testing.assert_close(selected, expected, rtol=1e-4, atol=1e-5)
    expected.square().sum().backward()
    scale = images.grad.abs().max().item()
    torch.testing.assert_close(selected_gradient, images.grad, rtol=1e-3, atol=1e-5 * scale)


@pytest.mark.numerics
def test_channel_selection_on_grey_images_matches_rgb(features):
    """A 1-channel image is seen as its grey RGB copy."""
    grey = torch.rand(2, 1, 16, 16)
    network = ChannelSelectedVGG(features, 8)
    channels = torch.tensor([[3], [9]])
    torch.testing.assert_close(network(grey, channels), network(grey.expand(-1, 3, -1, -1), channels))


# ---------------------------------------------------------------- objectives


@pytest.mark.numerics
def test_batched_objective_equals_per_image_objective(features):
    """Objectives of a batch equal those of each image run alone, for channels and for pairs."""
    network = ChannelSelectedVGG(features, 8)
    images = torch.rand(4, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    for channels in (torch.tensor([[0], [4], [9], [127]]), torch.tensor([[0, 1], [2, 2], [5, 9], [100, 3]])):
        batched = fo.objective_values(network(images, channels))
        alone = torch.cat([fo.objective_values(network(images[i:i + 1], channels[i:i + 1])) for i in range(4)])
        torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)


@pytest.mark.numerics
def test_pair_objective_is_mean_product_and_scaled_gram_element(features):
    """The pair objective is mean(F_i F_j) = C x gram_matrix(layer)[i, j]; a channel's is its mean."""
    images = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    full = features[:9](vgg_input(images))
    pairs = torch.tensor([[3, 17], [6, 6]])
    values = fo.objective_values(ChannelSelectedVGG(features, 8)(images, pairs))
    gram = gram_matrix(full)
    expected = torch.stack([gram[0, 3, 17], gram[1, 6, 6]]) * full.shape[1]
    torch.testing.assert_close(values, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(values[0], (full[0, 3] * full[0, 17]).mean(), rtol=1e-4, atol=1e-6)
    single = fo.objective_values(ChannelSelectedVGG(features, 8)(images, torch.tensor([[3], [5]])))
    torch.testing.assert_close(single, torch.stack([full[0, 3].mean(), full[1, 5].mean()]), rtol=1e-4, atol=1e-6)


@pytest.mark.numerics
def test_batched_optimization_equals_one_at_a_time(visualizer):
    """Chunks of 5 or of 1 give the same images and objectives (own noise, shared transforms, per-element Adam)."""
    results = []
    for max_batch in (5, 1):
        visualizer.settings = replace(TINY, kind="style", max_batch=max_batch)
        results.append(visualizer.run_layer(3, [0, 2, 5]))
    batched, alone = results
    assert [target.channels for target in batched.targets] == [(0, 0), (0, 2), (0, 5), (2, 2), (2, 5), (5, 5)]
    torch.testing.assert_close(batched.images, alone.images, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(batched.final_objective, alone.final_objective, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("param", ["fourier", "pixel"])
def test_optimization_raises_each_channel_well_above_noise(visualizer, param):
    """After 30 steps every channel's mean activation is several times that of its starting noise."""
    visualizer.settings = replace(TINY, n_iter=30, param=param, lr=fo.DEFAULT_LR[param], im_size=24,
                                  jitter=2 if param == "fourier" else 0)
    result = visualizer.run_layer(8, [0, 1, 2, 3])
    start, final = result.start_objective, result.final_objective
    assert (final > 3 * start + 0.05).all(), (start, final)
    assert result.images.min() >= 0 and result.images.max() <= 1


def test_bfloat16_objectives_stay_close_to_float32(features):
    """bfloat16 autocast changes the objectives by well under 5 % (the engine's default on capable CPUs)."""
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    network = ChannelSelectedVGG(features, 15)
    channels = torch.tensor([[0, 1], [2, 3], [4, 4], [5, 9]])
    exact = fo.objective_values(network(images, channels))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rounded = fo.objective_values(network(images, channels))
    assert ((rounded - exact).abs() <= 0.05 * exact.abs() + 1e-4).all(), (exact, rounded)


def test_fourier_images_lie_in_unit_range_and_start_near_grey():
    """The Fourier parametrization gives images in (0, 1) with 1/f scaled spectra, grey RGB for 1 channel."""
    generator = torch.Generator().manual_seed(0)
    images = fo.FourierImages(torch.stack([fo.FourierImages.initial_noise(generator, 3, 32) for _ in range(2)]))()
    assert images.shape == (2, 3, 32, 32)
    assert 0 < images.min() and images.max() < 1 and abs(images.mean().item() - 0.5) < 0.1
    grey = fo.FourierImages(fo.FourierImages.initial_noise(generator, 1, 16)[None])()
    assert grey.shape == (1, 1, 16, 16)


def test_transforms_are_shared_by_the_batch_and_seeded():
    """The same generator state gives the same transform; every image of a batch moves alike."""
    image = torch.rand(1, 1, 20, 20)
    batch = torch.cat([image, image])
    first = fo.random_transform(batch, 3, 0.1, torch.Generator().manual_seed(5))
    again = fo.random_transform(image, 3, 0.1, torch.Generator().manual_seed(5))
    torch.testing.assert_close(first[0], first[1])
    torch.testing.assert_close(first[:1], again)


def test_total_variation_penalizes_noise_not_flat_images():
    """A flat image has no total variation, a checkerboard the most."""
    flat = torch.full((1, 1, 8, 8), 0.3)
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]).remainder(2).float()[None, None]
    assert fo.total_variation(flat).item() == 0
    assert fo.total_variation(checker).item() == pytest.approx(2.0)


# ---------------------------------------------------------------- grids and files


def test_content_grid_is_square_reading_order_with_blank_cells():
    """5 channels: 2 rows of 3 cells in reading order, the sixth cell white."""
    channels = [4, 9, 1, 7, 0]
    targets = fo.make_targets("content", channels, 1)
    images = torch.stack([torch.full((1, 4, 4), value / 10) for value in range(5)])
    shape = fo.grid_shape("content", len(channels))
    assert shape == (2, 3)
    grid = fo.make_grid(images, fo.grid_cells("content", channels, targets), shape, gap=1)
    assert grid.shape == (9, 14, 1)
    for index in range(5):
        row, column = divmod(index, 3)
        cell = grid[row * 5:row * 5 + 4, column * 5:column * 5 + 4]
        assert (cell == round(index / 10 * 255)).all()
    assert (grid[5:9, 10:14] == 255).all() and (grid[4, :] == 255).all()


def test_style_grid_is_upper_triangular_row_i_column_j():
    """Pairs (i, j), i <= j, sit at row i, column j; cells below the diagonal stay white."""
    channels = [2, 5, 8]
    targets = fo.make_targets("style", channels, 1)
    assert [target.channels for target in targets] == [(2, 2), (2, 5), (2, 8), (5, 5), (5, 8), (8, 8)]
    values = {target.channels: 10 * (index + 1) for index, target in enumerate(targets)}
    images = torch.stack([torch.full((3, 2, 2), values[target.channels] / 255) for target in targets])
    grid = fo.make_grid(images, fo.grid_cells("style", channels, targets), fo.grid_shape("style", 3), gap=1)
    assert grid.shape == (8, 8, 3)
    for row, first in enumerate(channels):
        for column, second in enumerate(channels):
            cell = grid[row * 3:row * 3 + 2, column * 3:column * 3 + 2]
            expected = values[(first, second)] if column >= row else 255
            assert (cell == expected).all(), (row, column)


def test_file_names():
    """channel_C_trial_T.png and channel_I_J_trial_T.png; grid.png then grid_trial_T.png."""
    assert fo.Target((12,), 0).file_name == "channel_12_trial_0.png"
    assert fo.Target((3, 40), 2).file_name == "channel_3_40_trial_2.png"
    assert [fo.grid_name(trial) for trial in range(3)] == ["grid.png", "grid_trial_1.png", "grid_trial_2.png"]


def test_style_script_writes_layout_log_index_and_options(tmp_path):
    """Layer_K holds one PNG per pair and trial, the grids, the log; index.html links every layer's grids."""
    run_script("style", ["--model", "vgg16", "--layers_ids", "3,relu2_1", "--n_channels", "3", "--n_iter", "2",
                         "--im_size", "16", "--n_trial", "2", "--results_dir", str(tmp_path), "--name", "demo",
                         "--vgg_weights", "random", "--gpu_ids", "-1", "--precision", "float32"])
    model_dir = tmp_path / "demo" / "VGG16"
    pairs = ["0_0", "0_1", "0_2", "1_1", "1_2", "2_2"]
    for layer_index in (3, 6):
        names = {path.name for path in (model_dir / f"Layer_{layer_index}").iterdir()}
        expected = {f"channel_{pair}_trial_{trial}.png" for pair in pairs for trial in (0, 1)}
        assert names == expected | {"grid.png", "grid_trial_1.png", "objective_log.txt"}
        log = (model_dir / f"Layer_{layer_index}" / "objective_log.txt").read_text()
        assert len([line for line in log.splitlines() if re.match(r"\d+,\d+\t\d\t", line)]) == 12
        with Image.open(model_dir / f"Layer_{layer_index}" / "grid.png") as grid:
            assert grid.size == (3 * 16 + 2 * fo.CELL_GAP,) * 2
    index = (model_dir / "index.html").read_text()
    links = set(re.findall(r'href="([^"]+)"', index))
    assert {f"Layer_{k}/{grid}" for k in (3, 6) for grid in ("grid.png", "grid_trial_1.png")} <= links
    assert set(re.findall(r'src="([^"]+)"', index)) == {f"Layer_{k}/channel_{pair}_trial_{trial}.png"
                                                         for k in (3, 6) for pair in pairs for trial in (0, 1)}
    # every cell on the page names its pair (i, j) and its final objective, as the log has it; below the diagonal
    # is blank; rows and columns are labelled with the channel
    log_rows = [line.split("\t") for line in (model_dir / "Layer_3" / "objective_log.txt").read_text().splitlines()
                if re.match(r"\d+,\d+\t\d\t", line)]
    finals = {(row[0], int(row[1])): row[3] for row in log_rows}
    tables = re.findall(r"<table.*?</table>", index, re.DOTALL)
    assert len(tables) == 4  # 2 layers x 2 trials
    for trial, table in enumerate(tables[:2]):
        cells = re.findall(r'<img src="Layer_3/channel_(\d+)_(\d+)_trial_(\d)\.png"[^>]*>\s*</a>\s*<br>\s*'
                           r'<span>\((\d+), (\d+)\)</span>\s*<br>\s*<span>([^<]+)</span>', table)
        assert len(cells) == 6
        for first, second, cell_trial, label_i, label_j, value in cells:
            assert (first, second, int(cell_trial)) == (label_i, label_j, trial)
            assert value == finals[(f"{first},{second}", trial)]
        assert table.count("<td") - len(cells) == 3  # (1, 0), (2, 0), (2, 1): blank
        assert "<th>j = 2</th>" in table and "<th>i = 1</th>" in table
    assert "--layers_ids" not in (model_dir / "style_opt.txt").read_text()
    assert "layers_ids: 3,relu2_1" in (model_dir / "style_opt.txt").read_text()


def test_content_script_grey_images_and_index_keeps_earlier_layers(tmp_path):
    """--input_nc 1 writes grey PNGs; a later run for another layer keeps the earlier layer on the page."""
    common = ["--n_channels", "2", "--n_iter", "2", "--im_size", "16", "--results_dir", str(tmp_path),
              "--vgg_weights", "random", "--gpu_ids", "-1", "--input_nc", "1", "--model", "VGG19"]
    run_script("content", common + ["--layers_ids", "1"])
    run_script("content", common + ["--layers_ids", "relu2_1", "--channels", "5,9"])
    model_dir = tmp_path / "content_visualization" / "VGG19"
    with Image.open(model_dir / "Layer_1" / "channel_1_trial_0.png") as image:
        assert image.mode == "L" and image.size == (16, 16)
    assert (model_dir / "Layer_6" / "channel_9_trial_0.png").is_file()
    index = (model_dir / "index.html").read_text()
    assert {"Layer_1/grid.png", "Layer_6/grid.png"} <= set(re.findall(r'href="([^"]+)"', index))
    assert set(re.findall(r'src="([^"]+)"', index)) == {f"Layer_{layer}/channel_{channel}_trial_0.png"
                                                         for layer, channel in ((1, 0), (1, 1), (6, 5), (6, 9))}
    final = (model_dir / "Layer_6" / "objective_log.txt").read_text().split("\n9\t0\t")[1].split("\t")[1].strip()
    assert re.search(rf"channel_9_trial_0\.png.*?<span>channel 9</span>\s*<br>\s*<span>{re.escape(final)}</span>",
                     index, re.DOTALL)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("argv, message", [
    (["--layers_ids", "31"], "features indices 0-30"),
    (["--layers_ids", "relu9_9"], "valid names are conv1_1"),
    (["--layers_ids", " "], "0-30"),
    (["--model", "VGG11"], "VGG16, VGG19"),
    (["--channels", "3,64"], "--channels 64: relu1_2 (layer 3) has 64 channels: use 0-63"),
    (["--channels", "a"], "channel numbers 0-63"),
    (["--n_channels", "65"], "--n_channels 65: relu1_2 (layer 3) has 64 channels: use 1-64"),
    (["--layers_ids", "30", "--im_size", "16"], "use at least"),
    (["--vgg_weights", "/nonexistent/vgg.pth"], "--vgg_weights file not found"),
])
def test_bad_options_give_one_clear_error_and_write_nothing(tmp_path, argv, message):
    """Bad layers, channels, sizes or weights: a SargenError naming the valid range, before any file is written."""
    with pytest.raises(SargenError, match=re.escape(message)):
        run_script("content", ["--results_dir", str(tmp_path), "--vgg_weights", "random", "--gpu_ids", "-1",
                               "--n_iter", "1", "--im_size", "16"] + argv)
    assert not any(tmp_path.iterdir())


def test_script_from_repo_root_prints_one_line_error():
    """`python visualization/StyleVisualization.py` runs from the repository root; bad input is one line, exit 2."""
    completed = subprocess.run([sys.executable, "visualization/StyleVisualization.py", "--layers_ids", "3",
                                "--channels", "0,99", "--vgg_weights", "random", "--gpu_ids", "-1"],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert completed.stderr.strip().splitlines()[-1] == (
        "error: --channels 99: relu1_2 (layer 3) has 64 channels: use 0-63")


def test_grids_are_written_atomically_next_to_unchanged_earlier_results(tmp_path):
    """A failed run leaves earlier results as they were."""
    good = ["--n_channels", "2", "--n_iter", "1", "--im_size", "16", "--results_dir", str(tmp_path),
            "--vgg_weights", "random", "--gpu_ids", "-1"]
    run_script("content", good)
    grid = tmp_path / "content_visualization" / "VGG16" / "Layer_3" / "grid.png"
    before = grid.read_bytes()
    with pytest.raises(SargenError):
        run_script("content", good + ["--channels", "70"])
    assert grid.read_bytes() == before
    assert not [path for path in grid.parent.iterdir() if path.name.startswith(".")]


def test_pixel_param_is_the_original_method_by_default():
    """--param pixel alone turns off jitter, scaling and the penalty and uses the pixel step size."""
    opt, _ = fo.parse_options("style", ["--param", "pixel", "--gpu_ids", "-1"])
    assert (opt.jitter, opt.scale, opt.tv_weight, opt.lr, opt.im_size) == (0, 0.0, 0.0, fo.DEFAULT_LR["pixel"], 32)
    opt, _ = fo.parse_options("content", ["--gpu_ids", "-1"])
    assert (opt.param, opt.jitter, opt.im_size, opt.layer_indices) == ("fourier", 4, 64, [3])
    assert np.isclose(opt.scale, fo.DEFAULT_SCALE) and opt.vgg_weights == "imagenet"


def test_save_epoch_writes_intermediate_images(tmp_path):
    """--save_epoch N also saves every image each N steps, named by step."""
    run_script("content", ["--n_channels", "2", "--n_iter", "4", "--save_epoch", "2", "--im_size", "16",
                           "--max_batch", "1", "--results_dir", str(tmp_path), "--vgg_weights", "random",
                           "--gpu_ids", "-1"])
    layer = tmp_path / "content_visualization" / "VGG16" / "Layer_3"
    saved = sorted(path.name for path in layer.glob("*_iter_*.png"))
    assert saved == [f"channel_{channel}_trial_0_iter_{step}.png" for channel in (0, 1) for step in (2, 4)]

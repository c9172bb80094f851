"""Real Sentinel-1/2 layouts end to end: SEN12MS and SEN1-2 trees, scene-wise splits, paired test pages, a 3 -> 2
channel U-GAT-IT whose checkpoint carries its radiometry to app.py, and the one-line refusals."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_script
from PIL import Image
from raster_helpers import (
    EPSG,
    db_to_power,
    north_up,
    optical_bands,
    read_raster_file,
    sar_db_bands,
    sen12ms_tree,
    write_raster,
)
from test_cli import assert_one_line_error
from ugatit_helpers import one_torch_thread, run_entry_point  # noqa: F401  (autouse fixture)

import test as test_script
import train as train_script
from data import create_dataset
from data.image_io import write_image
from data.pairing import write_pairing
from data.scene_split import make_split
from datasets.make_dataset import main as make_dataset
from models.file_translation import app_main
from models.ugatit_checkpoint import SARGEN_STATE_KEY, read_checkpoint
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.cli import run_main
from util.errors import SargenError

TINY = ["--gpu_ids", "-1", "--num_threads", "0", "--img_size", "32", "--ch", "8", "--n_res", "1", "--light",
        "--n_dis", "5"]
TRAINING = ["--display_id", "0", "--print_freq", "1"]


@pytest.fixture(scope="module")
def sen12ms_root(tmp_path_factory):
    """4 scenes x 2 patches: 12-band int16 Sentinel-2 (B4, B3, B2 constant) and 2-band float32 dB Sentinel-1."""
    return sen12ms_tree(tmp_path_factory.mktemp("sen12ms"))


def options(root, work, *extra, train=True, name="s12"):
    """Parsed sen12ms options of a tiny run (no option file written)."""
    args = ["--model", "ugatit", "--dataset_mode", "sen12ms", "--dataroot", str(root), "--name", name,
            "--checkpoints_dir", str(work), *TINY, *(TRAINING if train else []), *map(str, extra)]
    return (TrainOptions() if train else TestOptions()).parse(args, save=False)


def scene_of(path):
    """ROIs<id>_<season>_<scene> of a patch path."""
    parts = Path(path).stem.split("_")
    return "_".join(parts[:2] + [parts[3]])


def test_training_items_are_unpaired_and_read_with_each_sensors_defaults(tmp_path):
    """S2 bands 4,3,2 (1500, 1000, 500) reach the network as R, G, B = 1, 0, -1; S1 VV -10 and VH -17 dB in the
    -25..0 dB window as 0.6 and 0.32 (model range 0.2 and -0.36)."""
    root = sen12ms_tree(tmp_path / "data", s1=lambda size, seed: sar_db_bands(size, seed, vv_db=-10.0))
    dataset = create_dataset(options(root, tmp_path))
    item = dataset[(0, 3, 7)]
    assert item["A"].shape == (3, 32, 32) and item["B"].shape == (2, 32, 32)
    assert torch.allclose(item["A"][:, 10, 10], torch.tensor([1.0, 0.0, -1.0]))
    assert torch.allclose(item["B"][:, 10, 10], torch.tensor([0.2, -0.36]), atol=1e-5)
    assert "_s2_" in item["A_paths"] and "_s1_" in item["B_paths"]
    assert Path(item["A_paths"]).name.replace("_s2_", "_s1_") != Path(item["B_paths"]).name  # unpaired: 0 vs 3


def test_split_is_by_scene_stable_and_reused(sen12ms_root, tmp_path):
    """No scene has patches in both splits; the split is written once and test runs read the same one."""
    train = create_dataset(options(sen12ms_root, tmp_path))
    split = json.loads((tmp_path / "s12" / "split.json").read_text())
    test = create_dataset(options(sen12ms_root, tmp_path, train=False))
    train_scenes = {scene_of(path) for domain in "AB" for path in train.paths[domain]}
    test_scenes = {scene_of(path) for path in test.paths["A"]}
    assert train_scenes == set(split["train"]) and test_scenes == set(split["test"])
    assert not train_scenes & test_scenes and len(train_scenes | test_scenes) == 4
    assert make_split(train_scenes | test_scenes, 0.2, 0) == split  # seeded: the same split on every run
    create_dataset(options(sen12ms_root, tmp_path / "other"))
    assert json.loads((tmp_path / "other" / "s12" / "split.json").read_text()) == split


def test_split_file_chooses_the_scenes(sen12ms_root, tmp_path):
    split_file = tmp_path / "mine.json"
    split_file.write_text(json.dumps({"train": ["ROIs1158_spring_1"], "test": ["ROIs1868_summer_2"]}))
    dataset = create_dataset(options(sen12ms_root, tmp_path, "--split_file", split_file, train=False))
    assert {scene_of(path) for path in dataset.paths["A"]} == {"ROIs1868_summer_2"}
    assert not (tmp_path / "s12" / "split.json").exists()


def test_test_items_hold_the_co_registered_partner(sen12ms_root, tmp_path):
    dataset = create_dataset(options(sen12ms_root, tmp_path, train=False))
    item = dataset[0]
    assert item["A_paths"].replace("s2_", "s1_").replace("_s2_", "_s1_") == item["B_paths"]
    assert item["B"].shape == (2, 32, 32)


def test_sen12_mode_reads_png_trees_as_eight_bit(tmp_path):
    """SEN1-2: the same names with PNG files; 8-bit RGB (domain A) and grey VV (domain B)."""
    for scene in (1, 2):
        for patch in (1, 2):
            for sensor, shape in (("s1", (20, 20)), ("s2", (20, 20, 3))):
                folder = tmp_path / "data" / "ROIs1158_spring" / f"{sensor}_{scene}"
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full(shape, 51 * patch, np.uint8)).save(
                    folder / f"ROIs1158_spring_{sensor}_{scene}_p{patch}.png")
    args = ["--model", "ugatit", "--dataset_mode", "sen12", "--dataroot", str(tmp_path / "data"), "--name", "x",
            "--checkpoints_dir", str(tmp_path), *TINY]
    opt = TestOptions().parse(args, save=False)
    assert (opt.input_nc, opt.output_nc) == (3, 1)
    dataset = create_dataset(opt)
    item = dataset[0]
    assert item["B"].shape == (1, 32, 32) and item["A"].shape == (3, 32, 32)
    patch = int(item["A_paths"].split("_p")[-1].split(".")[0])
    assert torch.allclose(item["B"], torch.full_like(item["B"], 51 * patch / 255 * 2 - 1), atol=1e-5)


def test_wrong_layout_names_the_expected_pattern_and_what_was_found(sen12ms_root, tmp_path):
    (tmp_path / "trainA").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "trainA" / "building_0000.png")
    with pytest.raises(SargenError, match=r"^--dataset_mode sen12ms expects .*ROIs<id>_<season>/s1_<scene>/"
                                          r"ROIs<id>_<season>_s1_<scene>_p<patch>.tif.*: found 1 other image "
                                          r"file\(s\), e.g. trainA/building_0000.png$"):
        create_dataset(options(tmp_path, tmp_path))
    with pytest.raises(SargenError, match=r"expects .*p<patch>.png .*\(a --dataset_mode sen12ms tree\?\)$"):
        create_dataset(TrainOptions().parse(["--model", "ugatit", "--dataset_mode", "sen12", "--dataroot",
                                             str(sen12ms_root), "--checkpoints_dir", str(tmp_path), *TINY,
                                             *TRAINING],
                                            save=False))


@pytest.fixture(scope="module")
def unaligned_geotiffs(tmp_path_factory):
    """trainA/testA: raw 12-band int16 Sentinel-2 GeoTIFFs; trainB/testB: 2-band float32 dB Sentinel-1 ones."""
    root = tmp_path_factory.mktemp("s1s2")
    for index in range(3):
        for phase in ("train", "test"):
            write_raster(root / f"{phase}A" / f"patch_{index}.tif", optical_bands(seed=index))
            write_raster(root / f"{phase}B" / f"patch_{index}.tif", sar_db_bands(seed=index))
    return root


@pytest.fixture(scope="module")
def trained_3_to_2(unaligned_geotiffs, tmp_path_factory):
    """A 3 -> 2 channel U-GAT-IT trained 2 steps on the raw files with per-domain options; its checkpoint."""
    work = tmp_path_factory.mktemp("run")
    args = ["--model", "ugatit", "--dataroot", unaligned_geotiffs, "--name", "eo2s1", "--checkpoints_dir", work,
            *TINY, *TRAINING, "--output_nc", 2, "--bands_A", "4,3,2", "--intensity_scaling_A", "percentile",
            "--intensity_scaling_B", "db", "--input_unit_B", "db", "--db_window_B=-25,0", "--iteration", 2]
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_entry_point(train_script, args, monkeypatch)
    return work / "eo2s1" / "latest_net_ugatit.pth"


def test_checkpoint_records_each_domains_radiometry(trained_3_to_2):
    record = read_checkpoint(trained_3_to_2)[SARGEN_STATE_KEY]["radiometry"]
    assert record["A"] == {"intensity_scaling": "percentile", "percentiles": [2.0, 98.0], "db_window": [-25.0, 0.0],
                           "input_unit": "linear", "bands": [4, 3, 2], "nodata": None, "channels": 3}
    assert record["B"] == {"intensity_scaling": "db", "percentiles": [2.0, 98.0], "db_window": [-25.0, 0.0],
                           "input_unit": "db", "bands": None, "nodata": None, "channels": 2}


def test_app_writes_two_band_db_geotiffs_with_the_inputs_georeferencing(trained_3_to_2, tmp_path):
    """No radiometry flag: the record reads bands 4,3,2 of the raw file and writes VV/VH dB in -25..0."""
    source = write_raster(tmp_path / "scene.tif", optical_bands(size=40, seed=9), origin=(600000.0, 4500000.0))
    app_main(["--model_path", str(trained_3_to_2), "--img", str(source), "--out", str(tmp_path / "out"),
              "--device", "cpu", "--precision", "float32"])
    bands, crs, transform = read_raster_file(tmp_path / "out" / "gen_sar_scene.tif")
    assert bands.shape == (2, 40, 40) and bands.dtype == np.float32
    assert crs.to_epsg() == EPSG and transform == north_up((600000.0, 4500000.0))
    assert -25.0 <= bands.min() and bands.max() <= 0.0 and bands.std() > 0
    app_main(["--model_path", str(trained_3_to_2), "--img", str(source), "--out", str(tmp_path / "tiled.tif"),
              "--device", "cpu", "--precision", "float32", "--tile", "32", "--overlap", "8"])
    tiled = read_raster_file(tmp_path / "tiled.tif")[0]
    assert tiled.shape == (2, 40, 40) and -25.0 <= tiled.min() and tiled.max() <= 0.0
    app_main(["--model_path", str(trained_3_to_2), "--img", str(source), "--out", str(tmp_path / "png.png"),
              "--device", "cpu", "--precision", "float32"])
    with Image.open(tmp_path / "png.png") as image:  # 8-bit outputs: the dual-pol false colour
        assert image.mode == "RGB" and image.size == (40, 40)


def test_explicit_output_options_override_the_record(trained_3_to_2, tmp_path, caplog):
    source = write_raster(tmp_path / "scene.tif", optical_bands(size=32, seed=3))
    app_main(["--model_path", str(trained_3_to_2), "--img", str(source), "--out", str(tmp_path / "a.tif"),
              "--device", "cpu", "--precision", "float32"])
    app_main(["--model_path", str(trained_3_to_2), "--img", str(source), "--out", str(tmp_path / "b.tif"),
              "--device", "cpu", "--precision", "float32", "--out_unit", "linear", "--out_db_window=-30,5"])
    db = read_raster_file(tmp_path / "a.tif")[0]
    power = read_raster_file(tmp_path / "b.tif")[0]
    assert np.allclose(power, db_to_power(-30.0 + (db + 25.0) / 25.0 * 35.0), rtol=1e-4)
    assert "outputs differ from training: --out_db_window -30,5 (training: -25,0); --out_unit linear " \
           "(training: db)" in caplog.text


def test_mismatched_image_and_checkpoint_are_refused(trained_3_to_2, tmp_path):
    """A 2-band SAR file for the optical input (band count) and an 8-bit file for dB input (unit): one line each."""
    radar = write_raster(tmp_path / "radar.tif", sar_db_bands())
    with pytest.raises(SargenError, match=r"^--bands_A 4,3,2 \(recorded in .*latest_net_ugatit.pth\): .*radar.tif "
                                          r"has 2 band\(s\), no band 4$"):
        app_main(["--model_path", str(trained_3_to_2), "--img", str(radar), "--out", str(tmp_path), "--device", "cpu"])
    eight_bit = write_raster(tmp_path / "levels.tif", np.full((2, 16, 16), 100, np.uint8))
    with pytest.raises(SargenError, match=r"levels.tif holds uint8 integers, not dB values, but --input_unit_B db "
                                          r"\(recorded in"):
        app_main(["--model_path", str(trained_3_to_2), "--img", str(eight_bit), "--out", str(tmp_path),
                  "--direction", "BtoA", "--device", "cpu"])
    assert not list(tmp_path.glob("gen_sar_*"))


def test_test_page_shows_real_b_beside_the_translation(trained_3_to_2, unaligned_geotiffs, tmp_path, monkeypatch):
    """test.py reads testA/testB with the record (no flag) and puts the co-registered real_B after fake_A2B."""
    run_entry_point(test_script, ["--model", "ugatit", "--dataroot", unaligned_geotiffs, "--name", "eo2s1",
                                  "--checkpoints_dir", trained_3_to_2.parent.parent, "--results_dir", tmp_path,
                                  "--gpu_ids", "-1", "--num_threads", "0"], monkeypatch)
    html = (tmp_path / "eo2s1" / "test_latest" / "index.html").read_text()
    assert html.index("patch_0_fake_A2B.png") < html.index("patch_0_real_B.png") < html.index("patch_0_heatmap_A2B2A")
    assert "domain B read as: bands all, db window -25,0 dB (files in db), 2 channel(s)" in html
    with Image.open(tmp_path / "eo2s1" / "test_latest" / "images" / "patch_0_real_B.png") as image:
        assert image.mode == "RGB"  # VV/VH in false colour


def test_checkpoint_without_record_and_geotiff_input_says_what_to_pass(trained_3_to_2, tmp_path):
    """A reference-format file (no record) given a GeoTIFF: one line naming the options; no output overwritten."""
    payload = read_checkpoint(trained_3_to_2)
    torch.save({name: payload[name] for name in ("genA2B", "genB2A")}, tmp_path / "plain.pt")
    source = write_raster(tmp_path / "scene.tif", optical_bands(size=16))
    existing = write_image(np.zeros((4, 4), np.uint8), tmp_path / "gen_sar_scene.tif")  # an earlier output
    before = existing.read_bytes()
    code, _, stderr = run_script("app.py", ["--model_path", tmp_path / "plain.pt", "--img", source, "--out", tmp_path,
                                            "--device", "cpu"])
    assert_one_line_error(code, stderr, "plain.pt records no radiometry", "scene.tif", "--bands_A",
                          "--intensity_scaling_A", "--out_db_window")
    assert existing.read_bytes() == before


@pytest.mark.parametrize("argv", [["--db_window_B=0,-25"], ["--bands_A", "0"], ["--percentiles_A", "5,120"]])
def test_bad_option_values_stop_before_anything_runs(tmp_path, argv, capsys):
    with pytest.raises(SystemExit) as stop:
        TrainOptions().parse(["--model", "ugatit", "--dataroot", str(tmp_path), *argv], save=False)
    stderr = capsys.readouterr().err
    assert stop.value.code == 2 and f"error: argument {argv[0].split('=')[0]}" in stderr.splitlines()[-1]


def test_unknown_band_stops_training_with_one_line_and_no_checkpoint(unaligned_geotiffs, tmp_path, capsys):
    """The entry point's handling (util.cli.run_main), in this process: one line, exit code 2, nothing saved."""
    argv = ["--model", "ugatit", "--dataroot", str(unaligned_geotiffs), "--name", "bad", "--checkpoints_dir",
            str(tmp_path), *TINY, *TRAINING, "--bands_A", "14", "--iteration", "1"]
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: train_script.main(argv))
    assert_one_line_error(stop.value.code, capsys.readouterr().err, "--bands_A 14: ", "has 12 band(s), no band 14")
    assert not list((tmp_path / "bad").glob("*.pth"))


def test_linear_power_tree_reads_like_the_db_tree(tmp_path, sen12ms_root):
    """The same Sentinel-1 patches stored as linear power and read with --input_unit_B linear give the same input."""
    power_root = sen12ms_tree(tmp_path / "power", s1=lambda size, seed: db_to_power(sar_db_bands(size, seed)))
    power = create_dataset(options(power_root, tmp_path, "--input_unit_B", "linear", train=False, name="p"))
    decibels = create_dataset(options(sen12ms_root, tmp_path, train=False, name="p"))
    assert torch.allclose(power[0]["B"], decibels[0]["B"], atol=1e-4)


def test_four_to_two_channel_network_trains_and_shows_its_images(unaligned_geotiffs, tmp_path, monkeypatch):
    """--input_nc 4 (B, G, R, NIR) --output_nc 2 (VV, VH): a step runs, and the training page shows RGB images."""
    run_entry_point(train_script, ["--model", "ugatit", "--dataroot", unaligned_geotiffs, "--name", "four",
                                   "--checkpoints_dir", tmp_path, *TINY, *TRAINING, "--input_nc", 4, "--output_nc",
                                   2, "--bands_A", "4,3,2,8", "--intensity_scaling_B", "db", "--input_unit_B", "db",
                                   "--iteration", 1, "--update_html_freq", 1], monkeypatch)
    payload = read_checkpoint(tmp_path / "four" / "latest_net_ugatit.pth")
    assert payload["genA2B"]["DownBlock.1.weight"].shape[1] == 4
    assert payload["disGB"]["model.1.weight_orig"].shape[1] == 2
    for label in ("real_A", "fake_A2B", "real_B", "fake_B2A", "heatmap_B2A"):
        with Image.open(tmp_path / "four" / "web" / "images" / f"step00000001_{label}.png") as image:
            assert image.mode == "RGB", label


def test_example_generator_writes_a_co_registered_sen12ms_tree(tmp_path):
    """make_dataset.py sen12ms: int16 13-band reflectance and float32 VV/VH dB patches on the same grid, readable
    by --dataset_mode sen12ms, byte-identical between runs."""
    for out in ("a", "b"):
        assert make_dataset(["sen12ms", "--out", str(tmp_path / out), "--size", "16", "--n_scenes", "2"]) == 0
    files = sorted(path.relative_to(tmp_path / "a") for path in (tmp_path / "a").rglob("*.tif"))
    assert len(files) == 2 * 2 * 9 and str(files[0]) == "ROIs1158_spring/s1_1/ROIs1158_spring_s1_1_p1.tif"
    assert all((tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes() for path in files)
    partner = str(files[0]).replace("_s1_", "_s2_").replace("/s1_", "/s2_")
    optical, optical_crs, optical_grid = read_raster_file(tmp_path / "a" / partner)
    radar, radar_crs, radar_grid = read_raster_file(tmp_path / "a" / files[0])
    assert optical.shape == (13, 16, 16) and optical.dtype == np.int16 and 0 <= optical.min() <= optical.max() <= 10000
    assert radar.shape == (2, 16, 16) and radar.dtype == np.float32 and -40 < radar.mean() < 0
    assert (optical_crs, optical_grid) == (radar_crs, radar_grid) and optical_crs.to_epsg() == 32633
    dataset = create_dataset(options(tmp_path / "a", tmp_path, train=False))
    assert len(dataset) == 9 and dataset[0]["B"].shape == (2, 32, 32)


def test_test_partners_follow_the_name_unless_pairing_json_says_unpaired(tmp_path):
    """testB/NAME is testA/NAME's partner; a pairing.json that records the folders as unpaired turns that off."""
    for folder in ("trainA", "trainB", "testA", "testB"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / folder / "scene.png")
    args = ["--model", "ugatit", "--dataroot", str(tmp_path), "--checkpoints_dir", str(tmp_path), *TINY]
    assert "B" in create_dataset(TestOptions().parse(args, save=False))[0]
    write_pairing(tmp_path, co_registered=[], unpaired=[("testA", "testB")])
    assert "B" not in create_dataset(TestOptions().parse(args, save=False))[0]

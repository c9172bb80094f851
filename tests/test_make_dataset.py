"""Tests of datasets/make_dataset.py: folder layout, determinism and the physics of the synthetic data."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.pairing import CO_REGISTERED, UNPAIRED, folder_pairing, read_pairing

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "datasets" / "make_dataset.py"


def load_module():
    """Import datasets/make_dataset.py by path (datasets/ is a folder of data, not a package)."""
    spec = importlib.util.spec_from_file_location("make_dataset", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_dataset", module)
    spec.loader.exec_module(module)
    return module


md = load_module()
SMALL = ["--size", "32", "--n_train", "5", "--n_test", "2"]


def png_names(folder):
    return sorted(path.name for path in Path(folder).glob("*.png"))


def read(path):
    with Image.open(path) as image:
        return image.mode, np.asarray(image)


def tree_bytes(root):
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(Path(root).rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def x2ka_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("x2ka")
    assert md.main(["x2ka", "--out", str(out), *SMALL]) == 0
    return out


@pytest.fixture(scope="module")
def eo2sar_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("eo2sar")
    assert md.main(["eo2sar", "--out", str(out), *SMALL]) == 0
    return out


def test_x2ka_layout_pairs_and_images(x2ka_dir):
    assert sorted(p.relative_to(x2ka_dir).as_posix() for p in x2ka_dir.rglob("*") if p.is_dir()) == \
        ["test", "test/A", "test/B", "train", "train/A", "train/B"]
    for split, count in (("train", 5), ("test", 2)):
        names_a, names_b = png_names(x2ka_dir / split / "A"), png_names(x2ka_dir / split / "B")
        assert len(names_a) == count and names_a == names_b  # pairs share the file name
        for name in names_a:
            assert md.NAME_PATTERN.match(name)
            for side in "AB":
                mode, array = read(x2ka_dir / split / side / name)
                assert mode == "RGB" and array.shape == (32, 32, 3)
            assert read(x2ka_dir / split / "A" / name)[1].tobytes() != read(x2ka_dir / split / "B" / name)[1].tobytes()
    assert {name.split("_")[0] for name in png_names(x2ka_dir / "train" / "A")} == set(md.CATEGORIES)


def test_eo2sar_layout_and_channels(eo2sar_dir):
    assert sorted(p.name for p in eo2sar_dir.iterdir()) == ["pairing.json", "testA", "testB", "trainA", "trainB"]
    for folder, count, mode, shape in (("trainA", 5, "RGB", (32, 32, 3)), ("testA", 2, "RGB", (32, 32, 3)),
                                       ("trainB", 5, "L", (32, 32)), ("testB", 2, "L", (32, 32))):
        names = png_names(eo2sar_dir / folder)
        assert len(names) == count
        for name in names:
            assert read(eo2sar_dir / folder / name)[0] == mode
            assert read(eo2sar_dir / folder / name)[1].shape == shape
    for folder in ("trainA", "trainB"):
        assert {name.split("_")[0] for name in png_names(eo2sar_dir / folder)} == set(md.CATEGORIES)


def water_mask(optical):
    """Pixels of an optical RGB example image that show water (clearly blue)."""
    red, green, blue = (optical[..., channel].astype(int) for channel in range(3))
    return (blue > red + 20) & (blue > green)


def water_contrast(optical, sar):
    """Mean SAR grey level of the optical image's land minus that of its water (high when they show one scene)."""
    water = water_mask(optical)
    return sar[~water].mean() - sar[water].mean()


def test_eo2sar_test_pairs_show_the_same_scene(tmp_path):
    """testB/NAME is the SAR image of the scene of testA/NAME: its water (dark in SAR) lies where the optical image's
    water is, which is not so for the SAR image of another test scene."""
    assert md.main(["eo2sar", "--out", str(tmp_path), "--size", "48", "--n_train", "5", "--n_test", "5"]) == 0
    names = png_names(tmp_path / "testA")
    assert names == png_names(tmp_path / "testB") and len(names) == 5
    optical = {name: read(tmp_path / "testA" / name)[1] for name in names}
    sar = {name: read(tmp_path / "testB" / name)[1] for name in names}
    with_water = [name for name in names if 0.02 < water_mask(optical[name]).mean() < 0.98]
    assert len(with_water) >= 3
    for name in with_water:
        same = water_contrast(optical[name], sar[name])
        others = [water_contrast(optical[name], sar[other]) for other in names if other != name]
        assert same > 50 and same > max(others) + 10, (name, same, others)


def test_eo2sar_training_names_cannot_pair_and_pairing_json_says_so(eo2sar_dir):
    """Training folders share no file name (with each other or the test folders); pairing.json records the rule."""
    names = {folder: set(png_names(eo2sar_dir / folder)) for folder in ("trainA", "trainB", "testA", "testB")}
    assert not names["trainA"] & names["trainB"]
    assert not (names["trainA"] | names["trainB"]) & names["testA"]
    assert names["testA"] == names["testB"]
    record = read_pairing(eo2sar_dir)
    assert record[CO_REGISTERED] == [["testA", "testB"]] and record[UNPAIRED] == [["trainA", "trainB"]]
    assert record["generator"] == {"dataset": "eo2sar", "size": 32, "n_train": 5, "n_test": 2, "seed": 0,
                                   "band": "X"}
    assert folder_pairing(eo2sar_dir / "testB", eo2sar_dir / "testA") == CO_REGISTERED
    assert folder_pairing(eo2sar_dir / "trainA", eo2sar_dir / "trainB") == UNPAIRED
    assert folder_pairing(eo2sar_dir / "trainA", eo2sar_dir / "testB") is None  # not recorded


def test_x2ka_pairing_json_records_co_registered_bands(x2ka_dir):
    assert read_pairing(x2ka_dir)[CO_REGISTERED] == [["train/A", "train/B"], ["test/A", "test/B"]]
    assert folder_pairing(x2ka_dir / "test" / "A", x2ka_dir / "test" / "B") == CO_REGISTERED
    assert read_pairing(x2ka_dir / "test") is None


def test_every_folder_holds_different_scenes():
    maps = [md.land_cover_map(md.scene_rng(0, dataset, folder, 4), 32, "water").labels
            for dataset, folder in md.SEED_OFFSETS]
    assert len({labels.tobytes() for labels in maps}) == len(maps)


def test_runs_are_byte_identical_and_rerun_overwrites(tmp_path, x2ka_dir, eo2sar_dir):
    assert md.main(["x2ka", "--out", str(tmp_path / "x2ka"), *SMALL]) == 0
    assert md.main(["eo2sar", "--out", str(tmp_path / "eo2sar"), *SMALL]) == 0
    assert tree_bytes(tmp_path / "x2ka") == tree_bytes(x2ka_dir)
    assert tree_bytes(tmp_path / "eo2sar") == tree_bytes(eo2sar_dir)
    other_seed = tmp_path / "seed1"
    assert md.main(["x2ka", "--out", str(other_seed), *SMALL, "--seed", "1"]) == 0
    assert tree_bytes(other_seed) != tree_bytes(x2ka_dir)
    # a rerun into the same folder with fewer scenes rewrites them and removes the stale generated files
    assert md.main(["x2ka", "--out", str(other_seed), *SMALL, "--n_train", "3"]) == 0
    assert png_names(other_seed / "train" / "A") == sorted(f"{md.category_of(i)}_{i:04d}.png" for i in range(3))
    assert tree_bytes(other_seed / "test") == tree_bytes(x2ka_dir / "test")


def test_script_runs_from_another_directory(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(SCRIPT), "eo2sar", "--out", "out", "--size", "16",
                             "--n_train", "1", "--n_test", "0"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "eo2sar: wrote 3 files" in result.stdout  # two images and pairing.json
    assert png_names(tmp_path / "out" / "trainA") == ["building_0000.png"]


def test_default_output_folder_is_in_the_repository():
    parser = md.build_parser()
    assert parser.parse_args(["x2ka"]).out == REPO_ROOT / "datasets" / "x2ka"
    assert parser.parse_args(["eo2sar"]).out == REPO_ROOT / "datasets" / "eo2sar"
    with pytest.raises(SystemExit):
        parser.parse_args(["x2ka", "--size", "8"])


@pytest.mark.parametrize("category", md.CATEGORIES)
def test_scene_is_dominated_by_its_category(category):
    for seed in range(3):
        scene = md.land_cover_map(np.random.default_rng(seed), 48, category)
        counts = np.bincount(scene.labels.ravel(), minlength=len(md.CATEGORIES))
        assert md.CATEGORIES[counts.argmax()] == category
        assert scene.dominant == category


def test_speckle_has_band_looks_and_grain():
    rng = np.random.default_rng(0)
    stats = {}
    for name, band in md.BANDS.items():
        intensity = md.speckle(rng, (256, 256), band.looks, band.grain)
        cv = intensity.std() / intensity.mean()
        lag1 = np.corrcoef(intensity[:, :-1].ravel(), intensity[:, 1:].ravel())[0, 1]
        stats[name] = cv, lag1
        assert intensity.mean() == pytest.approx(1.0, abs=0.05)
        assert cv == pytest.approx(1 / np.sqrt(band.looks), rel=0.12)  # Gamma(L): CV = 1/sqrt(L)
    assert stats["Ka"][0] < stats["X"][0] - 0.1  # more looks at Ka
    assert stats["X"][1] > stats["Ka"][1] + 0.2  # coarser grain at X


def test_homogeneous_patch_looks_and_calibration():
    scene = md.uniform_scene(128, "vegetation")
    cvs = {}
    for band in ("X", "Ka"):
        sar = md.simulate_sar(np.random.default_rng(1), scene, band)
        sigma0, _ = md.backscatter(scene, band)
        cvs[band] = sar["HH"].std() / sar["HH"].mean()
        for index, pol in enumerate(md.POLARIZATIONS):
            assert sar[pol].mean() == pytest.approx(sigma0[index].mean(), rel=0.1)
    assert cvs["Ka"] < cvs["X"]


def test_water_is_much_darker_than_urban():
    for band in ("X", "Ka"):
        water, _ = md.backscatter(md.uniform_scene(16, "water"), band)
        urban, _ = md.backscatter(md.uniform_scene(16, "building"), band)
        assert 10 * np.log10(urban.sum(axis=0).mean() / water.sum(axis=0).mean()) > 10.0  # total power (span)
        for index in range(3):
            assert 10 * np.log10(urban[index].mean() / water[index].mean()) > 6.0
        rng = np.random.default_rng(2)
        water_image = md.simulate_sar(rng, md.uniform_scene(64, "water"), band)
        urban_image = md.simulate_sar(rng, md.uniform_scene(64, "building"), band)
        for pol in md.POLARIZATIONS:
            assert urban_image[pol].mean() > 4 * water_image[pol].mean()
        assert sum(urban_image[pol].mean() for pol in md.POLARIZATIONS) > \
            10 * sum(water_image[pol].mean() for pol in md.POLARIZATIONS)
    assert md.SIGMA0_DB["Ka"][md.WATER].mean() > md.SIGMA0_DB["X"][md.WATER].mean()  # capillary waves


def block_mean(image, block=4):
    grey = image.astype(float).mean(axis=2)
    size = grey.shape[0] // block
    return grey[:size * block, :size * block].reshape(size, block, size, block).mean(axis=(1, 3)).ravel()


def test_x_and_ka_images_of_one_scene_differ_but_correlate():
    x_image, ka_image = md.render_x2ka(np.random.default_rng(3), 64, "farmland")
    _, other_ka = md.render_x2ka(np.random.default_rng(4), 64, "farmland")
    assert x_image.shape == ka_image.shape == (64, 64, 3)
    assert np.abs(x_image.astype(int) - ka_image.astype(int)).mean() > 5  # different bands
    same = np.corrcoef(block_mean(x_image), block_mean(ka_image))[0, 1]
    other = np.corrcoef(block_mean(x_image), block_mean(other_ka))[0, 1]
    assert same > 0.7 and same > other + 0.4

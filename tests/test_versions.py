"""The software record (util/versions.py): what it holds, 'unknown' outside a git checkout of sargen's own, and the
pages, outputs and images that carry it."""

import shutil
import subprocess

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image

from data.image_io import write_image, written_by_sargen
from util.html import HTMLPage
from util.versions import REPO_ROOT, UNKNOWN, sargen_commit, software_text, software_versions


def git(*args, cwd):
    """The stripped output of a git command in `cwd`."""
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def test_the_record_names_each_package_and_sargens_commit():
    """torch, torchvision, numpy, rasterio and GDAL at their running versions; the checkout's commit."""
    versions = software_versions()
    assert list(versions) == ["sargen", "python", "torch", "torchvision", "numpy", "rasterio", "gdal"]
    assert versions["torch"] == str(torch.__version__) and versions["numpy"] == np.__version__
    assert versions["gdal"] == rasterio.__gdal_version__ and all(isinstance(v, str) for v in versions.values())
    if shutil.which("git") and (REPO_ROOT / ".git").exists():  # uncached: a commit may come during the session
        assert sargen_commit().removesuffix("-dirty") == git("rev-parse", "HEAD", cwd=REPO_ROOT)
        assert len(versions["sargen"].removesuffix("-dirty")) == 40
    assert software_text().startswith("sargen ") and f"GDAL {versions['gdal']}" in software_text()


def test_outside_a_git_checkout_the_commit_is_unknown(tmp_path):
    """A copy without .git, or one unpacked inside another repository, records 'unknown', not a wrong commit."""
    assert sargen_commit(tmp_path) == UNKNOWN
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git("init", "-q", cwd=tmp_path)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "other", cwd=tmp_path)
    (tmp_path / "sargen").mkdir()
    assert sargen_commit(tmp_path / "sargen") == UNKNOWN
    assert len(sargen_commit(tmp_path)) == 40  # the repository's own root does have a commit


def test_pages_and_images_carry_the_record(tmp_path):
    """Every HTML page ends with it; PNG, JPEG and GeoTIFF files sargen writes carry it (and so are told from the
    user's own files, which app.py and make_dataset.py do not replace unasked)."""
    page = HTMLPage(tmp_path, "a page").save().read_text()
    assert f"made with {software_text()}" in page and page.rstrip().endswith("</html>")
    for name in ("a.png", "a.jpg", "a.tif"):
        write_image(np.zeros((8, 8, 3), np.uint8), tmp_path / name)
        assert written_by_sargen(tmp_path / name), name
    assert Image.open(tmp_path / "a.png").info["Software"] == software_text()
    with rasterio.open(tmp_path / "a.tif") as dataset:
        assert dataset.tags()["SARGEN_SOFTWARE"] == software_text()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "user.png")
    (tmp_path / "text.png").write_text("not an image")
    assert not written_by_sargen(tmp_path / "user.png") and not written_by_sargen(tmp_path / "text.png")

"""The software a result was made with: sargen's git commit and the versions of Python, torch, torchvision, numpy,
rasterio and GDAL.

The one record of it, kept in checkpoints (under the model's own state key), Gram files, metrics.json, the .tif
outputs' tags and every HTML page, so that a result can be traced to the software that made it. Plain strings
only (checkpoints load with weights_only=True).
"""

import functools
import platform
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
UNKNOWN = "unknown"
GIT_TIMEOUT_S = 10


@functools.lru_cache(maxsize=1)
def software_versions():
    """{name: version string}: sargen (its commit), python, torch, torchvision, numpy, rasterio and gdal."""
    import numpy
    import rasterio
    import torch
    import torchvision

    return {"sargen": sargen_commit(), "python": platform.python_version(), "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__), "numpy": str(numpy.__version__),
            "rasterio": str(rasterio.__version__), "gdal": str(rasterio.__gdal_version__)}


def software_text():
    """The record in one line, e.g. 'sargen 1a2b3c4 (uncommitted changes), torch 2.14.1, ..., GDAL 3.9.3'."""
    versions = software_versions()
    names = {"sargen": "sargen", "python": "Python", "torch": "torch", "torchvision": "torchvision",
             "numpy": "numpy", "rasterio": "rasterio", "gdal": "GDAL"}
    commit = versions["sargen"]
    if commit.endswith("-dirty"):
        commit = f"{commit[:-len('-dirty')]} (uncommitted changes)"
    return ", ".join(f"{names[key]} {commit if key == 'sargen' else value}" for key, value in versions.items())


def sargen_commit(root=REPO_ROOT):
    """The git commit of the sargen checkout at `root`, '-dirty' appended when tracked files differ from it;
    'unknown' outside a git checkout of its own (an unpacked archive, or git missing)."""
    try:
        top = git(root, "rev-parse", "--show-toplevel")
        if Path(top).resolve() != Path(root).resolve():  # sargen unpacked inside another repository
            return UNKNOWN
        commit = git(root, "rev-parse", "--verify", "HEAD")
        changed = git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    return commit + ("-dirty" if changed else "")


def git(root, *args):
    """The stripped output of `git -C root ARGS`; raises on failure."""
    completed = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                               timeout=GIT_TIMEOUT_S, check=True)
    return completed.stdout.strip()

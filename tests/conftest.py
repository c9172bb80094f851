"""Shared fixtures: tiny example data and helpers to run the scripts."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from datasets.make_dataset import main as make_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seeded_and_small():
    """Every test starts from the same torch seed."""
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def x2ka_root(tmp_path_factory):
    """A tiny cross-band dataset: 32 px, 5 training pairs (one per category), 2 test pairs."""
    root = tmp_path_factory.mktemp("x2ka")
    make_dataset(["x2ka", "--out", str(root), "--size", "32", "--n_train", "5", "--n_test", "2"])
    return root


def gatys_train_args(root, work, *extra):
    """Command-line options of a small, fast Gram precompute on the CPU."""
    return ["--model", "gatys", "--dataroot", str(root), "--name", "tiny", "--gpu_ids", "-1",
            "--vgg", "vgg16", "--vgg_weights", "random", "--load_size", "32", "--crop_size", "32",
            "--num_threads", "0", "--checkpoints_dir", str(work / "checkpoints"), *extra]


def gatys_test_args(root, work, *extra):
    """Command-line options of a small, fast style-transfer test run on the CPU."""
    return [*gatys_train_args(root, work), "--results_dir", str(work / "results"), "--n_iter", "10", *extra]


def run_script(script, args, cwd=REPO_ROOT):
    """Run a top-level script in a subprocess; returns (exit code, stdout, stderr)."""
    completed = subprocess.run([sys.executable, str(REPO_ROOT / script), *map(str, args)], cwd=cwd,
                               capture_output=True, text=True, timeout=300)
    return completed.returncode, completed.stdout, completed.stderr

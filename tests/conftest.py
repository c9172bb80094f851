"""Shared fixtures: tiny example data and helpers to run the scripts."""

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from datasets.make_dataset import main as make_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked `cuda` where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (make gpu-check runs these where there is one)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


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


def make_eo2sar(tmp_path_factory, name, size=40, n_train=4, n_test=1):
    """A tiny unpaired EO/SAR set in a new temporary folder `name`: trainA/B, testA/B."""
    root = tmp_path_factory.mktemp(name)
    make_dataset(["eo2sar", "--out", str(root), "--size", str(size), "--n_train", str(n_train),
                  "--n_test", str(n_test)])
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


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_torchrun(script, args, processes=2, timeout=300):
    """Run a top-level script under torchrun with `processes` CPU ranks (gloo on loopback, a free port, one
    thread each); returns (exit code, stdout, stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(REPO_ROOT / script),
               *map(str, args)]
    completed = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return completed.returncode, completed.stdout, completed.stderr


class Records(logging.Handler):
    """A logging handler that keeps the messages of its records."""

    def __init__(self):
        """Start empty."""
        super().__init__()
        self.messages = []

    def emit(self, record):
        """Keep the message."""
        self.messages.append((record.levelno, record.getMessage()))


@pytest.fixture
def sargen_log():
    """The messages of the 'sargen' logger, however its propagation is set."""
    handler, logger = Records(), logging.getLogger("sargen")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)

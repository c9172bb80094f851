"""A U-GAT-IT training run killed (SIGKILL) at random moments, again and again, and resumed each time.

After every kill the checkpoints on disk load, the saved iteration never goes back, earlier files (checkpoints,
loss log, training page images) are still there and no temporary file is taken for a result; resumed runs
repeat the losses of the steps they redo exactly, the last run finishes at --iteration, and the temporary
checkpoint files of killed saves are gone by then.
"""

import os
import random
import re
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from urllib.parse import unquote

import pytest
from conftest import REPO_ROOT, make_eo2sar
from ugatit_helpers import LOG_LINE, TINY_NETWORK

from models.ugatit_checkpoint import CHECKPOINT_SUFFIX, SARGEN_STATE_KEY, read_checkpoint

KILL_CYCLES = 5
ITERATION = 60
KILL_DELAY_S = (0.0, 1.2)  # after the launch's first logged step, so that kills land in steps and saves
START_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def eo2sar_root(tmp_path_factory):
    """A tiny unpaired EO/SAR set: 40 px, 4 images per training domain."""
    return make_eo2sar(tmp_path_factory, "eo2sar_kill", size=40, n_train=4, n_test=1)


def train_command(root, work, resume):
    """train.py of a tiny U-GAT-IT saving every 2 steps and adding page images every 3, on the CPU."""
    args = ["--model", "ugatit", "--dataroot", str(root), "--name", "killed", "--gpu_ids", "-1",
            "--checkpoints_dir", str(work), "--img_size", "32", "--num_threads", "0", "--display_id", "0",
            "--print_freq", "1", *TINY_NETWORK, "--ch", "4", "--iteration", str(ITERATION), "--save_freq", "2",
            "--update_html_freq", "3"]
    return [sys.executable, str(REPO_ROOT / "train.py"), *args, *(["--continue_train"] if resume else [])]


def launch(root, work, log_file):
    """Start training as a subprocess (resuming when a latest checkpoint exists), one torch thread."""
    resume = (work / "killed" / f"latest{CHECKPOINT_SUFFIX}").exists()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(train_command(root, work, resume), cwd=REPO_ROOT, env=env, stdout=log_file,
                            stderr=subprocess.STDOUT)


def logged_steps(folder):
    """[(step, losses text)] of every line of loss_log.txt, in order (steps a resumed run redoes appear twice)."""
    path = folder / "loss_log.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(int(match.group(1)), match.group(3)) for match in map(LOG_LINE.match, lines) if match]


def wait_for_new_step(process, folder, steps_before):
    """Wait until the launched run has logged a step (or ended)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while process.poll() is None and len(logged_steps(folder)) <= steps_before:
        assert time.monotonic() < deadline, "the training run logged no step"
        time.sleep(0.01)


def saved_iteration(path):
    """The iteration stored in a checkpoint, loaded with the project's loader (weights_only)."""
    return read_checkpoint(path)[SARGEN_STATE_KEY]["iteration"]


def snapshot(folder):
    """What must survive a kill: checkpoint files by step, the latest iteration, the log text, page images."""
    checkpoints = {}
    for path in folder.glob(f"*{CHECKPOINT_SUFFIX}"):
        label = path.name[:-len(CHECKPOINT_SUFFIX)]
        assert label == "latest" or label.isdigit(), f"unexpected checkpoint file {path.name}"
        if label.isdigit():
            checkpoints[int(label)] = saved_iteration(path)
    latest = folder / f"latest{CHECKPOINT_SUFFIX}"
    log = folder / "loss_log.txt"
    return {"checkpoints": checkpoints, "latest": saved_iteration(latest) if latest.exists() else 0,
            "log": log.read_text() if log.exists() else "",
            "images": {path.name for path in (folder / "web" / "images").glob("*.png")}}


class PageLinks(HTMLParser):
    """The src and href attributes of a page."""

    def __init__(self):
        """Start with no links."""
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        """Collect img src and a href."""
        self.links += [value for name, value in attrs if name in ("src", "href") and value]


def check_page(folder):
    """The training page exists, links only existing, non-temporary images."""
    page = folder / "web" / "index.html"
    if not page.exists():
        return
    parser = PageLinks()
    parser.feed(page.read_text())
    for link in parser.links:
        assert not re.search(r"(^|/)\.|\.tmp", link), f"the page links a temporary file {link}"
        assert (page.parent / unquote(link)).is_file(), f"the page links a missing file {link}"


def check_after_kill(folder, before):
    """Every checkpoint loads and matches its name, nothing earlier is lost, the latest iteration did not go back."""
    after = snapshot(folder)
    assert all(step == iteration for step, iteration in after["checkpoints"].items())
    assert set(before["checkpoints"]) <= set(after["checkpoints"]), "an earlier checkpoint disappeared"
    assert after["latest"] >= before["latest"], "the latest checkpoint went back"
    assert after["latest"] == 0 or after["latest"] in after["checkpoints"], "latest is not a saved step"
    assert after["log"].startswith(before["log"]), "loss_log.txt lost earlier lines"
    assert before["images"] <= after["images"], "page images disappeared"
    check_page(folder)
    return after


def test_training_survives_repeated_sigkill(eo2sar_root, tmp_path):
    """KILL_CYCLES kills at seeded random moments, each followed by a resume; then a run to the end."""
    rng = random.Random(20240611)
    folder = tmp_path / "killed"
    state = snapshot(folder)
    kills = []
    with open(tmp_path / "runs.log", "w") as log_file:
        for _ in range(KILL_CYCLES):
            process = launch(eo2sar_root, tmp_path, log_file)
            wait_for_new_step(process, folder, len(logged_steps(folder)))
            time.sleep(rng.uniform(*KILL_DELAY_S))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills.append(len(logged_steps(folder)))
            process.wait()
            state = check_after_kill(folder, state)
            print(f"kill {len(kills)}: latest checkpoint at step {state['latest']}, "
                  f"{len(list(folder.rglob('.*.tmp*')))} temporary files left by killed writers")
        final = launch(eo2sar_root, tmp_path, log_file)
        assert final.wait(timeout=300) == 0, (tmp_path / "runs.log").read_text()[-3000:]
    assert len(kills) >= KILL_CYCLES - 1, f"only {len(kills)} runs were still training when killed"
    state = check_after_kill(folder, state)
    assert state["latest"] == ITERATION
    assert not list(folder.glob(".*.tmp*")), "temporary checkpoint files of killed runs were left"
    losses_by_step = {}
    for step, losses in logged_steps(folder):
        assert losses_by_step.setdefault(step, losses) == losses, f"step {step} redone with other losses"
    assert sorted(losses_by_step) == list(range(1, ITERATION + 1))

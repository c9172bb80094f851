"""Tests of the training display: a real visdom server on loopback, the no-server path, HTML page, colour maps."""

import json
import logging
import shlex
import socket
import subprocess
import time
import urllib.request

import pytest
import torch
from conftest import free_port, make_eo2sar
from ugatit_helpers import (
    one_torch_thread,  # noqa: F401  (autouse fixture)
    read_loss_log,
    run_entry_point,
    ugatit_args,
)

import train as train_script
from util.visualizer import visdom_server_command
from util.visuals import heatmap_overlay, jet_colormap

visdom = pytest.importorskip("visdom")

SERVER_START_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def eo2sar_root(tmp_path_factory):
    """A tiny unpaired EO/SAR set."""
    return make_eo2sar(tmp_path_factory, "eo2sar", size=32, n_train=5, n_test=1)


@pytest.fixture
def visdom_server(tmp_path):
    """A visdom server on a free loopback port, started with the command the no-server warning suggests (plus a
    private environment folder and less logging), stopped afterwards."""
    port = free_port()
    command = [*shlex.split(visdom_server_command(port)), "-env_path", str(tmp_path), "-logging_level", "WARNING"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"visdom server exited: {process.stderr.read().decode()[-500:]}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("visdom server did not start")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_visdom_server_receives_loss_and_image_windows(eo2sar_root, tmp_path, visdom_server, monkeypatch):
    """Training with a server (at the default --display_server) shows the loss plot (window 1) and the current images
    (window 2) in its env."""
    env = "sargen_test"
    args = ugatit_args(eo2sar_root, tmp_path, "live", "--iteration", 2, "--display_id", 1, "--display_freq", 1,
                       "--display_port", visdom_server, "--display_env", env, "--save_freq", 10)
    run_entry_point(train_script, args, monkeypatch)
    client = visdom.Visdom(server="http://127.0.0.1", port=visdom_server, env=env, use_incoming_socket=False,
                           raise_exceptions=True)
    assert client.win_exists("1", env=env) and client.win_exists("2", env=env)
    plot = json.loads(client.get_window_data("1", env=env))
    assert plot["title"] == "live loss over time"
    assert [trace["name"] for trace in plot["content"]["data"]][:2] == ["D_A", "D_B"]
    assert len(plot["content"]["data"][0]["x"]) == 2  # both steps plotted
    images = json.loads(client.get_window_data("2", env=env))
    assert images["type"] == "image" and "real_A" in images["title"] and "heatmap_B2A" in images["title"]


def test_the_servers_browser_page_answers(visdom_server):
    """The page a browser opens on the server started as documented answers 200 with visdom's page (visdom 0.2.4
    answers 403 with tornado 6.6.1: requirements.txt pins tornado), and so does the page's own style sheet."""
    for path in ("/", "/user/style.css"):
        with urllib.request.urlopen(f"http://127.0.0.1:{visdom_server}{path}", timeout=30) as response:
            assert response.status == 200, path
            body = response.read().decode("utf-8", "replace")
        if path == "/":
            assert "The Visdom Authors" in body and "<!doctype html>" in body


def test_without_a_server_training_warns_once_and_writes_html(eo2sar_root, tmp_path, monkeypatch, caplog):
    """No server on the port: one warning suggesting the offline server command, training finishes, the HTML page and
    loss_log.txt are written."""
    port = free_port()
    args = ugatit_args(eo2sar_root, tmp_path, "offline", "--iteration", 4, "--display_id", 1, "--display_freq", 1,
                       "--display_server", "http://127.0.0.1", "--display_port", port,
                       "--update_html_freq", 2, "--save_freq", 10)
    with caplog.at_level(logging.WARNING, logger="sargen"):
        run_entry_point(train_script, args, monkeypatch)
    warnings = [record.getMessage() for record in caplog.records if "no visdom server" in record.getMessage()]
    assert len(warnings) == 1
    assert f"`{visdom_server_command(port)}`" in warnings[0] and "visdom.server -port" not in warnings[0]
    assert f"from visdom.server.run_server import main; main()\" -port {port} --hostname 127.0.0.1" in warnings[0]
    folder = tmp_path / "checkpoints" / "offline"
    html = (folder / "web" / "index.html").read_text()
    assert html.index("step [4]") < html.index("step [2]")  # newest first
    for label in ("real_A", "fake_A2B", "heatmap_A2B", "real_B", "fake_B2A", "heatmap_B2A"):
        assert f"images/step00000004_{label}.png" in html
        assert (folder / "web" / "images" / f"step00000002_{label}.png").is_file()
    log_lines = (folder / "loss_log.txt").read_text().splitlines()
    assert log_lines[0].startswith("================ Training Loss")
    assert [line.split(",")[0] for line in log_lines[1:]] == [f"(step: {step}" for step in (1, 2, 3, 4)]
    assert (folder / "4_net_ugatit.pth").is_file()


def page_steps(html):
    """The steps of a training page's headers, in page order."""
    return [int(part.split("]", 1)[0]) for part in html.split("step [")[1:]]


def test_first_and_last_step_are_logged_and_shown_whatever_the_frequencies(eo2sar_root, tmp_path, monkeypatch):
    """A short run with frequencies larger than its length still logs and pages its first and last steps (and saves
    the last); a resumed run does the same for its own first and last steps."""
    frequencies = ["--print_freq", 1000, "--update_html_freq", 1000, "--display_freq", 1000, "--save_freq", 1000]
    args = ugatit_args(eo2sar_root, tmp_path, "short", *frequencies)
    run_entry_point(train_script, [*args, "--iteration", 3], monkeypatch)
    folder = tmp_path / "checkpoints" / "short"
    assert sorted(read_loss_log(folder / "loss_log.txt")) == [1, 3]
    assert page_steps((folder / "web" / "index.html").read_text()) == [3, 1]
    for step in (1, 3):
        assert (folder / "web" / "images" / f"step{step:08d}_fake_A2B.png").is_file()
    assert sorted(path.name for path in folder.glob("*_net_ugatit.pth")) == ["3_net_ugatit.pth",
                                                                              "latest_net_ugatit.pth"]
    run_entry_point(train_script, [*args, "--iteration", 6, "--continue_train"], monkeypatch)
    assert sorted(read_loss_log(folder / "loss_log.txt")) == [1, 3, 4, 6]
    assert page_steps((folder / "web" / "index.html").read_text()) == [6, 4, 3, 1]
    assert (folder / "6_net_ugatit.pth").is_file()


def test_jet_colormap_runs_from_blue_to_red():
    """Low values are blue, the middle green, high values red."""
    colours = jet_colormap(torch.tensor([[0.0, 0.5, 1.0]]))
    assert torch.argmax(colours[:, 0, 0]) == 2 and torch.argmax(colours[:, 0, 1]) == 1
    assert torch.argmax(colours[:, 0, 2]) == 0


def test_heatmap_overlay_is_a_colour_image_over_the_input():
    """A quarter-size heatmap becomes a 3-channel image of the input's size; its hot corner is red."""
    heatmap = torch.zeros(1, 8, 8)
    heatmap[0, :2, :2] = 5.0
    image = torch.zeros(1, 32, 32)
    overlay = heatmap_overlay(heatmap, image)
    assert overlay.shape == (3, 32, 32) and overlay.min() >= -1 and overlay.max() <= 1
    assert overlay[0, 0, 0] > overlay[2, 0, 0] and overlay[2, 31, 31] > overlay[0, 31, 31]

"""Helpers shared by the U-GAT-IT tests: tiny options, in-process train/test runs, loss-log parsing."""

import re
import sys

import pytest
import torch

TINY_NETWORK = ["--ch", "8", "--n_res", "1", "--light", "--n_dis", "5", "--output_nc", "1"]
LOG_LINE = re.compile(r"^\(step: (\d+), lr: ([^,]+), time: [^)]+\) (.*)$")


def ugatit_args(root, work, name, *extra):
    """Options of a tiny U-GAT-IT run on the CPU (32 px, ch 8, one residual block, no visdom)."""
    return ["--model", "ugatit", "--dataroot", str(root), "--name", name, "--gpu_ids", "-1",
            "--checkpoints_dir", str(work / "checkpoints"), "--img_size", "32", "--num_threads", "0",
            "--display_id", "0", "--print_freq", "1", *TINY_NETWORK, *map(str, extra)]


def identical_models(opt, count=2, seed=7):
    """`count` set-up models of the options `opt`, each built from the same seed (identical initial weights)."""
    from models import create_model

    models = []
    for _ in range(count):
        torch.manual_seed(seed)
        model = create_model(opt)
        model.setup()
        models.append(model)
    return models


def run_entry_point(module, args, monkeypatch):
    """Run train.main or test.main in this process with `args` as the command line."""
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *map(str, args)])
    module.main()


def read_loss_log(path):
    """{step: (learning-rate text, losses text)} from a loss_log.txt."""
    steps = {}
    for line in path.read_text().splitlines():
        match = LOG_LINE.match(line)
        if match:
            steps[int(match.group(1))] = (match.group(2), match.group(3))
    return steps


def loss_values(losses_text):
    """{name: float} of a loss-log line's 'name: value' pairs."""
    parts = losses_text.split()
    return {name.rstrip(":"): float(value) for name, value in zip(parts[::2], parts[1::2])}


def perturbed_generators(ngf=8, n_blocks=2, img_size=32, input_nc=3, output_nc=3, light=True, seed=0, scale=0.02):
    """genA2B and genB2A state dicts (eo2sar checkpoint format) whose every weight is seeded and then perturbed
    by scale x randn, rho moved off its initial values (so both normalization mixtures matter)."""
    from models.ugatit_networks import Generator

    torch.manual_seed(seed)
    networks = {"genA2B": Generator(input_nc, output_nc, ngf=ngf, n_blocks=n_blocks, img_size=img_size, light=light),
                "genB2A": Generator(output_nc, input_nc, ngf=ngf, n_blocks=n_blocks, img_size=img_size, light=light)}
    with torch.no_grad():
        for network in networks.values():
            for name, parameter in network.named_parameters():
                if name.endswith("rho"):
                    parameter.uniform_(0.2, 0.8)
                parameter.add_(scale * torch.randn_like(parameter))
    return {name: network.state_dict() for name, network in networks.items()}


def perturbed_checkpoint(tmp_path_factory, input_nc=3, output_nc=1, n_blocks=1):
    """perturbed_generators (ngf 8, 32 px, light) saved as a reference-format checkpoint in a new temporary folder
    (no radiometry record): its path."""
    path = tmp_path_factory.mktemp("checkpoint") / "perturbed.pt"
    torch.save(perturbed_generators(ngf=8, n_blocks=n_blocks, img_size=32, input_nc=input_nc, output_nc=output_nc),
               path)
    return path


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Run torch on one thread: tiny networks on a shared 2-core machine are many times faster so."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

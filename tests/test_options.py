"""train.py/test.py options: --help lists every option of the model and dataset mode with the defaults a run uses;
--num_threads defaults to what the machine has."""

import argparse
import os
import re
import warnings

import pytest
import torch
from conftest import run_script

import data
import models
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util import device

OPTION_CLASSES = {"train": TrainOptions, "test": TestOptions}
GIVEN = {"model", "dataset_mode"}  # options the cases pass; their defaults are not what the run uses
ENTRY_START = re.compile(r"^  (-\S.*?)(?:\s{2,}(.*))?$")


def help_entries(text):
    """{option string: the text of its help entry with all whitespace removed} of an argparse help text."""
    entries, current = {}, None
    for line in text.splitlines():
        match = ENTRY_START.match(line)
        if match:
            current = [match.group(2) or ""]
            for invocation in match.group(1).split(", "):
                entries[invocation.split()[0]] = current
        elif current is not None and line.startswith("   "):
            current.append(line)
        else:
            current = None
    return {option: re.sub(r"\s+", "", " ".join(lines)) for option, lines in entries.items()}


def printed_help(kind, argv, capsys):
    """What `train.py|test.py ARGV --help` prints, through the options' real parse (which then exits 0)."""
    with pytest.raises(SystemExit) as exit_info:
        OPTION_CLASSES[kind]().parse([*argv, "--help"], save=False)
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def hook_additions(hook, kind):
    """(option strings added, {dest: default} changed) by a model's or dataset mode's hook on the common options."""
    parser = OPTION_CLASSES[kind]().initialize(argparse.ArgumentParser(add_help=False))
    options_before = {option for action in parser._actions for option in action.option_strings}
    defaults_before = {action.dest: parser.get_default(action.dest) for action in parser._actions}
    hook(parser, kind == "train")
    added = {option for action in parser._actions for option in action.option_strings} - options_before
    changed = {dest: parser.get_default(dest) for dest, default in defaults_before.items()
               if parser.get_default(dest) != default}
    return added, changed


def shown_default(value):
    """How the help shows a default, whitespace removed."""
    return re.sub(r"\s+", "", f"(default:{value})")


CASES = [(kind, model, mode) for kind in OPTION_CLASSES for model in models.available_models()
         for mode in [None, *data.available_dataset_modes()]]


@pytest.mark.parametrize(("kind", "model", "mode"), CASES)
def test_help_lists_every_option_with_the_defaults_the_run_uses(kind, model, mode, capsys):
    argv = ["--model", model] + (["--dataset_mode", mode] if mode else [])
    entries = help_entries(printed_help(kind, argv, capsys))
    parser = OPTION_CLASSES[kind]().build_parser(argv)
    parsed = vars(parser.parse_args(argv))
    mode = mode or parsed["dataset_mode"]
    model_options, model_defaults = hook_additions(models.get_option_setter(model), kind)
    dataset_options, _ = hook_additions(data.get_option_setter(mode), kind)
    run_options = {option for action in parser._actions for option in action.option_strings}
    assert model_options | dataset_options <= run_options
    assert run_options <= set(entries), sorted(run_options - set(entries))
    for dest, default in model_defaults.items():  # the model's own defaults are what the run uses
        if dest not in GIVEN:
            assert parsed[dest] == default, dest
    for action in parser._actions:
        if action.dest in GIVEN or action.nargs == 0 or action.default in (None, argparse.SUPPRESS):
            continue
        assert shown_default(parsed[action.dest]) in entries[action.option_strings[0]], action.option_strings


def test_gatys_help_shows_its_options_and_image_size():
    """The issue's case, as a user runs it: the Gatys options are there and --load_size shows 256, not 286."""
    code, stdout, stderr = run_script("train.py", ["--model", "gatys", "--help"])
    assert code == 0, stderr
    entries = help_entries(stdout)
    assert {"--vgg", "--vgg_weights", "--style_layer", "--sides"} <= set(entries)
    assert shown_default(256) in entries["--load_size"] and shown_default(286) not in entries["--load_size"]
    assert "options of --model gatys with --dataset_mode aligned" in stdout


def test_ugatit_test_help_shows_its_options(capsys):
    entries = help_entries(printed_help("test", ["--model", "ugatit"], capsys))
    assert {"--checkpoint", "--ch", "--light", "--num_test", "--precision"} <= set(entries)
    entries = help_entries(printed_help("train", ["--model", "ugatit"], capsys))
    assert {"--iteration", "--continue_train", "--print_freq", "--light", "--ch", "--ngf"} <= set(entries)
    assert shown_default("unaligned") in entries["--dataset_mode"]


@pytest.mark.parametrize(("cpus", "local_processes", "expected"),
                         [(1, 1, 0), (2, 1, 1), (3, 1, 2), (16, 1, 4), (8, 2, 3), (2, 2, 0)])
def test_num_threads_default_follows_the_usable_cpus(monkeypatch, cpus, local_processes, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_processes))
    assert device.default_data_workers() == expected
    assert TrainOptions().build_parser(["--model", "ugatit"]).get_default("num_threads") == expected


@pytest.mark.parametrize("cpus", [1, 2, 4, 64])
def test_num_threads_default_never_makes_torch_warn(monkeypatch, cpus):
    """torch's own check of the worker count (which warns above the usable CPUs) stays silent for the default."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loader = torch.utils.data.DataLoader(range(4), num_workers=device.default_data_workers())
        loader.check_worker_number_rationality()
    with pytest.warns(UserWarning, match="worker"):  # the check is live: one worker more than CPUs warns
        torch.utils.data.DataLoader(range(4), num_workers=cpus + 1).check_worker_number_rationality()

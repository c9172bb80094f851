"""Every numeric option of every tool is checked at parse time: NaN, infinities and values out of the option's range
(sizes over the stated limits included) end in argparse's usage and one error naming the option, before any work
(options/number_types.py); the values at the bounds are accepted."""

import argparse

import pytest

import data
import models
from datasets.make_dataset import build_parser as make_dataset_parser
from datasets.make_dataset import main as make_dataset
from evaluation.options import build_parser as evaluate_parser
from options import number_types
from options.app_options import AppOptions
from options.test_options import TestOptions
from options.train_options import TrainOptions
from visualization import feature_optimization

PAIR_TYPES = {number_types.parse_float_pair: ["nan,0", "-inf,0", "0,inf", "1,0", "x,1"],
              number_types.parse_percentiles: ["-1,50", "50,101", "nan,5"],
              number_types.parse_band_list: ["0", "65536", "1,x"]}


def tool_parsers():
    """(tool, parser, arguments every parse needs) of every command-line tool, each model and dataset mode."""
    parsers = []
    for options, tool in ((TrainOptions, "train.py"), (TestOptions, "test.py")):
        for model in models.available_models():
            parsers.append((f"{tool} --model {model}", options().build_parser(["--model", model]), []))
        for mode in data.available_dataset_modes():
            parsers.append((f"{tool} --dataset_mode {mode}",
                            options().build_parser(["--dataset_mode", mode]), ["--dataset_mode", mode]))
    parsers.append(("app.py", AppOptions().build_parser(), ["--model_path", "m.pth", "--img", "x.png"]))
    parsers.append(("evaluate.py", evaluate_parser(), []))
    for kind in ("content", "style"):
        parsers.append((f"{kind} visualization", feature_optimization.add_options(argparse.ArgumentParser(), kind),
                        []))
    commands = next(action for action in make_dataset_parser()._actions
                    if isinstance(action, argparse._SubParsersAction))
    parsers += [(f"make_dataset.py {name}", make_dataset_parser(), [name]) for name in commands.choices]
    return parsers


def own_actions(parser, prefix):
    """The typed options of `parser` (for make_dataset.py, of the subcommand `prefix` names)."""
    if prefix and not prefix[0].startswith("-"):
        commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
        parser = commands.choices[prefix[0]]
    return [action for action in parser._actions if action.option_strings and action.type is not None]


def bad_values(kind):
    """Values an option of argparse type `kind` must refuse: non-finite, non-numbers and both sides of its range."""
    if kind in PAIR_TYPES:
        return PAIR_TYPES[kind]
    bounds = kind.bounds
    values = ["nan", "x"]
    if kind.__name__ == "number":
        values += ["inf", "-inf", "1e400"]
        values += [repr(bounds[name] + shift) for name, shift in (("minimum", -1e-3), ("maximum", 1e-3))
                   if bounds[name] is not None]
        values += [repr(bounds[name]) for name in ("above", "below") if bounds[name] is not None]
    else:
        values += ["1.5"]
        values += [str(bounds[name] + shift) for name, shift in (("minimum", -1), ("maximum", 1))
                   if bounds[name] is not None and bounds[name] + shift not in bounds["allowed"]]
    return values


def edge_values(kind):
    """Values at the bounds of a type with bounds, which must be accepted."""
    bounds = getattr(kind, "bounds", {})
    return [str(bounds[name]) for name in ("minimum", "maximum") if bounds.get(name) is not None]


def parse_error(parser, argv, capsys):
    """The error line argparse prints for `argv` (it must exit 2)."""
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(argv)
    assert exit_info.value.code == 2, argv
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1, argv
    return lines[0]


def test_every_numeric_option_has_a_checked_type():
    """No tool parses a number with a bare int or float: each typed option uses a type of options/number_types.py
    (or is a path, or the true/false flag)."""
    for tool, parser, prefix in tool_parsers():
        for action in own_actions(parser, prefix):
            kind = action.type
            checked = hasattr(kind, "bounds") or kind in PAIR_TYPES
            assert checked or getattr(kind, "__name__", "") in ("Path", "str2bool"), (tool, action.option_strings)


def test_non_finite_and_out_of_range_values_name_the_option(capsys):
    """Each option of each tool refuses NaN, infinities, non-numbers and the values just outside its range with one
    error naming it; the values on its bounds parse."""
    seen = set()
    for tool, parser, prefix in tool_parsers():
        for action in own_actions(parser, prefix):
            flag, kind = action.option_strings[0], action.type
            if (flag, kind) in seen or not (hasattr(kind, "bounds") or kind in PAIR_TYPES):
                continue
            seen.add((flag, kind))
            for value in bad_values(kind):
                line = parse_error(parser, [*prefix, flag, value], capsys)
                assert f"argument {'/'.join(action.option_strings)}" in line and "expected" in line, (tool, line)
            for value in edge_values(kind):
                assert getattr(parser.parse_args([*prefix, flag, value]), action.dest) == kind(value), (tool, flag)
    assert len(seen) > 80


@pytest.mark.parametrize("argv, option", [
    (["--img_size", "-8"], "--img_size"),
    (["--out_img_size", "-5"], "--out_img_size"),
    (["--img_size", "100000"], "--img_size"),
    (["--img_size", "0"], "--img_size"),
    (["--tile", "8192"], "--tile"),
    (["--tile_batch", "0"], "--tile_batch"),
    (["--max_pixels", "-1"], "--max_pixels"),
    (["--nodata", "nan"], "--nodata"),
    (["--out_db_window", "-inf,0"], "--out_db_window"),
])
def test_app_refuses_bad_numbers_before_reading_anything(tmp_path, capsys, argv, option):
    """app.py's cases of the issue (a negative or zero size, one of 100000 px that ran out of memory) and more: one
    error naming the option; no checkpoint or image is opened (neither exists), nothing is written."""
    from models.file_translation import app_main

    with pytest.raises(SystemExit) as exit_info:
        app_main(["--model_path", str(tmp_path / "none.pth"), "--img", str(tmp_path / "none.tif"),
                  "--out", str(tmp_path / "out"), *argv])
    assert exit_info.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("model", ["ugatit", "gatys_feedforward"])
def test_train_refuses_a_learning_rate_of_nan(tmp_path, capsys, model):
    """train.py --lr nan: the option named at parse time, not a traceback from the optimizer."""
    with pytest.raises(SystemExit) as exit_info:
        TrainOptions().parse(["--model", model, "--dataroot", str(tmp_path), "--gpu_ids", "-1", "--lr", "nan",
                              "--checkpoints_dir", str(tmp_path / "checkpoints")])
    assert exit_info.value.code == 2
    assert "argument --lr: expected a finite number > 0, got nan" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()


def test_make_dataset_refuses_a_size_that_would_not_fit(tmp_path, capsys):
    """make_dataset.py --size 100000 (74.5 GiB at once) is refused at parse time with the stated limit."""
    with pytest.raises(SystemExit) as exit_info:
        make_dataset(["eo2sar", "--out", str(tmp_path / "out"), "--size", "100000"])
    assert exit_info.value.code == 2
    assert f"argument --size: expected an integer from 16 to {number_types.MAX_NETWORK_SIDE}, got 100000" in \
        capsys.readouterr().err
    assert not (tmp_path / "out").exists()

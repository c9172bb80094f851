"""Negative windows and pairs after a space (--db_window_B -25,0) parse like the = form, on every command line."""

import pytest
from conftest import run_script

from datasets import make_dataset
from evaluation.options import parse_options as evaluation_options
from options.app_options import AppOptions
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.cli import ArgumentParser, attach_negative_values
from visualization.feature_optimization import parse_options as visualization_options


def test_negative_values_are_attached_to_the_option_before_them():
    assert attach_negative_values(["--db_window_B", "-25,0", "--gpu_ids", "-1", "--lr", "-1e-3", "--x", "-.5,-0.1"]) \
        == ["--db_window_B=-25,0", "--gpu_ids=-1", "--lr=-1e-3", "--x=-.5,-0.1"]
    # options, words and values after -- are left alone; so is a negative value after a flag
    assert attach_negative_values(["--model", "--name", "-x", "--", "--w", "-1,2"], lambda option: False) \
        == ["--model", "--name", "-x", "--", "--w", "-1,2"]
    assert attach_negative_values(["--verbose", "-1"], lambda option: option == "--verbose") == ["--verbose", "-1"]


@pytest.mark.parametrize("options", [TrainOptions, TestOptions])
def test_train_and_test_take_the_spaced_form_of_every_window(options, tmp_path):
    spaced = options().parse(["--model", "ugatit", "--dataroot", str(tmp_path), "--db_window_B", "-25,0",
                              "--db_window", "-30,5", "--db_window_A", "-20,-5", "--gpu_ids", "-1"], save=False)
    equals = options().parse(["--model", "ugatit", "--dataroot", str(tmp_path), "--db_window_B=-25,0",
                              "--db_window=-30,5", "--db_window_A=-20,-5", "--gpu_ids=-1"], save=False)
    for name in ("db_window", "db_window_A", "db_window_B"):
        assert getattr(spaced, name) == getattr(equals, name)
    assert (spaced.db_window_B, spaced.db_window, spaced.db_window_A) == ((-25.0, 0.0), (-30.0, 5.0), (-20.0, -5.0))


def test_app_and_evaluate_and_visualization_take_the_spaced_form(tmp_path):
    app = AppOptions().parse(["--model_path", "m.pt", "--img", "x.png", "--out_db_window", "-30,5",
                              "--db_window_A", "-22,-2"])
    assert app.out_db_window == (-30.0, 5.0) and app.db_window_A == (-22.0, -2.0)
    evaluation = evaluation_options(["--fake_dir", str(tmp_path), "--real_dir", str(tmp_path),
                                     "--db_window", "-30,0", "--db_window_B", "-28,-3", "--gpu_ids", "-1"])
    assert evaluation.db_window == (-30.0, 0.0) and evaluation.db_window_B == (-28.0, -3.0)
    # the scripts without windows build the same parser, so any negative value they take later parses alike
    assert isinstance(visualization_options("content", ["--model", "VGG16", "--layers_ids", "3"])[1], ArgumentParser)
    assert isinstance(make_dataset.build_parser(), ArgumentParser)


def test_a_bad_spaced_window_is_still_a_one_line_argument_error(tmp_path):
    """The spaced form goes through the option's own check (LOW < HIGH), not 'expected one argument'."""
    code, _, stderr = run_script("train.py", ["--model", "ugatit", "--dataroot", tmp_path, "--db_window_B", "-5,-25"])
    assert code == 2 and "argument --db_window_B: expected LOW < HIGH, got '-5,-25'" in stderr.splitlines()[-1]

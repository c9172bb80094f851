"""Per-domain radiometry: options and their precedence, bands, dB windows and units per domain, channel rules,
the record that model files carry, false colour, and the Gram file's record."""

import argparse
import dataclasses

import pytest
import torch
from conftest import gatys_train_args
from raster_helpers import db_to_power, optical_bands, sar_db_bands, write_raster
from ugatit_helpers import run_entry_point

import train as train_script
from data.image_io import read_image
from data.radiometry import (
    Radiometry,
    add_radiometry_options,
    radiometry_for,
    radiometry_record,
    to_channels,
    use_radiometry_record,
)
from util.checkpoint import load_checkpoint
from util.errors import SargenError
from util.visuals import FALSE_COLOUR_WINDOWS_DB, display_image, heatmap_overlay


def parse(*argv, **extra):
    """Radiometry options of a command line, with the channel counts and any `extra` attributes."""
    opt = add_radiometry_options(argparse.ArgumentParser()).parse_args(list(argv))
    opt.input_nc, opt.output_nc = extra.pop("input_nc", 3), extra.pop("output_nc", 2)
    for name, value in extra.items():
        setattr(opt, name, value)
    return opt


def test_plain_option_sets_both_domains_and_the_domain_option_wins():
    opt = parse("--db_window=-30,5", "--db_window_B=-20,0", "--intensity_scaling", "db")
    a, b = radiometry_for(opt, "A"), radiometry_for(opt, "B")
    assert (a.mode, a.db_window, a.channels) == ("db", (-30.0, 5.0), 3)
    assert (b.mode, b.db_window, b.channels) == ("db", (-20.0, 0.0), 2)
    assert b.option("db_window") == "--db_window_B" and a.option("db_window") == "--db_window"


def test_options_win_over_the_record_which_wins_over_the_dataset_defaults():
    defaults = {"A": {"bands": (4, 3, 2), "intensity_scaling": "percentile"}, "B": {"intensity_scaling": "db"}}
    opt = parse("--percentiles_A", "1,99", radiometry_defaults=defaults, dataset_mode="sen12ms")
    assert radiometry_for(opt, "A") == Radiometry("percentile", (1.0, 99.0), bands=(4, 3, 2), channels=3)
    assert "sen12ms default" in radiometry_for(opt, "A").setting("bands")
    record = {"A": Radiometry("minmax", bands=(2,), channels=3).record(),
              "B": Radiometry("db", db_window=(-22.0, -2.0), input_unit="db", channels=2).record()}
    changes = use_radiometry_record(opt, record, "model.pth")
    assert radiometry_for(opt, "A") == Radiometry("minmax", (1.0, 99.0), bands=(2,), channels=3)
    assert radiometry_for(opt, "B").db_window == (-22.0, -2.0)
    assert changes == ["--percentiles_A 1,99 (training: 2,98)"]


def test_record_round_trips_and_a_damaged_record_is_one_line():
    rule = Radiometry("db", db_window=(-25.0, 0.0), input_unit="db", bands=(1, 2), nodata=-9999.0, channels=2)
    assert Radiometry.from_record(rule.record()) == rule
    assert rule.record() == {"intensity_scaling": "db", "percentiles": [2.0, 98.0], "db_window": [-25.0, 0.0],
                             "input_unit": "db", "bands": [1, 2], "nodata": -9999.0, "channels": 2}
    without_nodata = {name: value for name, value in rule.record().items() if name != "nodata"}  # older records
    assert Radiometry.from_record(without_nodata) == dataclasses.replace(rule, nodata=None)
    with pytest.raises(SargenError, match=r"^m.pth: its radiometry record of domain B is damaged"):
        Radiometry.from_record({"bands": "x"}, "B", "m.pth")


def test_the_chosen_bands_reach_the_network_in_order(tmp_path):
    """Bands 4,3,2 of a 12-band int16 file (filled with 1500, 1000, 500) become R, G, B = 1, 0.5, 0."""
    path = write_raster(tmp_path / "s2.tif", optical_bands())
    image = read_image(path, None, radiometry_for(parse("--bands_A", "4,3,2", "--intensity_scaling_A", "minmax"), "A"))
    assert torch.allclose(image[:, 5, 5], torch.tensor([1.0, 0.5, 0.0]))
    with pytest.raises(SargenError, match=r"^--bands_A 14: .*s2.tif has 12 band\(s\), no band 14$"):
        read_image(path, None, radiometry_for(parse("--bands_A", "14"), "A"))


def test_db_windows_apply_per_domain_in_db_and_linear_files(tmp_path):
    """VV -10 / VH -17 dB: 0.5 / 0.15 in domain B's window -20..0, 0.5 / 0.325 in domain A's -30..10; a linear
    power file read with the db rule gives what the dB file gives."""
    db_file = write_raster(tmp_path / "s1_db.tif", sar_db_bands(vv_db=-10.0))
    power_file = write_raster(tmp_path / "s1_power.tif", db_to_power(sar_db_bands(vv_db=-10.0)))
    opt = parse("--intensity_scaling", "db", "--db_window_A=-30,10", "--db_window_B=-20,0", "--input_unit_B", "db")
    image_b = read_image(db_file, None, radiometry_for(opt, "B"))
    assert torch.allclose(image_b[:, 3, 3], torch.tensor([0.5, 0.15]), atol=1e-6)  # -10 and -17 dB in -20..0
    image_a = read_image(power_file, 2, radiometry_for(opt, "A"))  # domain A: linear power, window -30..10
    assert torch.allclose(image_a[:, 3, 3], torch.tensor([0.5, 13 / 40]), atol=1e-5)
    linear_b = read_image(power_file, None, radiometry_for(parse("--intensity_scaling", "db", "--db_window=-20,0"),
                                                             "B"))
    assert torch.allclose(linear_b, image_b, atol=1e-5)


def test_a_file_in_the_wrong_unit_is_refused_with_the_option_to_set(tmp_path):
    db_file = write_raster(tmp_path / "s1_db.tif", sar_db_bands())
    with pytest.raises(SargenError, match=r"s1_db.tif has 100% negative pixels.*set --input_unit_B db$"):
        read_image(db_file, None, radiometry_for(parse("--intensity_scaling_B", "db"), "B"))
    optical = write_raster(tmp_path / "s2.tif", optical_bands())
    opt = parse("--intensity_scaling", "db", "--input_unit", "db", "--bands", "4,3")
    with pytest.raises(SargenError, match=r"s2.tif holds int16 integers, not dB values"):
        read_image(optical, None, radiometry_for(opt, "B"))


def test_channel_rules_repeat_one_band_and_name_the_file_and_option_otherwise(tmp_path):
    one = write_raster(tmp_path / "vv.tif", sar_db_bands()[:1])
    rule = radiometry_for(parse("--intensity_scaling", "db", "--input_unit", "db", input_nc=4), "A")
    image = read_image(one, None, rule)
    assert image.shape == (4, 24, 24) and torch.equal(image[0], image[3])
    three = write_raster(tmp_path / "three.tif", sar_db_bands(seed=1).repeat(2, axis=0)[:3])
    with pytest.raises(SargenError, match=r"^.*three.tif has 3 band\(s\) .* network takes 2 channel\(s\) "
                                          r"\(--output_nc\): pick 2 band\(s\) with --bands_B"):
        read_image(three, None, radiometry_for(parse("--intensity_scaling", "db", "--input_unit", "db"), "B"))


def test_batches_convert_between_any_channel_counts():
    """Identity mappings: N -> M by the grey image (luminance of RGB, mean otherwise) repeated."""
    images = torch.rand(2, 4, 5, 5)
    converted = to_channels(images, 2)
    assert converted.shape == (2, 2, 5, 5) and torch.allclose(converted[:, 0], images.mean(1))
    rgb = torch.rand(1, 3, 5, 5)
    assert torch.allclose(to_channels(rgb, 2)[0, 1], 0.299 * rgb[0, 0] + 0.587 * rgb[0, 1] + 0.114 * rgb[0, 2])


def test_dual_pol_false_colour_follows_the_db_windows():
    """R = VV, G = VH, B = VV - VH, each in its dB window; the model values are dB through the domain's window."""
    vv_db, vh_db = -10.0, -20.0  # in the -25..0 window: 0.6 and 0.2 -> model range 0.2 and -0.6
    image = torch.tensor([0.6, 0.2]).view(2, 1, 1).expand(2, 3, 3) * 2 - 1
    rgb = (display_image(image, Radiometry("db", db_window=(-25.0, 0.0))) + 1) / 2
    expected = [(value - low) / (high - low) for value, (low, high) in
                zip((vv_db, vh_db, vv_db - vh_db), FALSE_COLOUR_WINDOWS_DB)]
    assert rgb.shape == (3, 3, 3) and torch.allclose(rgb[:, 1, 1], torch.tensor(expected), atol=1e-5)
    assert torch.equal(display_image(image[:1]), image[:1])  # one band: grey
    assert heatmap_overlay(torch.rand(1, 2, 2), image).shape == (3, 3, 3)


def test_four_band_images_show_their_first_three_bands():
    image = torch.rand(4, 2, 2)
    assert torch.equal(display_image(image), image[:3])


def test_gram_file_records_the_radiometry(x2ka_root, tmp_path, monkeypatch):
    """train.py --model gatys stores how both domains were read (per-domain options included) in the Gram file."""
    run_entry_point(train_script, gatys_train_args(x2ka_root, tmp_path, "--db_window_B=-20,0"), monkeypatch)
    payload = load_checkpoint(tmp_path / "checkpoints" / "tiny" / "latest_gram.pth")
    assert payload["radiometry"]["B"]["db_window"] == [-20.0, 0.0]
    assert payload["radiometry"]["B"]["channels"] == 3 and payload["radiometry"]["A"]["intensity_scaling"] == "auto"
    assert radiometry_record(parse("--db_window_B=-20,0", input_nc=3, output_nc=3)) == payload["radiometry"]

"""From an image's [0, 1] values back to SAR physical units: linear intensity, dB, and which pixels are clipped.

An image read through data/image_io holds values v in [0, 1] and the window (low, high) its reading rule mapped
to 0 and 1 (RasterInfo.window). PhysicalScale inverts that exactly:
- ``--intensity_scaling db``: low + v (high - low) is dB (the reading window), whatever the file held;
- 8-bit files (any other rule): the grey level low + v (high - low) is a rendering: level / 255 spans the dB
  window ``--db_window`` (``--intensity_unit db``, the default for 8-bit files), or is amplitude or intensity;
- other files (16-bit, float) under a percentile, min-max or automatic rule: low + v (high - low) is the file's
  own value, in ``--intensity_unit`` (default: ``--input_unit``, dB or linear power).
Values at 0 or 1 were clipped by the window (or the rendering): the speckle statistics treat them as censored.
"""

from dataclasses import dataclass

import numpy as np

from data.radiometry import db_to_linear, linear_to_db

INTENSITY_UNITS = ("auto", "db", "amplitude", "intensity")
EIGHT_BIT_LEVELS = 255


@dataclass(frozen=True)
class Censoring:
    """Clipped pixels in linear intensity: a pixel at `low_value` stood below `low_threshold`, one at
    `high_value` above `high_threshold` (thresholds differ from the values by half a stored level)."""

    low_value: float
    low_threshold: float
    high_value: float
    high_threshold: float


@dataclass(frozen=True)
class PhysicalScale:
    """v in [0, 1] -> offset + gain * v, a value in `unit` (db, amplitude or intensity); `step`: the spacing of
    the stored levels in v (1/255 for 8-bit images read as value / 255; 0 for continuous data)."""

    unit: str
    offset: float
    gain: float
    step: float = 0.0

    def values(self, unit_values):
        """The values in `unit` of [0, 1] values, as float64."""
        return self.offset + self.gain * np.asarray(unit_values, dtype=np.float64)

    def linear(self, unit_values):
        """Linear intensity (power) of [0, 1] values."""
        values = self.values(unit_values)
        if self.unit == "db":
            return db_to_linear(values)
        if self.unit == "amplitude":
            return values ** 2
        return values

    def decibels(self, unit_values):
        """dB of [0, 1] values (10 log10 of linear intensity, floored at -100 dB)."""
        if self.unit == "db":
            return self.values(unit_values)
        return linear_to_db(self.linear(unit_values))

    def censoring(self):
        """The censoring of pixels clipped at v = 0 and v = 1, in linear intensity."""
        values = self.linear([0.0, self.step / 2, 1.0 - self.step / 2, 1.0])
        low, low_threshold, high_threshold, high = (float(value) for value in values)
        return Censoring(low, low_threshold, high, high_threshold)

    def description(self):
        """The rule in words, for metrics.json."""
        low, high = self.offset, self.offset + self.gain
        unit = {"db": "dB", "amplitude": "amplitude", "intensity": "linear intensity"}[self.unit]
        levels = f", levels every {self.step:.4g}" if self.step else ""
        return f"0..1 -> {low:.6g}..{high:.6g} {unit}{levels}"


def file_unit(intensity_unit, input_unit):
    """The unit of a 16-bit or float file's values: --intensity_unit, or for auto the --input_unit."""
    if intensity_unit != "auto":
        return intensity_unit
    return "db" if input_unit == "db" else "intensity"


def physical_scale(scaling, window, dtype, intensity_unit="auto", db_window=(-25.0, 0.0)):
    """The PhysicalScale of an image read with IntensityScaling `scaling` through `window`, from a file of `dtype`.

    `intensity_unit` (auto, db, amplitude, intensity) says what 8-bit renderings and the values of other files
    stand for; `db_window` is the dB span of 8-bit dB renderings.
    """
    low, high = (float(value) for value in window)
    if scaling.mode == "db":
        return PhysicalScale("db", low, high - low)
    if str(dtype) == "uint8":
        span = high - low
        step = 1.0 / span if span > 0 else 0.0
        unit = "db" if intensity_unit == "auto" else intensity_unit
        if unit == "db":
            db_low, db_high = (float(value) for value in db_window)
            scale = (db_high - db_low) / EIGHT_BIT_LEVELS
            return PhysicalScale("db", db_low + low * scale, span * scale, step)
        return PhysicalScale(unit, low / EIGHT_BIT_LEVELS, span / EIGHT_BIT_LEVELS, step)
    return PhysicalScale(file_unit(intensity_unit, scaling.input_unit), low, high - low)


def rendering_scale(scaling, intensity_unit="auto", db_window=(-25.0, 0.0)):
    """The PhysicalScale of [0, 1] values with no file behind them (a model's output in training): the fixed dB
    window of the db rule, else an 8-bit-style rendering by `intensity_unit` and `db_window` without levels."""
    if scaling.mode == "db":
        low, high = scaling.db_window
        return PhysicalScale("db", float(low), float(high - low))
    scale = physical_scale(scaling, (0.0, EIGHT_BIT_LEVELS), "uint8", intensity_unit, db_window)
    return PhysicalScale(scale.unit, scale.offset, scale.gain)


def clipped_masks(unit_values):
    """(clipped low, clipped high) boolean masks of [0, 1] values: pixels at 0 or 1."""
    return unit_values <= 0.0, unit_values >= 1.0

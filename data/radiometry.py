"""Radiometry: how a file's raw values map to [0, 1] (bands, scaling rule, window, unit) and back.

``--bands`` (1-based, e.g. ``1`` or ``3,2,1``) picks bands before scaling. Scaling rule for pixel
values (``--intensity_scaling``):
- ``auto`` (default): 8-bit images are divided by 255; 16-bit, 32-bit integer and float images
  (typical SAR amplitude or power) are mapped with the per-image ``percentile`` rule.
- ``percentile``: values between the ``--percentiles`` (default 2 and 98) map to 0..1, clipped.
- ``db``: values are converted to dB (10 log10, unless ``--input_unit db``) and the fixed
  ``--db_window`` (default -25..0 dB, the usual Sentinel-1 VV convention) maps to 0..1, clipped.
- ``minmax``: the image's own minimum and maximum map to 0..1.
The window a file was mapped with is returned by ``data.image_io.read_image_with_info``;
``IntensityScaling.from_unit_range`` maps [0, 1] values back through it (dB or linear power for the db rule).
"""

import argparse
from dataclasses import dataclass

import numpy as np
import torch

from util.errors import SargenError

SCALING_MODES = ("auto", "percentile", "db", "minmax")
LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def linear_to_db(values):
    """10 log10 of linear power, floored at -100 dB."""
    return 10.0 * np.log10(np.maximum(values, 1e-10))


def db_to_linear(values):
    """Linear power of dB values."""
    return np.power(10.0, np.asarray(values) / 10.0)


@dataclass(frozen=True)
class IntensityScaling:
    """Which bands are read and how their raw values map to [0, 1] (see the module docstring)."""

    mode: str = "auto"
    percentiles: tuple = (2.0, 98.0)
    db_window: tuple = (-25.0, 0.0)
    input_unit: str = "linear"
    bands: tuple | None = None

    OPTION_NAMES = {"mode": "intensity_scaling", "percentiles": "percentiles", "db_window": "db_window",
                    "input_unit": "input_unit", "bands": "bands"}

    @classmethod
    def from_options(cls, opt):
        """Build the rule from parsed command-line options (options `opt` lacks keep their defaults)."""
        values = {field: getattr(opt, name) for field, name in cls.OPTION_NAMES.items() if hasattr(opt, name)}
        return cls(**{field: tuple(value) if isinstance(value, list) else value for field, value in values.items()})

    def to_window_unit(self, values):
        """Values in the unit of the window: dB for the db rule on linear input, else unchanged."""
        return linear_to_db(values) if self.mode == "db" and self.input_unit == "linear" else values

    def window(self, values, dtype):
        """The (low, high) values mapped to 0 and 1: fixed, or measured on `values` (already in the window unit)."""
        mode = self.mode
        if mode == "auto":
            if dtype == np.uint8:
                return 0.0, 255.0
            mode = "percentile"
        if mode == "percentile":
            low, high = np.percentile(values, self.percentiles)
            return float(low), float(high)
        if mode == "minmax":
            return float(values.min()), float(values.max())
        return tuple(float(value) for value in self.db_window)

    def from_unit_range(self, values, window, unit=None):
        """Map [0, 1] values back through `window` (the inverse of the rule) to float32 in `unit`.

        For the db rule `unit` is ``db`` or ``linear`` (power), by default the --input_unit; for the other
        rules the result is in the file's own unit.
        """
        low, high = window
        physical = np.float32(low) + np.asarray(values, dtype=np.float32) * np.float32(high - low)
        if self.mode == "db" and (unit or self.input_unit) == "linear":
            physical = db_to_linear(physical)
        return physical.astype(np.float32)


DEFAULT_SCALING = IntensityScaling()


def parse_float_pair(text):
    """Parse 'LOW,HIGH' into two floats with LOW < HIGH (an argparse type)."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers LOW,HIGH, got '{text}'") from None
    if not low < high:
        raise argparse.ArgumentTypeError(f"expected LOW < HIGH, got '{text}'")
    return low, high


def parse_band_list(text):
    """Parse '1' or '3,2,1' into a tuple of 1-based band numbers (an argparse type)."""
    try:
        bands = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected band numbers such as 1 or 3,2,1, got '{text}'") from None
    if min(bands) < 1:
        raise argparse.ArgumentTypeError(f"band numbers start at 1, got '{text}'")
    return bands


def select_bands(array, bands, path="image"):
    """The 1-based `bands` of an HxWxC array, in that order (all bands when `bands` is None)."""
    if bands is None:
        return array
    count = array.shape[2]
    missing = [band for band in bands if not 1 <= band <= count]
    if missing:
        raise SargenError(f"--bands {','.join(map(str, bands))}: {path} has {count} band(s), no band {missing[0]}")
    return array[:, :, [band - 1 for band in bands]]


def scale_to_unit_range(array, scaling, path="image"):
    """Map raw pixel values to float32 in [0, 1] by the scaling rule; return them and the (low, high) window."""
    values = array.astype(np.float32)
    if not np.isfinite(values).all():
        raise SargenError(f"{path} has NaN or infinite pixels: mask or fill them before use")
    values = scaling.to_window_unit(values)
    low, high = scaling.window(values, array.dtype)
    if not high > low:
        return np.zeros_like(values), (low, high)
    with np.errstate(over="ignore"):  # values far outside the window may overflow to +-inf: clipped below
        span = np.float32(high - low)
        if np.isfinite(span):
            scaled = (values - np.float32(low)) / span
        else:  # a window wider than float32's range (pixels near +-3.4e38): inf / inf would be NaN
            scaled = (values.astype(np.float64) - low) / (high - low)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32), (low, high)


def convert_channels(array, channels, path="image"):
    """Give an HxWxC float array `channels` channels (1: luminance, 3: grey repeated)."""
    if channels is None or array.shape[2] == channels:
        return array
    if channels == 1 and array.shape[2] == 3:
        return (array @ LUMINANCE_WEIGHTS)[:, :, None]
    if channels == 3 and array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    raise SargenError(f"cannot convert the {array.shape[2]} bands of {path} to {channels} channel(s): pick 1 or 3 "
                      f"bands with --bands (e.g. --bands 1 or --bands 3,2,1)")


def to_channels(images, channels):
    """A BxCxHxW batch with `channels` channels, by the same rule as convert_channels."""
    if images.shape[1] == channels:
        return images
    if channels == 1:
        weights = torch.as_tensor(LUMINANCE_WEIGHTS, dtype=images.dtype, device=images.device)
        return torch.einsum("bchw,c->bhw", images[:, :3], weights)[:, None]
    return images.expand(-1, channels, -1, -1)


def tensor_to_physical(image, scaling, window, unit=None, value_range=(0.0, 1.0)):
    """A CxHxW float tensor in `value_range` as an HxWxC float32 array in the scaling rule's physical unit."""
    low, high = value_range
    unit_values = ((image.detach().float().cpu().clamp(low, high) - low) / (high - low)).numpy()
    return scaling.from_unit_range(unit_values.transpose(1, 2, 0), window, unit)


def add_radiometry_options(parser):
    """Add the options of band selection and the pixel scaling rule to an argparse parser."""
    parser.add_argument("--bands", type=parse_band_list, default=None,
                        help="1-based bands to read from multi-band images, e.g. 1 (VV) or 3,2,1 (None: all)")
    parser.add_argument("--intensity_scaling", default="auto", choices=SCALING_MODES,
                        help="how 16-bit/float pixel values map to the model range (see data/radiometry.py)")
    parser.add_argument("--percentiles", type=parse_float_pair, default=(2.0, 98.0),
                        help="LOW,HIGH percentiles for --intensity_scaling percentile")
    parser.add_argument("--db_window", type=parse_float_pair, default=(-25.0, 0.0),
                        help="LOW,HIGH dB window for --intensity_scaling db")
    parser.add_argument("--input_unit", default="linear", choices=("linear", "db"),
                        help="unit of float SAR pixels for --intensity_scaling db")
    return parser

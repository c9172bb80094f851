"""The image reader and writer: PNG/JPEG/TIFF files <-> float tensors in [0, 1].

Scaling rule for pixel values (``--intensity_scaling``):
- ``auto`` (default): 8-bit images are divided by 255; 16-bit, 32-bit integer and float images
  (typical SAR amplitude or power) are mapped with the per-image ``percentile`` rule.
- ``percentile``: values between the ``--percentiles`` (default 2 and 98) map to 0..1, clipped.
- ``db``: values are converted to dB (10 log10, unless ``--input_unit db``) and the fixed
  ``--db_window`` (default -25..0 dB, the usual Sentinel-1 VV convention) maps to 0..1, clipped.
- ``minmax``: the image's own minimum and maximum map to 0..1.
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from util.errors import SargenError
from util.fileio import atomic_path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SCALING_MODES = ("auto", "percentile", "db", "minmax")
PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}
LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class IntensityScaling:
    """How raw pixel values are mapped to [0, 1] (see the module docstring)."""

    mode: str = "auto"
    percentiles: tuple = (2.0, 98.0)
    db_window: tuple = (-25.0, 0.0)
    input_unit: str = "linear"

    @classmethod
    def from_options(cls, opt):
        """Build the rule from parsed command-line options."""
        return cls(opt.intensity_scaling, tuple(opt.percentiles), tuple(opt.db_window), opt.input_unit)


def parse_float_pair(text):
    """Parse 'LOW,HIGH' into two floats with LOW < HIGH (an argparse type)."""
    import argparse

    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers LOW,HIGH, got '{text}'") from None
    if not low < high:
        raise argparse.ArgumentTypeError(f"expected LOW < HIGH, got '{text}'")
    return low, high


def add_image_options(parser):
    """Add the options of the pixel scaling rule to an argparse parser."""
    parser.add_argument("--intensity_scaling", default="auto", choices=SCALING_MODES,
                        help="how 16-bit/float pixel values map to the model range (see data/image_io.py)")
    parser.add_argument("--percentiles", type=parse_float_pair, default=(2.0, 98.0),
                        help="LOW,HIGH percentiles for --intensity_scaling percentile")
    parser.add_argument("--db_window", type=parse_float_pair, default=(-25.0, 0.0),
                        help="LOW,HIGH dB window for --intensity_scaling db")
    parser.add_argument("--input_unit", default="linear", choices=("linear", "db"),
                        help="unit of float SAR pixels for --intensity_scaling db")
    return parser


def is_image_file(path):
    """Whether `path` has one of the supported image extensions."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_image_files(folder, max_count=None, what="images"):
    """Sorted image files directly in `folder`; raises if the folder is missing or has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SargenError(f"{what} folder not found: {folder} (check --dataroot and the folder layout)")
    files = sorted(path for path in folder.iterdir() if path.is_file() and is_image_file(path))
    if not files:
        raise SargenError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}: add images or fix --dataroot")
    return files[:max_count] if max_count is not None else files


def read_raw_array(path):
    """Read an image file into an HxWxC numpy array of its native dtype."""
    path = Path(path)
    if not path.is_file():
        raise SargenError(f"image not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                array = _pil_to_array(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise SargenError(f"cannot read image {path}: {error} (corrupt, truncated or unsupported file)") from None
    return array if array.ndim == 3 else array[:, :, None]


def _pil_to_array(image):
    """Convert a loaded Pillow image to a numpy array, keeping 16-bit and float values."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image, dtype=np.uint16)
    if image.mode in ("I", "F"):
        return np.asarray(image)
    if image.mode in ("1", "L"):
        return np.asarray(image.convert("L"))
    if image.mode == "LA":
        return np.asarray(image.convert("L"))
    return np.asarray(image.convert("RGB"))


def to_unit_range(array, scaling, path="image"):
    """Map raw pixel values to float32 in [0, 1] by the scaling rule."""
    values = array.astype(np.float32)
    if not np.isfinite(values).all():
        raise SargenError(f"{path} has NaN or infinite pixels: mask or fill them before use")
    mode = scaling.mode
    if mode == "auto":
        if array.dtype == np.uint8:
            return values / 255.0
        mode = "percentile"
    if mode == "percentile":
        low, high = np.percentile(values, scaling.percentiles)
    elif mode == "minmax":
        low, high = float(values.min()), float(values.max())
    else:
        if scaling.input_unit == "linear":
            values = 10.0 * np.log10(np.maximum(values, 1e-10))
        low, high = scaling.db_window
    if high <= low:
        return np.zeros_like(values)
    return np.clip((values - np.float32(low)) / np.float32(high - low), 0.0, 1.0).astype(np.float32)


def convert_channels(array, channels):
    """Give an HxWxC float array `channels` channels (1: luminance, 3: grey repeated)."""
    if channels is None or array.shape[2] == channels:
        return array
    if channels == 1:
        return (array[:, :, :3] @ LUMINANCE_WEIGHTS)[:, :, None]
    if channels == 3 and array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    raise SargenError(f"cannot convert a {array.shape[2]}-channel image to {channels} channels")


def to_channels(images, channels):
    """A BxCxHxW batch with `channels` channels, by the same rule as convert_channels."""
    if images.shape[1] == channels:
        return images
    if channels == 1:
        weights = torch.as_tensor(LUMINANCE_WEIGHTS, dtype=images.dtype, device=images.device)
        return torch.einsum("bchw,c->bhw", images[:, :3], weights)[:, None]
    return images.expand(-1, channels, -1, -1)


def read_image(path, channels=None, scaling=IntensityScaling()):
    """Read an image file as a float32 CxHxW tensor in [0, 1] with `channels` channels."""
    array = to_unit_range(read_raw_array(path), scaling, path)
    array = convert_channels(array, channels)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def tensor_to_uint8(image, value_range=(0.0, 1.0)):
    """Convert a CxHxW float tensor in `value_range` to an HxW or HxWx3 uint8 array."""
    low, high = value_range
    image = image.detach().float().cpu().clamp(low, high)
    array = ((image - low) / (high - low) * 255.0).round().to(torch.uint8).numpy()
    array = array.transpose(1, 2, 0)
    return array[:, :, 0] if array.shape[2] == 1 else array


def write_image(image, path, value_range=(0.0, 1.0)):
    """Write a uint8 HxW(xC) array or a CxHxW float tensor in `value_range` to `path` atomically."""
    path = Path(path)
    if isinstance(image, torch.Tensor):
        image = tensor_to_uint8(image, value_range)
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    file_format = PIL_FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise SargenError(f"cannot write {path}: use one of {', '.join(PIL_FORMATS)}")
    with atomic_path(path) as temp_path:
        Image.fromarray(image).save(temp_path, format=file_format)
    return path

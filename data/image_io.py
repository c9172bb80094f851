"""The image reader and writer: PNG/JPEG/BMP and (Geo)TIFF files <-> float tensors in [0, 1].

TIFF files are read and written with tifffile (any dtype, one or many bands, GeoTIFF tags kept);
PNG, JPEG and BMP, and TIFFs tifffile cannot decode (e.g. LZW or JPEG without imagecodecs), with Pillow.
How raw values become [0, 1] (bands, scaling rule, window, unit) and back is data/radiometry.py's.
"""

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image

from data.radiometry import DEFAULT_SCALING, add_radiometry_options, convert_channels, scale_to_unit_range, select_bands
from util.errors import SargenError
from util.fileio import atomic_path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
TIFF_EXTENSIONS = (".tif", ".tiff")
PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # Pillow's decompression-bomb limit, about 89.5 M pixels
# Where the pixels lie: ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory, GeoDoubleParams,
# GeoAsciiParams. GDAL_METADATA and GDAL_NODATA describe the values (band names, scale/offset, no-data).
GEOREFERENCING_TAGS = (33550, 33922, 34264, 34735, 34736, 34737)
GDAL_VALUE_TAGS = (42112, 42113)
TIFF_AXES_TO_HWC = {"YX": (0, 1), "YXS": (0, 1, 2), "SYX": (1, 2, 0)}  # transposes to HxW(xC)
TIFFFILE_PHOTOMETRICS = (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB)
ALPHA_SAMPLES = (tifffile.EXTRASAMPLE.ASSOCALPHA, tifffile.EXTRASAMPLE.UNASSALPHA)


@dataclass(frozen=True)
class RasterInfo:
    """What reading an image found and used: the window mapped to [0, 1], dtype, size and GeoTIFF tags."""

    window: tuple  # (low, high) mapped to 0 and 1: in dB for the db rule, else in the file's unit
    dtype: str  # the file's pixel type, e.g. float32
    size: tuple  # (height, width)
    band_count: int  # bands in the file, before --bands
    geotags: tuple = ()  # GeoTIFF and GDAL tags as tifffile extratags (code, datatype, count, value, True)

    @property
    def georeferenced(self):
        """Whether the file carries GeoTIFF georeferencing."""
        return any(tag[0] in GEOREFERENCING_TAGS for tag in self.geotags)


def add_image_options(parser):
    """Add the options of how images are read: bands, the pixel scaling rule and the pixel-count guard."""
    add_radiometry_options(parser)
    parser.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="refuse images of more pixels (decompression-bomb guard; default Pillow's limit); "
                             "0: no limit, e.g. for whole Sentinel-1 scenes with app.py --tile")
    return parser


def apply_image_limits(opt):
    """Make --max_pixels the limit of every reader (Pillow's and the TIFF check); 0 means no limit."""
    limit = getattr(opt, "max_pixels", DEFAULT_MAX_PIXELS)
    if limit < 0:
        raise SargenError(f"--max_pixels {limit}: give a pixel count, or 0 for no limit")
    Image.MAX_IMAGE_PIXELS = limit or None


def is_image_file(path):
    """Whether `path` has one of the supported image extensions."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_tiff(path):
    """Whether `path` names a TIFF file (.tif, .tiff)."""
    return Path(path).suffix.lower() in TIFF_EXTENSIONS


def list_image_files(folder, max_count=None, what="images"):
    """Sorted image files directly in `folder`; raises if the folder is missing or has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SargenError(f"{what} folder not found: {folder} (check --dataroot and the folder layout)")
    files = sorted(path for path in folder.iterdir() if path.is_file() and is_image_file(path))
    if not files:
        raise SargenError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}: add images or fix --dataroot")
    return files[:max_count] if max_count is not None else files


def read_raster(path):
    """Read an image file into an HxWxC array of its native dtype and its GeoTIFF tags (none for non-TIFFs)."""
    path = Path(path)
    if path.is_dir():
        raise SargenError(f"cannot read image {path}: it is a folder, not an image file")
    if not path.is_file():
        raise SargenError(f"image not found: {path}")
    array, geotags = read_tiff(path) if is_tiff(path) else (read_with_pillow(path), ())
    if array.size == 0:
        raise SargenError(f"cannot read image {path}: it has no pixels ({'x'.join(map(str, array.shape))})")
    return array, geotags


def max_image_pixels():
    """The largest pixel count read: Pillow's decompression-bomb limit Image.MAX_IMAGE_PIXELS (None: no limit)."""
    return Image.MAX_IMAGE_PIXELS


@contextlib.contextmanager
def decoding(path):
    """Turn any failure of the decoders on `path` into a one-line SargenError naming the file.

    Pillow and tifffile raise many types on corrupt bytes (struct.error, zlib.error, ZeroDivisionError,
    MemoryError, ...), so everything but sargen's own errors is caught here, around the decoder calls only.
    """
    try:
        yield
    except SargenError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise SargenError(f"cannot read image {path}: {first_line(error)} (a decompression-bomb guard: raise "
                          f"--max_pixels, 0 for no limit, if you trust the file)") from None
    except Exception as error:
        raise SargenError(f"cannot read image {path}: {first_line(error)} (corrupt, truncated or unsupported "
                          f"file)") from None


def first_line(error):
    """The first line of an exception's message, or its type name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextlib.contextmanager
def quiet_tifffile():
    """Keep tifffile's log warnings about damaged files off the console (the error, if any, says it)."""
    tiff_logger = logging.getLogger("tifffile")
    level = tiff_logger.level
    tiff_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        tiff_logger.setLevel(level)


def read_with_pillow(path):
    """Read an image file with Pillow into an HxWxC array (8-bit, 16-bit or float values kept)."""
    with decoding(path), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "Tag data larger than file": a damaged file fails below or reads
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # over MAX_IMAGE_PIXELS: refused
        with Image.open(path) as image:
            image.load()
            array = _pil_to_array(image)
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


def read_tiff(path):
    """Read a (Geo)TIFF's first image into an HxWxC array of its native dtype, with its GeoTIFF tags."""
    with decoding(path), quiet_tifffile(), tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise SargenError(f"cannot read image {path}: it holds no image (corrupt or unsupported TIFF)")
        _check_pixel_count(tif.series[0], path)
        geotags = _geotiff_tags(tif.pages[0])
        array = _tiff_pixels(tif, path)
    return array, geotags


def _check_pixel_count(series, path):
    """Refuse, before decoding, a TIFF image of more pixels (bands not counted) than max_image_pixels()."""
    limit = max_image_pixels()
    pixels = 1
    for size, axis in zip(series.shape, series.axes):
        pixels *= 1 if axis == "S" else int(size)
    if limit is not None and pixels > limit:
        raise SargenError(f"cannot read image {path}: {'x'.join(map(str, series.shape))} is {pixels} pixels, more "
                          f"than the limit of {limit} (--max_pixels, a decompression-bomb guard): raise --max_pixels "
                          f"(0: no limit) if you trust the file, or cut it into smaller patches")


def _geotiff_tags(page):
    """A TIFF page's GeoTIFF and GDAL tags as tifffile extratags."""
    tags = []
    for code in GEOREFERENCING_TAGS + GDAL_VALUE_TAGS:
        tag = page.tags.get(code)
        if tag is not None:
            value = tag.value if isinstance(tag.value, str) else tuple(np.atleast_1d(tag.value).tolist())
            tags.append((code, int(tag.dtype), tag.count, value, True))
    return tuple(tags)


def _tiff_pixels(tif, path):
    """The pixels of a TIFF's first image as HxWxC: tifffile for grey and multi-band data, Pillow for the rest."""
    page, series = tif.pages[0], tif.series[0]
    if page.photometric not in TIFFFILE_PHOTOMETRICS:  # palette, min-is-white, CMYK, YCbCr: Pillow converts
        return read_with_pillow(path)
    try:
        array = series.asarray()
    except ValueError as error:
        if "imagecodecs" not in str(error):
            raise
        return _read_compressed_with_pillow(path, error)
    array = _to_hwc(array, series.axes, path)
    if page.photometric == tifffile.PHOTOMETRIC.RGB and any(sample in ALPHA_SAMPLES for sample in page.extrasamples):
        array = array[:, :, :3]
    return _check_dtype(array, path)


def _read_compressed_with_pillow(path, error):
    """Pillow's reading of a TIFF whose compression tifffile cannot decode without imagecodecs."""
    try:
        return read_with_pillow(path)
    except SargenError:
        raise SargenError(f"cannot read image {path}: {error} (pip install imagecodecs, or save the file "
                          f"uncompressed or with deflate compression)") from None


def _to_hwc(array, axes, path):
    """An image of tifffile axes (YX, YXS or SYX, after dropping length-1 axes) as HxWxC; else an error."""
    kept = [index for index, axis in enumerate(axes) if axis in "YX" or array.shape[index] > 1]
    shape, axes = array.shape, "".join(axes[index] for index in kept)
    array = array.reshape([shape[index] for index in kept])
    if axes not in TIFF_AXES_TO_HWC:
        raise SargenError(f"cannot read image {path}: unsupported TIFF layout {'x'.join(map(str, shape))} "
                          f"(axes {axes}); sargen reads one image per file, HxW or with its bands as samples "
                          f"(HxWxBANDS or BANDSxHxW, as GDAL writes): save a band stack with "
                          f"tifffile.imwrite(path, bands, planarconfig='separate')")
    array = array.transpose(TIFF_AXES_TO_HWC[axes])
    return array if array.ndim == 3 else array[:, :, None]


def _check_dtype(array, path):
    """Refuse complex pixels; turn 1-bit images into 8-bit 0/255 as Pillow does."""
    if np.iscomplexobj(array):
        raise SargenError(f"{path} holds complex (SLC) pixels: convert them to intensity |s|^2 or amplitude first")
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    return array


def read_image_with_info(path, channels=None, scaling=DEFAULT_SCALING):
    """Read an image as read_image does; also return its RasterInfo (window used, dtype, size, GeoTIFF tags)."""
    raw, geotags = read_raster(path)
    selected = select_bands(raw, scaling.bands, path, scaling)
    scaling.check_unit(selected, path)
    array, window = scale_to_unit_range(selected, scaling, path)
    array = convert_channels(array, scaling.channels if channels is None else channels, path, scaling)
    info = RasterInfo(window, str(raw.dtype), tuple(raw.shape[:2]), raw.shape[2], geotags)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))), info


def read_image(path, channels=None, scaling=DEFAULT_SCALING):
    """Read an image file as a float32 CxHxW tensor in [0, 1] with `channels` channels (default: the rule's)."""
    return read_image_with_info(path, channels, scaling)[0]


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
    if is_tiff(path):
        return write_raster(image, path)
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    file_format = PIL_FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise SargenError(f"cannot write {path}: use one of {', '.join(IMAGE_EXTENSIONS)}")
    with atomic_path(path) as temp_path:
        Image.fromarray(image).save(temp_path, format=file_format)
    return path


def write_raster(array, path, geotags=()):
    """Write an HxW or HxWxC array as a (Geo)TIFF carrying `geotags` (from RasterInfo), atomically.

    Bands are stored pixel-interleaved, uncompressed, as GDAL does by default; 3-band 8-bit images as RGB.
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    rgb = array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8
    with atomic_path(path) as temp_path:
        tifffile.imwrite(temp_path, array, photometric="rgb" if rgb else "minisblack",
                         planarconfig="contig" if array.ndim == 3 else None, metadata=None, software="sargen",
                         extratags=list(geotags))
    return Path(path)

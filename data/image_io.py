"""The image reader and writer: image files <-> arrays and float tensors in [0, 1], georeferencing and no-data.

GeoTIFF, JPEG2000 and VRT files are read through rasterio (GDAL, in its wheels): any band count and data type,
whole or a band of rows at a time (RasterReader), with the CRS, transform, ground control points, no-data
value and band descriptions GDAL finds. PNG, JPEG and BMP are read and written with Pillow. .tif outputs are
Cloud-Optimized GeoTIFFs (RasterWriter). How raw values become [0, 1] (bands, scaling rule, window, unit) and
back is data/radiometry.py's; which pixels are no-data is decided here (valid_mask): those equal to the no-data
value (the file's, or the --nodata options') and NaN or infinite ones.
"""

import contextlib
import functools
import glob
import logging
import os
import sys
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
import torch
import torch.nn.functional as F
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from rasterio.enums import ColorInterp, Resampling
from rasterio.windows import Window

from data.radiometry import (
    DEFAULT_SCALING,
    add_radiometry_options,
    band_indexes,
    convert_channels,
    fill_masked,
    map_to_unit_range,
    radiometry_is_known,
    require_known_radiometry,
    scale_to_unit_range,
    streamed_window,
)
from options.number_types import non_negative_int
from util.errors import SargenError
from util.fileio import atomic_path, os_error_reason, scratch_path
from util.versions import software_text

SOFTWARE_MARK = "sargen "  # how the software record (util.versions.software_text) of the images sargen writes starts
TAG_PREFIX = "SARGEN_"  # GeoTIFF metadata of sargen's writers
SOFTWARE_TAG = f"{TAG_PREFIX}SOFTWARE"
PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}
GDAL_DRIVERS = {".tif": "GTiff", ".tiff": "GTiff", ".jp2": "JP2OpenJPEG", ".vrt": "VRT"}  # only these are tried
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".jp2", ".vrt")
TIFF_EXTENSIONS = (".tif", ".tiff")
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # Pillow's decompression-bomb limit, about 89.5 M pixels
GDAL_OPTIONS = {
    "GDAL_PAM_ENABLED": "NO",  # no .aux.xml side files written next to the user's data
    "GDAL_DISABLE_READDIR_ON_OPEN": "TRUE",  # look for side files by name, never list a folder of 100,000 patches
    "CPL_VSIL_CURL_ALLOWED_FILENAME": "/vsicurl/sargen-reads-local-files-only",  # no network, e.g. from a VRT
    "GDAL_VRT_ENABLE_PYTHON": "NO",  # a VRT never runs code
    "GDAL_CACHEMAX": 64 * 2**20,  # block cache, bytes: GDAL's default (5 % of RAM) would dwarf a streamed scene
    "CPL_DEBUG": "OFF",
}
os.environ.setdefault("PROJ_NETWORK", "OFF")  # PROJ never fetches grids (sargen does not reproject)
# GDAL's messages reach rasterio's loggers; a failure reaches the user as one SargenError line (decoding), so
# they are kept off the console.
logging.getLogger("rasterio").setLevel(logging.CRITICAL + 1)
logger = logging.getLogger("sargen")
READ_CHUNK_PIXELS = 1 << 22  # pixels per read when a scene is measured window by window
COG_OPTIONS = {"COMPRESS": "DEFLATE", "PREDICTOR": "YES", "BLOCKSIZE": 512, "OVERVIEW_RESAMPLING": "AVERAGE",
               "BIGTIFF": "IF_SAFER", "NUM_THREADS": "ALL_CPUS"}
# Strips of a few rows: rows are written as they come (GDAL completes a partial strip from its block cache), so no
# block row of a wide scene is buffered whole.
STAGING_OPTIONS = {"tiled": False, "blockysize": 16, "compress": "ZSTD", "zstd_level": 1, "bigtiff": "IF_SAFER"}


@dataclass(frozen=True)
class RasterInfo:
    """What reading an image found and used: scaling window, pixel type, size, georeferencing and valid pixels."""

    window: tuple | None  # (low, high) mapped to 0 and 1: in dB for the db rule, else in the file's unit
    dtype: str  # the file's pixel type, e.g. float32
    size: tuple  # (height, width)
    band_count: int  # bands in the file, before --bands
    crs: object = None  # rasterio.crs.CRS of the transform (or of the ground control points), None if none
    transform: object = None  # affine.Affine from pixel (column, row) to CRS coordinates, None if not georeferenced
    gcps: tuple = ()  # rasterio GroundControlPoints (e.g. Sentinel-1 GRD), in `crs`
    nodata: float | None = None  # the no-data value used: --nodata if given, else the file's (first band's)
    descriptions: tuple = ()  # the file's band descriptions (None for unnamed bands)
    valid: np.ndarray | None = field(default=None, compare=False, repr=False)  # HxW, True = valid; None: all

    @property
    def georeferenced(self):
        """Whether the file places its pixels on the Earth (a transform or ground control points)."""
        return self.transform is not None or bool(self.gcps)


def add_image_options(parser):
    """Add the options of how images are read: bands, pixel scaling, no-data and the pixel-count guard."""
    add_radiometry_options(parser)
    parser.add_argument("--max_pixels", type=non_negative_int, default=DEFAULT_MAX_PIXELS,
                        help="refuse images of more pixels (decompression-bomb guard; default Pillow's limit); "
                             "0: no limit, e.g. for whole Sentinel-1 scenes with app.py --tile")
    return parser


def apply_image_limits(opt):
    """Make --max_pixels the limit of every reader (Pillow's and the header check of GDAL's); 0 means no limit."""
    Image.MAX_IMAGE_PIXELS = getattr(opt, "max_pixels", DEFAULT_MAX_PIXELS) or None


def is_image_file(path):
    """Whether `path` has one of the supported image extensions."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_tiff(path):
    """Whether `path` names a TIFF file (.tif, .tiff)."""
    return Path(path).suffix.lower() in TIFF_EXTENSIONS


def is_gdal_raster(path):
    """Whether `path` is read through rasterio: GeoTIFF, JPEG2000 or VRT."""
    return Path(path).suffix.lower() in GDAL_DRIVERS


def list_image_files(folder, max_count=None, what="images", option="--dataroot"):
    """Sorted image files directly in `folder`; raises if the folder is missing or has none (the message names
    `option`, the running tool's option that chose the folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SargenError(f"{what} folder not found: {folder} (check {option} and the folder layout)")
    files = sorted(path for path in folder.iterdir() if path.is_file() and is_image_file(path))
    if not files:
        raise SargenError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}: add images or fix {option}")
    return files[:max_count] if max_count is not None else files


def max_image_pixels():
    """The largest pixel count read: Pillow's decompression-bomb limit Image.MAX_IMAGE_PIXELS (None: no limit)."""
    return Image.MAX_IMAGE_PIXELS


def first_line(error):
    """The first line of an exception's message, or its type name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def root_cause(error):
    """The innermost exception behind `error` (rasterio chains GDAL's own message under a generic one)."""
    seen = set()
    while (error.__cause__ or error.__context__) is not None and id(error) not in seen:
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return error


@contextlib.contextmanager
def decoding(path, action="read image"):
    """Turn any failure of the decoders on `path` into a one-line SargenError naming the file.

    Pillow and GDAL raise many types on corrupt bytes (struct.error, zlib.error, RasterioIOError, MemoryError,
    ...), so everything but sargen's own errors is caught here, around the decoder calls only. GDAL runs with
    GDAL_OPTIONS; rasterio's warnings and the messages its GDAL error handler cannot decode (bytes of a corrupt
    file: rasterio's Cython callback prints them through sys.excepthook, then sys.unraisablehook) are kept off
    the console. Exceptions that matter propagate, and are turned into one line, here.
    """
    previous_hooks = sys.excepthook, sys.unraisablehook
    sys.excepthook = _ignore_exception
    sys.unraisablehook = functools.partial(_ignore_rasterio_unraisable, previous_hooks[1])
    try:
        with rasterio.Env(**GDAL_OPTIONS), warnings.catch_warnings(), silenced_stderr():
            warnings.simplefilter("ignore")  # e.g. NotGeoreferencedWarning, "Tag data larger than file"
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # over MAX_IMAGE_PIXELS: refused
            yield
    except SargenError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise SargenError(f"cannot {action} {path}: {first_line(error)} (a decompression-bomb guard: raise "
                          f"--max_pixels, 0 for no limit, if you trust the file)") from None
    except Exception as error:
        cause = root_cause(error)
        if action == "write" or (isinstance(cause, OSError) and cause.errno):  # the disk, not the file's bytes
            raise SargenError(f"cannot {action} {path}: "
                              f"{os_error_reason(cause, path if action == 'write' else None)}") from None
        message = first_line(root_cause(error)).removeprefix(f"{path}: ")
        raise SargenError(f"cannot {action} {path}: {message} (corrupt, truncated or unsupported file)") from None
    finally:
        sys.excepthook, sys.unraisablehook = previous_hooks


@contextlib.contextmanager
def silenced_stderr():
    """Point file descriptor 2 at the null device: libraries inside GDAL (libgeotiff, e.g. "Warning: Expected key
    GTModelTypeGeoKey to be of type Short") print some warnings about damaged files there directly."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _ignore_exception(*exc_info):
    """sys.excepthook while decoding: only C callbacks print through it there (real errors propagate)."""


def _ignore_rasterio_unraisable(previous_hook, unraisable):
    """sys.unraisablehook that drops exceptions raised in rasterio's GDAL callbacks and passes on the others."""
    if "rasterio" not in str(unraisable.object):
        previous_hook(unraisable)


def read_with_pillow(path):
    """Read an image file with Pillow into an HxWxC array (8-bit, 16-bit or float values kept)."""
    with decoding(path), Image.open(path) as image:
        image.load()
        array = _pil_to_array(image)
    return array if array.ndim == 3 else array[:, :, None]


def _pil_to_array(image):
    """Convert a loaded Pillow image to a numpy array, keeping 16-bit and float values."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image, dtype=np.uint16)
    if image.mode in ("I", "F"):
        return np.asarray(image)
    if image.mode in ("1", "L", "LA"):
        return np.asarray(image.convert("L"))
    return np.asarray(image.convert("RGB"))


def valid_mask(raw, nodata=None):
    """HxW bool of the pixels whose every band is finite and differs from `nodata`; None when all are valid."""
    invalid = None
    if raw.dtype.kind == "f":
        invalid = ~np.isfinite(raw).all(axis=2)
    if nodata is not None and not np.isnan(nodata):
        equal = (raw == float(nodata)).any(axis=2)
        invalid = equal if invalid is None else invalid | equal
    if invalid is None or not invalid.any():
        return None
    return ~invalid


class RasterReader:
    """An image file opened for reading, whole or a band of rows at a time, with what the file says about itself.

    GeoTIFF, JPEG2000 and VRT files are read through rasterio, only the rows and bands asked for; a palette
    image reads as its RGB (or grey) colours, an alpha band is left out. Other files are decoded by Pillow at
    once. The pixel count (bands not counted) is checked against max_image_pixels() from the header, before
    any pixel is decoded. `nodata` replaces the file's no-data value.
    """

    def __init__(self, path, nodata=None):
        """Open `path` and read its header; raise a SargenError naming the file if it cannot be read."""
        self.path = Path(path)
        if self.path.is_dir():
            raise SargenError(f"cannot read image {self.path}: it is a folder, not an image file")
        if not self.path.is_file():
            raise SargenError(f"image not found: {self.path}")
        self.dataset, self.pixels, self.palette = None, None, None
        info = self._open_with_gdal() if is_gdal_raster(self.path) else self._open_with_pillow()
        self.info = replace(info, nodata=nodata if nodata is not None else info.nodata)
        self.height, self.width = self.info.size
        if self.height * self.width == 0:
            self.close()
            raise SargenError(f"cannot read image {self.path}: it has no pixels ({self.height}x{self.width})")

    def _open_with_pillow(self):
        """Decode a PNG, JPEG or BMP file; its RasterInfo (no georeferencing)."""
        self.pixels = read_with_pillow(self.path)
        height, width, bands = self.pixels.shape
        return RasterInfo(None, str(self.pixels.dtype), (height, width), bands)

    def _open_with_gdal(self):
        """Open a GeoTIFF, JPEG2000 or VRT file and check its header; its RasterInfo."""
        path = self.path
        with decoding(path):
            self.dataset = dataset = rasterio.open(path, driver=GDAL_DRIVERS[path.suffix.lower()])
            try:
                return self._check_header(dataset)
            except BaseException:
                self.close()
                raise

    def _check_header(self, dataset):
        """Refuse what sargen cannot read (pages, complex pixels, too many pixels); the file's RasterInfo."""
        path, limit = self.path, max_image_pixels()
        if limit is not None and dataset.width * dataset.height > limit:
            raise SargenError(f"cannot read image {path}: {dataset.height}x{dataset.width} is "
                              f"{dataset.height * dataset.width} pixels, more than the limit of {limit} "
                              f"(--max_pixels, a decompression-bomb guard): raise --max_pixels (0: no limit) if you "
                              f"trust the file, or cut it into smaller patches")
        if dataset.subdatasets:
            raise SargenError(f"cannot read image {path}: it holds {len(dataset.subdatasets)} images (TIFF pages or "
                              f"subdatasets); sargen reads one image per file, with its bands as bands: save a band "
                              f"stack as one multi-band GeoTIFF")
        if any("complex" in dtype for dtype in dataset.dtypes):
            raise SargenError(f"{path} holds complex (SLC) pixels: convert them to intensity |s|^2 or amplitude first")
        interpretations = dataset.colorinterp
        self.file_bands = [index for index, interpretation in enumerate(interpretations, start=1)
                           if interpretation != ColorInterp.alpha or len(interpretations) == 1]
        band_count = len(self.file_bands)
        if interpretations[0] == ColorInterp.palette and dataset.count == 1:
            self.palette = palette_lookup(dataset.colormap(1), dataset.dtypes[0])
            band_count = self.palette.shape[1]
        gcps, gcp_crs = dataset.gcps
        transform = None if dataset.transform.is_identity and dataset.crs is None else dataset.transform
        nodata = dataset.nodatavals[self.file_bands[0] - 1]
        return RasterInfo(None, dataset.dtypes[0], (dataset.height, dataset.width), band_count,
                          dataset.crs or (gcp_crs if gcps else None), transform, tuple(gcps), nodata,
                          tuple(dataset.descriptions[index - 1] for index in self.file_bands))

    def read(self, top=0, bottom=None, bands=None, left=0, right=None):
        """Rows [top, bottom) and columns [left, right) (None: to the end) of the 1-based `bands` (None: all) as an
        HxWxC array of the file's pixel type."""
        bottom = self.height if bottom is None else bottom
        right = self.width if right is None else right
        indexes = band_indexes(bands, self.info.band_count, self.path)
        if self.pixels is not None:
            return self.pixels[top:bottom, left:right, indexes]
        window = Window(left, top, right - left, bottom - top)
        with decoding(self.path):
            if self.palette is not None:
                return self.palette[self.dataset.read(1, window=window)][:, :, indexes]
            array = self.dataset.read([self.file_bands[index] for index in indexes], window=window)
        return array.transpose(1, 2, 0)

    def read_reduced(self, height, width, bands=None):
        """The image (1-based `bands`) reduced to height x width by averaging, as float32 HxWxC (for previews)."""
        indexes = band_indexes(bands, self.info.band_count, self.path)
        if self.pixels is not None or self.palette is not None:
            full = torch.from_numpy(self.read(bands=bands).astype(np.float32)).permute(2, 0, 1)[None]
            return F.interpolate(full, size=(height, width), mode="area")[0].permute(1, 2, 0).numpy()
        with decoding(self.path):
            array = self.dataset.read([self.file_bands[index] for index in indexes], out_shape=(len(indexes),
                                      height, width), resampling=Resampling.average, out_dtype=np.float32)
        return array.transpose(1, 2, 0)

    def valid(self, raw):
        """The valid-pixel mask (valid_mask) of raw rows read from this file."""
        return valid_mask(raw, self.info.nodata)

    def row_chunks(self, bands=None):
        """(top, raw rows) covering the image in bands of about READ_CHUNK_PIXELS pixels."""
        rows = max(1, READ_CHUNK_PIXELS // self.width)
        for top in range(0, self.height, rows):
            yield top, self.read(top, min(top + rows, self.height), bands)

    def close(self):
        """Close the file."""
        if self.dataset is not None:
            with contextlib.suppress(Exception):
                self.dataset.close()
            self.dataset = None

    def __enter__(self):
        """Use as a context manager."""
        return self

    def __exit__(self, *exc_info):
        """Close the file."""
        self.close()


def palette_lookup(colormap, dtype):
    """A lookup table from palette index to RGB (or grey, when every colour is grey), as a uint8 array."""
    table = np.zeros((np.iinfo(np.dtype(dtype)).max + 1, 3), dtype=np.uint8)
    for index, colour in colormap.items():
        if 0 <= index < len(table):
            table[index] = colour[:3]
    grey = bool((table[:, :1] == table).all())
    return table[:, :1] if grey else table


def raster_pixel_type(path):
    """The pixel type of a GeoTIFF, JPEG2000 or VRT file from its header (e.g. uint8, int16, float32)."""
    with RasterReader(path) as reader:
        return reader.info.dtype


def require_reading_rule(opt, domain, path, what):
    """Refuse a raster `path` of `domain` that `what` (a model without a record) and no option say how to read,
    unless it is 8-bit (read as value / 255); see data.radiometry.require_known_radiometry."""
    if is_gdal_raster(path) and not radiometry_is_known(opt, domain):
        require_known_radiometry(opt, domain, path, what, raster_pixel_type(path))


def read_raster(path, nodata=None):
    """Read an image file into an HxWxC array of its native dtype and its RasterInfo (window None).

    `nodata` replaces the file's no-data value; info.valid marks the valid pixels (None: all).
    """
    with RasterReader(path, nodata) as reader:
        raw = reader.read()
        return raw, replace(reader.info, valid=reader.valid(raw))


def has_valid_pixel(valid):
    """Whether a valid-pixel mask (HxW, None: every pixel valid) marks any pixel valid."""
    return valid is None or bool(np.asarray(valid).any())


def warn_no_valid_pixel(path, consequence):
    """Warn that image `path` has no valid pixel (all no-data or NaN) and what follows from it."""
    logger.warning("%s has no valid pixel (all no-data or NaN): %s", path, consequence)


def read_image_with_info(path, channels=None, scaling=DEFAULT_SCALING):
    """Read an image as read_image does; also return its RasterInfo (window, dtype, size, georeferencing, mask).

    Masked pixels (no-data, NaN) are left out of the scaling window and filled from the valid pixels
    (data.radiometry.fill_masked: mirrored at the no-data edge); info.valid marks the valid ones (None: all).
    """
    with RasterReader(path, scaling.nodata) as reader:
        raw, valid = read_checked(reader, scaling)
        info = reader.info
    image, window = unit_range_image(raw, valid, channels, scaling, path)
    return image, replace(info, window=window, valid=valid)


def read_checked(reader, scaling, top=0, bottom=None):
    """(rows [top, bottom) of the rule's bands, their valid mask); errors name the option: a missing band, values
    in the wrong unit."""
    band_indexes(scaling.bands, reader.info.band_count, reader.path, scaling)
    raw = reader.read(top, bottom, bands=scaling.bands)
    valid = reader.valid(raw)
    scaling.check_unit(raw if valid is None else raw[valid], reader.path)
    return raw, valid


def unit_range_image(raw, valid, channels, scaling, path, window=None):
    """Raw HxWxC values as a CxHxW float32 tensor in [0, 1] with `channels` channels, masked pixels filled; and
    the window used (measured by the scaling rule on the valid pixels unless given)."""
    if window is None:
        array, window = scale_to_unit_range(raw, scaling, path, valid)
    else:
        array = map_to_unit_range(scaling.to_window_unit(raw.astype(np.float32)), window, valid)
    array = convert_channels(array, scaling.channels if channels is None else channels, path, scaling)
    image = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    return fill_masked(image, valid), window


def read_image(path, channels=None, scaling=DEFAULT_SCALING):
    """Read an image file as a float32 CxHxW tensor in [0, 1] with `channels` channels (default: the rule's)."""
    return read_image_with_info(path, channels, scaling)[0]


def read_image_resized(path, channels, scaling, size):
    """(image resized to `size` (H, W), full-size image, RasterInfo), both CxHxW tensors in [0, 1].

    8-bit images without masked pixels are resized as 8-bit images by Pillow's bilinear filter, as the eo2sar
    app (torchvision's Resize on a PIL image) does; the others as float tensors, antialiased.
    """
    with RasterReader(path, scaling.nodata) as reader:
        raw, valid = read_checked(reader, scaling)
        info = reader.info
    image, window = unit_range_image(raw, valid, channels, scaling, path)
    if tuple(size) == tuple(image.shape[-2:]):
        resized = image
    elif raw.dtype == np.uint8 and valid is None:
        resized, _ = unit_range_image(resize_with_pillow(raw, size), None, channels, scaling, path, window)
    else:
        resized = F.interpolate(image[None], size=tuple(size), mode="bilinear", antialias=True)[0].clamp(0.0, 1.0)
    return resized, image, replace(info, window=window, valid=valid)


def resize_with_pillow(raw, size):
    """An HxWxC uint8 array resized to `size` (H, W), band by band, with Pillow's (antialiased) bilinear filter."""
    height, width = size
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(raw[:, :, band])).resize(
        (width, height), Image.BILINEAR)) for band in range(raw.shape[2])], axis=2)


class SceneReader:
    """A scene read a band of rows at a time as float tensors in [0, 1] (for the streaming tiler).

    The scaling window is measured over the whole scene first (data.radiometry.streamed_window: exact, as on
    the scene in memory, on valid pixels only), so every band of rows is scaled alike.
    """

    def __init__(self, path, channels, scaling):
        """Open `path`, measure its scaling window and get ready to read bands of rows."""
        self.path, self.scaling = Path(path), scaling
        self.channels = scaling.channels if channels is None else channels
        self.reader = RasterReader(path, scaling.nodata)
        try:
            first_rows = max(1, READ_CHUNK_PIXELS // self.reader.width)
            read_checked(self.reader, scaling, 0, min(self.reader.height, first_rows))  # bands and unit checked
            self.window = streamed_window(scaling, np.dtype(self.reader.info.dtype), self.valid_values)
        except BaseException:
            self.reader.close()
            raise
        self.height, self.width = self.reader.height, self.reader.width
        self.info = replace(self.reader.info, window=self.window)

    def valid_values(self):
        """The valid raw values of the scene in the window unit, a band of rows at a time (1-D float32 arrays)."""
        for _, raw in self.reader.row_chunks(self.scaling.bands):
            values = self.scaling.to_window_unit(raw.astype(np.float32))
            valid = self.reader.valid(raw)
            yield values.ravel() if valid is None else values[valid].ravel()

    def rows(self, top, bottom, left=0, right=None):
        """Rows [top, bottom) of columns [left, right) (None: to the end) as (Cxhxw float32 tensor in [0, 1], hxw
        bool tensor of valid pixels or None).

        Masked pixels are 0 here: the tiler fills each tile from its own valid pixels.
        """
        raw = self.reader.read(top, bottom, self.scaling.bands, left, right)
        valid = self.reader.valid(raw)
        array = map_to_unit_range(self.scaling.to_window_unit(raw.astype(np.float32)), self.window, valid)
        array = convert_channels(array, self.channels, self.path, self.scaling)
        image = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
        return image, None if valid is None else torch.from_numpy(valid)

    def reduced(self, height, width):
        """The scene reduced to height x width in [0, 1] (CxHxW tensor; masked pixels not filled), for previews."""
        raw = self.reader.read_reduced(height, width, self.scaling.bands)
        array = map_to_unit_range(self.scaling.to_window_unit(raw), self.window)
        array = convert_channels(np.nan_to_num(array), self.channels, self.path, self.scaling)
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))

    def close(self):
        """Close the file."""
        self.reader.close()

    def __enter__(self):
        """Use as a context manager."""
        return self

    def __exit__(self, *exc_info):
        """Close the file."""
        self.close()


def tensor_to_uint8(image, value_range=(0.0, 1.0)):
    """Convert a CxHxW float tensor in `value_range` to an HxW or HxWx3 uint8 array."""
    low, high = value_range
    image = image.detach().float().cpu().clamp(low, high)
    array = ((image - low) / (high - low) * 255.0).round().to(torch.uint8).numpy()
    array = array.transpose(1, 2, 0)
    return array[:, :, 0] if array.shape[2] == 1 else array


def write_image(image, path, value_range=(0.0, 1.0), valid=None):
    """Write a uint8 HxW(xC) array or a CxHxW float tensor in `value_range` to `path` atomically.

    With `valid` (HxW bool), masked pixels are transparent (PNG: an alpha channel) or no-data (.tif: 0).
    """
    path = Path(path)
    if isinstance(image, torch.Tensor):
        image = tensor_to_uint8(image, value_range)
    image = np.asarray(image)
    if is_tiff(path):
        return write_raster(image, path, valid=valid, nodata=None if valid is None else 0)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    file_format = PIL_FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise SargenError(f"cannot write {path}: use one of {', '.join((*PIL_FORMATS, *TIFF_EXTENSIONS))}")
    if valid is not None and not valid.all() and file_format == "PNG":
        alpha = np.where(valid, 255, 0).astype(np.uint8)
        image = np.dstack([image, alpha])
    with atomic_path(path) as temp_path:
        Image.fromarray(image).save(temp_path, format=file_format, **software_metadata(file_format))
    return path


def software_metadata(file_format):
    """Pillow save() arguments that record the software in a PNG (tEXt Software) or JPEG (comment); BMP has none."""
    if file_format == "PNG":
        info = PngInfo()
        info.add_text("Software", software_text())
        return {"pnginfo": info}
    return {"comment": software_text()} if file_format == "JPEG" else {}


def written_by_sargen(path):
    """Whether the image file `path` carries the mark of sargen's writers (a PNG or JPEG's software record, a
    GeoTIFF's SARGEN_ tags); False for any other file, or one that cannot be read."""
    path = Path(path)
    try:
        if is_tiff(path):
            with decoding(path), rasterio.open(path) as dataset:
                return any(key.startswith(TAG_PREFIX) for key in dataset.tags())
        if path.suffix.lower() in PIL_FORMATS:
            with Image.open(path) as image:
                record = image.info.get("Software") or image.info.get("comment") or ""
            record = record.decode("utf-8", "replace") if isinstance(record, bytes) else str(record)
            return record.startswith(SOFTWARE_MARK)
    except (SargenError, OSError, ValueError):
        return False
    return False


class RasterWriter:
    """A Cloud-Optimized GeoTIFF written a band of rows at a time, with georeferencing and no-data.

    Rows go to a temporary GeoTIFF of 16-row strips beside the target as they come (so memory does not grow with
    the scene's width beyond the rows handed over); closing builds the COG from it with GDAL's COG driver (tiled,
    deflate, internal overviews, GDAL reports LAYOUT=COG) into another temporary name and renames that onto the
    target. On any failure both temporaries are removed and an existing target is left as it was.
    """

    def __init__(self, path, size, band_count, dtype, info=None, nodata=None, descriptions=None, units=None,
                 tags=None):
        """Start writing a height x width raster of `band_count` bands of `dtype` to `path`.

        `info` (a RasterInfo) gives the CRS, transform or ground control points; masked pixels (write_rows'
        `valid`) are written as `nodata`, which unsigned-integer valid pixels never equal (0 becomes 1).
        `descriptions` and `units` name each band; `tags` is metadata saved in the file.
        """
        self.path, (self.height, self.width) = Path(path), size
        self.dtype, self.nodata = np.dtype(dtype), nodata
        self.band_count, self.next_row = band_count, 0
        self.exits = contextlib.ExitStack()
        try:
            self.final = self.exits.enter_context(atomic_path(self.path))
            self.staging = self.exits.enter_context(scratch_path(self.path, "staging"))
            self.dataset = self._open_staging(info, descriptions, units, tags)
        except BaseException:
            self.exits.close()
            raise

    def _open_staging(self, info, descriptions, units, tags):
        """Create the temporary tiled GeoTIFF with the georeferencing, no-data, band names and metadata."""
        profile = dict(driver="GTiff", width=self.width, height=self.height, count=self.band_count,
                       dtype=self.dtype.name, nodata=self.nodata, **STAGING_OPTIONS)
        if info is not None and info.transform is not None:
            profile.update(crs=info.crs, transform=info.transform)
        if self.band_count == 3 and self.dtype == np.uint8:
            profile["photometric"] = "RGB"
        with decoding(self.path, "write"):
            dataset = rasterio.open(self.staging, "w", **profile)
            if info is not None and info.transform is None and info.gcps:
                dataset.gcps = (list(info.gcps), info.crs)
            for band, description in enumerate(descriptions or (), start=1):
                dataset.set_band_description(band, description)
            if units:
                dataset.units = tuple(units)
            dataset.update_tags(**{SOFTWARE_TAG: software_text(), **(tags or {})})
        return dataset

    def write_rows(self, top, rows, valid=None):
        """Write HxWxC (or HxW) `rows` starting at row `top` (rows arrive in order); masked pixels as no-data."""
        if top != self.next_row:
            raise ValueError(f"rows must arrive in order: expected row {self.next_row}, got {top}")
        rows = np.asarray(rows).astype(self.dtype, copy=False).reshape(len(rows), self.width, -1)
        if valid is not None:
            valid = np.asarray(valid)[:, :, None]
            if self.nodata == 0 and self.dtype.kind == "u":
                rows = np.maximum(rows, 1)  # a valid pixel is never read as no-data
            rows = np.where(valid, rows, self.dtype.type(self.nodata))
        with decoding(self.path, "write"):
            self.dataset.write(rows.transpose(2, 0, 1), window=Window(0, top, self.width, len(rows)))
        self.next_row += len(rows)

    def close(self):
        """Build the COG from the staging file and put it in place of the target."""
        if self.next_row != self.height:
            raise ValueError(f"{self.path}: {self.next_row} of {self.height} rows written")
        with self.exits:
            with decoding(self.path, "write"):
                self.dataset.close()
                rasterio.shutil.copy(self.staging, self.final, driver="COG", **COG_OPTIONS)
        return self.path

    def abort(self):
        """Remove the temporaries (and GDAL's beside them); the target stays as it was."""
        with contextlib.suppress(Exception):
            self.dataset.close()
        for leftover in self.final.parent.glob(glob.escape(self.final.name) + ".*"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        self.exits.__exit__(SargenError, SargenError("aborted"), None)

    def __enter__(self):
        """Use as a context manager: closed (COG built) on success, aborted on an exception."""
        return self

    def __exit__(self, exc_type, *exc_info):
        """Close on success, abort on failure."""
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_raster(array, path, info=None, valid=None, nodata=None, descriptions=None, units=None, tags=None):
    """Write an HxW or HxWxC array as a Cloud-Optimized GeoTIFF (RasterWriter), atomically.

    `info` (a RasterInfo, e.g. of the input) gives the CRS and transform; `valid` marks valid pixels and
    masked ones are written as `nodata`.
    """
    array = np.asarray(array)
    array = array if array.ndim == 3 else array[:, :, None]
    with RasterWriter(path, array.shape[:2], array.shape[2], array.dtype, info, nodata, descriptions,
                      units, tags) as writer:
        writer.write_rows(0, array, valid)
    return Path(path)


class ImageRowsWriter:
    """write_rows for PNG, JPEG and BMP outputs: rows are collected in memory and written by write_image at close."""

    def __init__(self, path, size, band_count):
        """Prepare an HxWxC uint8 canvas for `path`."""
        self.path = Path(path)
        self.image = np.zeros((*size, band_count), dtype=np.uint8)
        self.valid = None

    def write_rows(self, top, rows, valid=None):
        """Put uint8 `rows` (HxWxC or HxW) at row `top`; `valid` marks their valid pixels."""
        rows = np.asarray(rows).reshape(len(rows), self.image.shape[1], -1)
        self.image[top: top + len(rows)] = rows
        if valid is not None:
            if self.valid is None:
                self.valid = np.ones(self.image.shape[:2], dtype=bool)
            self.valid[top: top + len(rows)] = np.asarray(valid)

    def __enter__(self):
        """Use as a context manager: the image is written on success."""
        return self

    def __exit__(self, exc_type, *exc_info):
        """Write the image (masked pixels transparent) if no exception occurred."""
        if exc_type is None:
            write_image(self.image, self.path, valid=self.valid)

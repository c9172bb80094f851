"""Helpers of the radiometry and SEN12MS tests: Sentinel-like band values in small GeoTIFFs (geotiff_helpers)."""

import numpy as np
from affine import Affine
from geotiff_helpers import UTM_33N, georeferencing, read_bands, write_geotiff

RGB_LEVELS = {2: 500, 3: 1000, 4: 1500}  # Sentinel-2 B2 (blue), B3 (green), B4 (red) filled with these constants
EPSG = UTM_33N.to_epsg()
PIXEL_METRES = 10.0


def north_up(origin):
    """The affine transform of a north-up grid of 10 m pixels whose upper-left corner is `origin` (x, y)."""
    return Affine(PIXEL_METRES, 0.0, origin[0], 0.0, -PIXEL_METRES, origin[1])


def write_raster(path, bands, origin=(500000.0, 4600000.0)):
    """Write a CxHxW array as a north-up GeoTIFF on UTM 33N with 10 m pixels (as GDAL writes it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_geotiff(path, np.asarray(bands).transpose(1, 2, 0), transform=north_up(origin))


def optical_bands(size=24, seed=0, count=12):
    """int16 Sentinel-2 reflectance x 10000, `count` bands: B2, B3, B4 constant (RGB_LEVELS), the others noise."""
    bands = np.random.default_rng(seed).integers(0, 10000, (count, size, size)).astype(np.int16)
    for band, level in RGB_LEVELS.items():
        bands[band - 1] = level
    return bands


def sar_db_bands(size=24, seed=0, vv_db=None):
    """float32 Sentinel-1 VV and VH in dB: textured around -10 and -17 dB, or VV constant at `vv_db`."""
    rng = np.random.default_rng(seed)
    vv = 10 * np.log10(rng.gamma(4.0, 0.1 / 4.0, (size, size))) if vv_db is None else np.full((size, size), vv_db)
    return np.stack([vv, vv - 7.0]).astype(np.float32)


def db_to_power(bands):
    """The linear power of dB bands (float32)."""
    return (10.0 ** (bands / 10.0)).astype(np.float32)


def sen12ms_tree(root, scenes=4, patches=2, size=24, suffix=".tif", s1=sar_db_bands):
    """A SEN12MS-layout tree: `scenes` scenes of `patches` S2 (12-band int16) and S1 (from `s1`) GeoTIFFs."""
    for scene in range(scenes):
        region = ("ROIs1158_spring", "ROIs1868_summer")[scene % 2]
        for patch in range(1, patches + 1):
            seed = scene * 100 + patch
            for sensor, bands in (("s2", optical_bands(size, seed)), ("s1", s1(size, seed))):
                name = f"{region}_{sensor}_{scene + 1}_p{patch}{suffix}"
                write_raster(root / region / f"{sensor}_{scene + 1}" / name, bands,
                             origin=(500000.0 + 1000.0 * scene + 120.0 * patch, 4600000.0))
    return root


def read_raster_file(path):
    """(CxHxW array, CRS, transform) of a GeoTIFF."""
    crs, transform, _, _ = georeferencing(path)
    return read_bands(path).transpose(2, 0, 1), crs, transform

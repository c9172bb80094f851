"""Helpers shared by the raster tests: small georeferenced files written through rasterio, as GDAL writes them."""

import warnings

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning

UTM_33N = CRS.from_epsg(32633)
UTM_TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0)  # north-up, 10 m pixels


def write_geotiff(path, array, interleave="pixel", tiled=False, compress=None, crs=UTM_33N, transform=UTM_TRANSFORM,
                  nodata=None, descriptions=None, georeferenced=True):
    """Write `array` (HxW or HxWxC) as a GeoTIFF: bands pixel- or band-interleaved, striped or 16 px tiles."""
    array = np.asarray(array)
    array = array if array.ndim == 3 else array[:, :, None]
    height, width, count = array.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count, "dtype": array.dtype.name,
               "interleave": interleave, "nodata": nodata}
    if tiled:
        profile.update(tiled=True, blockxsize=16, blockysize=16)
    if compress:
        profile["compress"] = compress
    if georeferenced:
        profile.update(crs=crs, transform=transform)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # files without a CRS are written on purpose
        with rasterio.open(path, "w", **profile) as dataset:
            dataset.write(array.transpose(2, 0, 1))
            for band, description in enumerate(descriptions or (), start=1):
                dataset.set_band_description(band, description)
    return path


def georeferencing(path):
    """(CRS, transform, no-data, band descriptions) of a raster file as rasterio reads them."""
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(path) as dataset:
        return dataset.crs, dataset.transform, dataset.nodata, dataset.descriptions


def read_bands(path):
    """All bands of a raster file as an HxWxC array."""
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(path) as dataset:
        return dataset.read().transpose(1, 2, 0)


def image_structure(path):
    """GDAL's IMAGE_STRUCTURE metadata of a raster (LAYOUT, COMPRESSION, ...), its overview factors, block shape."""
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(path) as dataset:
        return dataset.tags(ns="IMAGE_STRUCTURE"), dataset.overviews(1), dataset.block_shapes[0]

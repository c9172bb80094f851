"""Helpers shared by the GeoTIFF tests: small georeferenced files written as GDAL writes them."""

import tifffile

from data.image_io import GEOREFERENCING_TAGS

GEO_KEYS = (1, 1, 0, 4, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633, 3076, 0, 1, 9001)  # UTM 33N, metres


def geotiff_tags(origin=(500000.0, 4600000.0), pixel=10.0):
    """GeoTIFF tags of a north-up UTM zone 33N grid, plus GDAL metadata and no-data, as tifffile extratags."""
    return [(33550, "d", 3, (pixel, pixel, 0.0), True),
            (33922, "d", 6, (0.0, 0.0, 0.0, *origin, 0.0), True),
            (34735, "H", len(GEO_KEYS), GEO_KEYS, True),
            (34737, "s", 0, "WGS 84 / UTM zone 33N|", True),
            (42112, "s", 0, '<GDALMetadata><Item name="POLARISATION" sample="0">VV</Item></GDALMetadata>', True),
            (42113, "s", 0, "-9999", True)]


def write_geotiff(path, array, planarconfig="contig", tags=True, compression=None):
    """Write `array` (HxW, HxWxC contig or CxHxW separate) as a GeoTIFF like GDAL's."""
    tifffile.imwrite(path, array, photometric="minisblack", planarconfig=planarconfig if array.ndim == 3 else None,
                     metadata=None, extratags=geotiff_tags() if tags else [], compression=compression)
    return path


def tag_values(path):
    """{code: value} of the GeoTIFF and GDAL tags of a file's first page."""
    with tifffile.TiffFile(path) as tif:
        return {code: tif.pages[0].tags[code].value for code in (*GEOREFERENCING_TAGS, 42112, 42113)
                if code in tif.pages[0].tags}

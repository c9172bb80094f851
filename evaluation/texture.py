"""Texture from grey-level co-occurrence matrices (GLCM, scikit-image) of dB images, and the distance between them.

An image band's dB values are quantized to GLCM_LEVELS levels over the dB range (--db_window) and counted in
pairs at GLCM_DISTANCES pixels in four directions (0, 45, 90, 135 degrees), symmetric. Pixels outside the
`valid` mask take part in no pair. The texture distance is the Jensen-Shannon distance (base 2: 0 the same
co-occurrence statistics, 1 none in common) between two normalized GLCMs; graycoprops gives the usual
descriptors (contrast, homogeneity, energy, correlation) of one.
"""

import numpy as np
from scipy.spatial.distance import jensenshannon
from skimage.feature import graycomatrix, graycoprops

GLCM_LEVELS = 32
GLCM_DISTANCES = (1,)
GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
GLCM_PROPERTIES = ("contrast", "homogeneity", "energy", "correlation")


def cooccurrence_counts(decibels, db_range, valid=None):
    """GLCM_LEVELS x GLCM_LEVELS pair counts of an H x W dB image, summed over distances and directions."""
    low, high = db_range
    levels = np.clip(np.floor((decibels - low) / (high - low) * GLCM_LEVELS), 0, GLCM_LEVELS - 1).astype(np.uint8)
    if valid is not None:
        levels = np.where(valid, levels, GLCM_LEVELS)  # an extra level for masked pixels, dropped below
    counts = graycomatrix(levels, GLCM_DISTANCES, GLCM_ANGLES, levels=GLCM_LEVELS + 1, symmetric=True)
    return counts[:GLCM_LEVELS, :GLCM_LEVELS].sum(axis=(2, 3)).astype(np.float64)


def texture_properties(counts):
    """graycoprops' contrast, homogeneity, energy and correlation of a GLCM (nan for one without pairs)."""
    total = counts.sum()
    if total == 0:
        return dict.fromkeys(GLCM_PROPERTIES, float("nan"))
    normalized = (counts / total)[:, :, None, None]
    return {name: float(graycoprops(normalized, name)[0, 0]) for name in GLCM_PROPERTIES}


def texture_distance(counts_a, counts_b):
    """Jensen-Shannon distance (base 2) between two GLCMs as distributions of grey-level pairs; nan if one is empty."""
    if counts_a.sum() == 0 or counts_b.sum() == 0:
        return float("nan")
    return float(jensenshannon(counts_a.ravel(), counts_b.ravel(), base=2))

"""Metric functions on numpy arrays: images are H x W x C floats in [0, 1], features are N x D.

Every image metric takes an optional `valid` mask (H x W bool, True = a pixel to use) and leaves the other
pixels out. PSNR and SSIM come from scikit-image, histogram distances from scipy, the Frechet distance from
pytorch-fid (the function behind published FID values); the kernel distance (KID) is written here and checked
in tests/test_evaluate.py against a double loop.
"""

import contextlib
import io
import logging
import warnings

import numpy as np
from pytorch_fid.fid_score import calculate_frechet_distance
from scipy.ndimage import minimum_filter
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

logger = logging.getLogger("sargen")

HISTOGRAM_BIN_DB = 0.1  # bins of the dB histograms (8-bit renderings of 25 dB have levels 0.098 dB apart)
JENSEN_SHANNON_BIN_DB = 1.0  # coarser bins for the Jensen-Shannon distance, which empty bins of small images inflate
SSIM_WINDOW = 11  # Wang et al.'s Gaussian window (sigma 1.5): images need at least this many pixels a side


def valid_pixels(image, valid):
    """The N x C pixels of an H x W x C image under `valid` (all without a mask)."""
    return image.reshape(-1, image.shape[2]) if valid is None else image[valid]


def paired_metrics(fake, real, valid=None):
    """PSNR (dB, inf for identical images), SSIM, MAE and RMSE of `fake` against `real`, data range 1."""
    difference = valid_pixels(fake.astype(np.float64) - real.astype(np.float64), valid)
    if difference.size == 0:
        return dict.fromkeys(("psnr", "ssim", "mae", "rmse"), float("nan"))
    if valid is None:
        with np.errstate(divide="ignore"):
            psnr = float(peak_signal_noise_ratio(real, fake, data_range=1.0))
    else:
        mse = float((difference ** 2).mean())
        psnr = float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))
    return {"psnr": psnr, "ssim": ssim(fake, real, valid), "mae": float(np.abs(difference).mean()),
            "rmse": float(np.sqrt((difference ** 2).mean()))}


def ssim(fake, real, valid=None):
    """Mean SSIM with Wang et al.'s settings (Gaussian window, sigma 1.5), channels averaged; nan if too small.

    With a mask, the mean of scikit-image's SSIM map over the pixels whose whole window is valid, away from the
    border scikit-image leaves out.
    """
    if min(fake.shape[:2]) < SSIM_WINDOW:
        return float("nan")
    settings = {"data_range": 1.0, "channel_axis": 2, "gaussian_weights": True, "sigma": 1.5,
                "use_sample_covariance": False}
    if valid is None:
        return float(structural_similarity(fake, real, **settings))
    _, similarity = structural_similarity(fake, real, full=True, **settings)
    pad = (SSIM_WINDOW - 1) // 2
    inner = (slice(pad, -pad), slice(pad, -pad))
    chosen = minimum_filter(valid.astype(np.uint8), size=SSIM_WINDOW, mode="nearest")[inner] > 0
    if not chosen.any():
        return float("nan")
    return float(similarity[inner][chosen].mean())


def histogram_bins(db_range):
    """The number of HISTOGRAM_BIN_DB bins spanning `db_range`."""
    low, high = db_range
    return max(1, int(round((high - low) / HISTOGRAM_BIN_DB)))


def db_histogram(decibels, db_range, valid=None):
    """Pixel counts of an H x W dB image over HISTOGRAM_BIN_DB bins of `db_range` (values outside: the end bins)."""
    low, high = db_range
    bins = histogram_bins(db_range)
    values = decibels if valid is None else decibels[valid]
    index = np.clip(np.floor((values - low) / (high - low) * bins), 0, bins - 1).astype(np.int64)
    return np.bincount(index.ravel(), minlength=bins).astype(np.float64)


def histogram_wasserstein(counts_a, counts_b, db_range):
    """Wasserstein-1 (earth mover's) distance in dB between two dB histograms: an offset of d dB gives d."""
    if counts_a.sum() == 0 or counts_b.sum() == 0:
        return float("nan")
    low, high = db_range
    width = (high - low) / len(counts_a)
    centres = low + width * (np.arange(len(counts_a)) + 0.5)
    return float(wasserstein_distance(centres, centres, counts_a, counts_b))


def histogram_jensen_shannon(counts_a, counts_b):
    """Jensen-Shannon distance (base 2: 0 equal, 1 disjoint) between dB histograms merged to 1 dB bins."""
    if counts_a.sum() == 0 or counts_b.sum() == 0:
        return float("nan")
    merge = max(1, int(round(JENSEN_SHANNON_BIN_DB / HISTOGRAM_BIN_DB)))
    padding = (-len(counts_a)) % merge
    coarse_a = np.pad(counts_a, (0, padding)).reshape(-1, merge).sum(axis=1)
    coarse_b = np.pad(counts_b, (0, padding)).reshape(-1, merge).sum(axis=1)
    return float(jensenshannon(coarse_a, coarse_b, base=2))


def frechet_distance(features_a, features_b):
    """FID's Frechet distance between Gaussians fitted to two feature sets (N x D, N >= 2 each), as pytorch-fid
    computes it: means, np.cov covariances and its calculate_frechet_distance (scipy's sqrtm)."""
    features_a, features_b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    output = io.StringIO()
    # Its notes on a singular covariance product (a print, scipy's warning): usual with fewer images than dims.
    with contextlib.redirect_stdout(output), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        distance = calculate_frechet_distance(features_a.mean(axis=0), np.cov(features_a, rowvar=False),
                                              features_b.mean(axis=0), np.cov(features_b, rowvar=False))
    if output.getvalue().strip():
        logger.debug("pytorch-fid: %s", output.getvalue().strip())
    return float(distance)


def polynomial_kernel(features_a, features_b):
    """KID's kernel k(x, y) = (x . y / D + 1)^3."""
    return (features_a @ features_b.T / features_a.shape[1] + 1.0) ** 3


def kernel_distance(features_a, features_b):
    """Unbiased squared MMD with the cubic polynomial kernel (KID) between two feature sets (N >= 2 each)."""
    features_a, features_b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    count_a, count_b = len(features_a), len(features_b)
    kernel_aa, kernel_bb = polynomial_kernel(features_a, features_a), polynomial_kernel(features_b, features_b)
    within_a = (kernel_aa.sum() - np.trace(kernel_aa)) / (count_a * (count_a - 1))
    within_b = (kernel_bb.sum() - np.trace(kernel_bb)) / (count_b * (count_b - 1))
    return float(within_a + within_b - 2.0 * polynomial_kernel(features_a, features_b).mean())


def mean_and_std(values):
    """Mean, standard deviation (ddof 0) and count of the finite values (inf and nan are left out)."""
    finite = np.asarray([value for value in values if isinstance(value, (int, float)) and np.isfinite(value)],
                        dtype=np.float64)
    if finite.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "count": 0}
    return {"mean": float(finite.mean()), "std": float(finite.std()), "count": int(finite.size)}

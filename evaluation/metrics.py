"""Metric functions on numpy arrays: images are H x W x C floats in [0, 1], features are N x D.

Every image metric takes an optional `valid` mask (H x W bool, True = a pixel to use) and leaves the other
pixels out. PSNR and SSIM come from scikit-image, histogram distances from scipy; the Frechet distance (FID) is
written here in an exact fast form, checked in tests/test_evaluate.py against pytorch-fid's (the function
behind published FID values), and the kernel distance (KID) against a double loop.
"""

import numpy as np
from scipy.ndimage import minimum_filter
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

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


def centred_rows(features):
    """The features' centred rows / sqrt(N - 1) (float64): A with A^T A = np.cov(features, rowvar=False)."""
    features = np.asarray(features, np.float64)
    return (features - features.mean(axis=0)) / np.sqrt(len(features) - 1)


def trace_sqrt_product(rows_a, rows_b):
    """tr((S_a S_b)^1/2) for S = A^T A (centred_rows), from the eigenvalues of a matrix of at most D x D.

    The eigenvalues of S_a S_b are those of G = C C^T (or C^T C, the smaller), C = A_a A_b^T: symmetric,
    positive semi-definite, so eigvalsh gives them and the trace is the sum of their square roots (C's nuclear
    norm). With more images than dimensions in both sets, A_a is first replaced by the D x D factor R of its QR
    decomposition (R^T R = A_a^T A_a), so that no matrix is larger than D x D.
    """
    if min(len(rows_a), len(rows_b)) > rows_a.shape[1]:
        rows_a = np.linalg.qr(rows_a, mode="r")
    cross = rows_a @ rows_b.T
    gram = cross @ cross.T if cross.shape[0] <= cross.shape[1] else cross.T @ cross
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0.0, None)).sum())


def frechet_distance(features_a, features_b):
    """FID's Frechet distance between Gaussians fitted to two feature sets (N x D, N >= 2 each), in float64:
    |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^1/2), with the np.cov covariances pytorch-fid fits.

    The same value as pytorch-fid's calculate_frechet_distance (scipy's sqrtm of the D x D product; the tests
    check it to 1e-6 relative) without a matrix square root (trace_sqrt_product): milliseconds instead of a
    minute or two at D = 2048 with fewer images than dimensions, several times faster with more
    (benchmarks/bench_evaluate.py).
    """
    rows_a, rows_b = centred_rows(features_a), centred_rows(features_b)
    difference = np.mean(features_a, axis=0, dtype=np.float64) - np.mean(features_b, axis=0, dtype=np.float64)
    return float(difference @ difference + (rows_a ** 2).sum() + (rows_b ** 2).sum()
                 - 2.0 * trace_sqrt_product(rows_a, rows_b))


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

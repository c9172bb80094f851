"""Metric functions on numpy arrays: images are HxWxC floats in [0, 1], features are N x D.

Paired metrics and SSIM come from scikit-image, histogram distances from scipy; the speckle estimators
(equivalent number of looks, coefficient of variation) and the Frechet and kernel distances are written
here and checked in tests/test_evaluate.py against closed forms and scipy.
"""

import numpy as np
from scipy.ndimage import uniform_filter
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from data.radiometry import db_to_linear

HISTOGRAM_BINS = 256  # one bin per 8-bit grey level: histograms of 8-bit images are exact
JENSEN_SHANNON_BINS = 32  # coarser bins for the Jensen-Shannon distance, which empty bins of small images inflate
INTENSITY_UNITS = ("db", "amplitude", "intensity")
SSIM_WINDOW = 11  # Wang et al.'s Gaussian window (sigma 1.5): images need at least this many pixels a side


def paired_metrics(fake, real):
    """PSNR (dB, inf for identical images), SSIM, MAE and RMSE of `fake` against `real`, data range 1."""
    difference = fake.astype(np.float64) - real.astype(np.float64)
    with np.errstate(divide="ignore"):
        psnr = peak_signal_noise_ratio(real, fake, data_range=1.0)
    return {"psnr": float(psnr), "ssim": ssim(fake, real), "mae": float(np.abs(difference).mean()),
            "rmse": float(np.sqrt((difference ** 2).mean()))}


def ssim(fake, real):
    """Mean SSIM with Wang et al.'s settings (Gaussian window, sigma 1.5), channels averaged; nan if too small."""
    if min(fake.shape[:2]) < SSIM_WINDOW:
        return float("nan")
    return float(structural_similarity(fake, real, data_range=1.0, channel_axis=2, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False))


def intensity_histograms(image):
    """Pixel counts per channel over HISTOGRAM_BINS levels spanning [0, 1] (nearest level): C x bins."""
    levels = np.clip(np.rint(image * (HISTOGRAM_BINS - 1)), 0, HISTOGRAM_BINS - 1).astype(np.int64)
    return np.stack([np.bincount(levels[:, :, channel].ravel(), minlength=HISTOGRAM_BINS)
                     for channel in range(image.shape[2])]).astype(np.float64)


def histogram_wasserstein(histograms_a, histograms_b):
    """Wasserstein-1 (earth mover's) distance between intensity histograms, in [0, 1] units, channels averaged."""
    levels = np.linspace(0.0, 1.0, HISTOGRAM_BINS)
    return float(np.mean([wasserstein_distance(levels, levels, counts_a, counts_b)
                          for counts_a, counts_b in zip(histograms_a, histograms_b)]))


def histogram_jensen_shannon(histograms_a, histograms_b):
    """Jensen-Shannon distance (base 2: 0 equal, 1 disjoint) between histograms merged to 32 bins, channels averaged."""
    merge = HISTOGRAM_BINS // JENSEN_SHANNON_BINS
    coarse_a = np.asarray(histograms_a).reshape(len(histograms_a), JENSEN_SHANNON_BINS, merge).sum(axis=2)
    coarse_b = np.asarray(histograms_b).reshape(len(histograms_b), JENSEN_SHANNON_BINS, merge).sum(axis=2)
    return float(np.mean([jensenshannon(counts_a, counts_b, base=2) for counts_a, counts_b in zip(coarse_a, coarse_b)]))


def to_linear_intensity(image, unit, db_window):
    """Linear SAR intensity from [0, 1] pixel values that stand for dB in `db_window`, amplitude or intensity."""
    image = image.astype(np.float64)
    if unit == "db":
        low, high = db_window
        return db_to_linear(low + image * (high - low))
    if unit == "amplitude":
        return image ** 2
    if unit == "intensity":
        return image
    raise ValueError(f"unknown intensity unit {unit!r}: choose one of {', '.join(INTENSITY_UNITS)}")


def local_mean_and_variance(intensity, mask, window):
    """Mean and unbiased variance of the pixels under `mask` in every window x window window inside the image."""
    reference = np.median(intensity)  # centring gives exact zeros for a constant image; the variance is unchanged
    centred = intensity - reference
    fraction = uniform_filter(mask, window, mode="constant")
    mean = uniform_filter(centred * mask, window, mode="constant") / fraction
    variance = uniform_filter(centred ** 2 * mask, window, mode="constant") / fraction - mean ** 2
    count = fraction * window * window
    variance = np.maximum(variance, 0.0) * count / (count - 1)
    margin = window // 2
    inside = (slice(margin, intensity.shape[0] - margin), slice(margin, intensity.shape[1] - margin))
    return (mean + reference)[inside], variance[inside]


def equivalent_number_of_looks(intensity, window=15, fraction=0.1):
    """ENL = mean^2 / variance of linear intensity (H x W) over its most homogeneous windows.

    Windows (`window` px, odd, all positions inside the image) are ranked by the coefficient of variation of
    one checkerboard half of their pixels and the ENL is estimated on the other half, so that the choice does
    not favour windows whose speckle happens to be weak (which would overestimate the ENL). Over the most
    homogeneous `fraction` of the windows, ENL = 1 / mean(variance / mean^2). A constant image gives inf;
    windows of zero mean are ignored; nan if none is left.
    """
    window = min(window, *intensity.shape)
    window -= 1 - window % 2
    if window < 3:
        return float("nan")
    rows, columns = np.indices(intensity.shape)
    ranking_half = ((rows + columns) % 2 == 0).astype(np.float64)
    ranking_mean, ranking_variance = local_mean_and_variance(intensity, ranking_half, window)
    mean, variance = local_mean_and_variance(intensity, 1.0 - ranking_half, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        ranking = (ranking_variance / ranking_mean ** 2).ravel()
        relative_variance = (variance / mean ** 2).ravel()
    usable = np.flatnonzero(np.isfinite(ranking) & np.isfinite(relative_variance))
    if usable.size == 0:
        return float("nan")
    count = max(1, int(round(fraction * usable.size)))
    chosen = usable[np.argsort(ranking[usable], kind="stable")[:count]]
    with np.errstate(divide="ignore"):
        return float(1.0 / relative_variance[chosen].mean())


def coefficient_of_variation(intensity):
    """Standard deviation / mean of linear intensity over the whole image (speckle and texture together)."""
    mean = intensity.mean()
    return float(intensity.std() / mean) if mean > 0 else float("nan")


def speckle_statistics(image, unit, db_window, window=15, fraction=0.1):
    """ENL over homogeneous windows and the whole-image coefficient of variation, each averaged over channels."""
    intensities = [to_linear_intensity(image[:, :, channel], unit, db_window) for channel in range(image.shape[2])]
    looks = [equivalent_number_of_looks(intensity, window, fraction) for intensity in intensities]
    return {"enl": float(np.mean(looks)),
            "intensity_cv": float(np.mean([coefficient_of_variation(intensity) for intensity in intensities]))}


def centred_scaled(features):
    """Features minus their mean, divided by sqrt(N - 1): A with A^T A = the sample covariance."""
    features = np.asarray(features, dtype=np.float64)
    return (features - features.mean(axis=0)) / np.sqrt(len(features) - 1)


def frechet_distance(features_a, features_b):
    """Frechet distance between Gaussians fitted to two feature sets (N x D, N >= 2 each), as in FID.

    |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)). With S = A^T A, the eigenvalues of S_a S_b are
    the squared singular values of A_a A_b^T, so the last trace is the nuclear norm of that small N_a x N_b
    matrix: exact also when N < D makes the covariances singular (where scipy.linalg.sqrtm is inaccurate).
    """
    centred_a, centred_b = centred_scaled(features_a), centred_scaled(features_b)
    mean_difference = np.mean(features_a, axis=0, dtype=np.float64) - np.mean(features_b, axis=0, dtype=np.float64)
    cross_trace = np.linalg.svd(centred_a @ centred_b.T, compute_uv=False).sum()
    distance = mean_difference @ mean_difference + (centred_a ** 2).sum() + (centred_b ** 2).sum() - 2 * cross_trace
    return float(max(distance, 0.0))


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
    finite = np.asarray([value for value in values if value is not None and np.isfinite(value)], dtype=np.float64)
    if finite.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "count": 0}
    return {"mean": float(finite.mean()), "std": float(finite.std()), "count": int(finite.size)}

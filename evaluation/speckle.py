"""Speckle statistics of SAR linear intensity: equivalent number of looks (ENL) and coefficient of variation.

Every function takes an optional `valid` mask (H x W bool, True = a pixel to use); pixels outside it are left
out. Pixels clipped by a window or a rendering (PhysicalScale) are not left out, which would cut the tails of
the speckle distribution and inflate the ENL: the ENL models them as censored observations (Censoring).
"""

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter
from scipy.optimize import brentq
from scipy.special import gammainc, gammaincc

MIN_VALID_SHARE = 0.5  # a window is measured when at least this share of its pixels is valid ...
MAX_CLIPPED_SHARE = 0.5  # ... and at most this share clipped (beyond it the moments say little about the looks)
CENSORED_WINDOWS = 256  # windows used by the censored estimate (overlapping windows repeat each other)
LOOKS_RANGE = (0.01, 1e4)
MEAN_SOLVE_STEPS = 40


@dataclass
class ClippedPixels:
    """Which pixels of an image were clipped low and high, and the Censoring that says what they stand for."""

    low: np.ndarray
    high: np.ndarray
    censoring: object


def window_statistics(values, weights, window):
    """(count, mean, unbiased variance) of the pixels of weight 1 in every window x window window inside the image."""
    chosen = weights > 0
    reference = float(np.median(values[chosen])) if chosen.any() else 0.0  # centring: exact zeros for constants
    centred = (values - reference) * weights
    area = window * window
    count = np.rint(uniform_filter(weights, window, mode="constant") * area)
    total = uniform_filter(centred, window, mode="constant") * area
    squares = uniform_filter(centred * centred, window, mode="constant") * area
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / count
        variance = np.maximum(squares - total * mean, 0.0) / (count - 1)
    margin = window // 2
    inside = (slice(margin, values.shape[0] - margin), slice(margin, values.shape[1] - margin))
    return count[inside], (mean + reference)[inside], variance[inside]


def window_share(mask, window):
    """The share of `mask` pixels in every window x window window inside the image."""
    margin = window // 2
    share = uniform_filter(mask.astype(np.float64), window, mode="constant")
    return share[margin:mask.shape[0] - margin, margin:mask.shape[1] - margin]


def equivalent_number_of_looks(intensity, valid=None, window=15, fraction=0.1, clipped=None):
    """ENL = mean^2 / variance of linear intensity (H x W) over its most homogeneous windows.

    Windows (`window` px, odd, all positions inside the image) are ranked by the coefficient of variation of
    one checkerboard half of their pixels and the ENL is estimated on the other half, so that the choice does
    not favour windows whose speckle happens to be weak (which would overestimate the ENL). Over the most
    homogeneous `fraction` of the windows, ENL = 1 / mean(variance / mean^2). With `clipped` pixels (a
    ClippedPixels), the ENL is the number of looks L whose Gamma speckle, censored as the image was, gives
    the same mean variance / mean^2 (censored_looks). A constant image gives inf; nan if no window is usable.
    """
    window = min(window, *intensity.shape)
    window -= 1 - window % 2
    if window < 3:
        return float("nan")
    intensity = np.asarray(intensity, dtype=np.float64)
    valid = np.ones(intensity.shape, bool) if valid is None else np.asarray(valid, bool)
    rows, columns = np.indices(intensity.shape)
    ranking_half = (rows + columns) % 2 == 0
    ranking_count, ranking_mean, ranking_variance = window_statistics(intensity, (ranking_half & valid) * 1.0,
                                                                      window)
    count, mean, variance = window_statistics(intensity, (~ranking_half & valid) * 1.0, window)
    with np.errstate(divide="ignore", invalid="ignore"):
        ranking = (ranking_variance / ranking_mean ** 2).ravel()
        relative_variance = (variance / mean ** 2).ravel()
    half_window = window * window / 2
    usable = (np.isfinite(ranking) & np.isfinite(relative_variance)
              & (count.ravel() >= MIN_VALID_SHARE * half_window)
              & (ranking_count.ravel() >= MIN_VALID_SHARE * half_window))
    censored = clipped is not None and bool(((clipped.low | clipped.high) & valid).any())
    if censored:
        usable &= window_share((clipped.low | clipped.high) & valid, window).ravel() <= MAX_CLIPPED_SHARE
    usable = np.flatnonzero(usable)
    if usable.size == 0:
        return float("nan")
    chosen = usable[np.argsort(ranking[usable], kind="stable")[:max(1, int(round(fraction * usable.size)))]]
    if censored:
        return censored_looks(mean.ravel()[chosen], relative_variance[chosen], clipped.censoring)
    with np.errstate(divide="ignore"):
        return float(1.0 / relative_variance[chosen].mean())


def censored_moments(looks, mean, censoring):
    """E[X] and E[X^2] of X = Gamma(looks, mean / looks) speckle clipped as `censoring` says (arrays of means)."""
    scale = mean / looks
    low, high = censoring.low_threshold / scale, censoring.high_threshold / scale
    below, above = gammainc(looks, low), gammaincc(looks, high)
    inside_first = mean * (gammainc(looks + 1, high) - gammainc(looks + 1, low))
    inside_second = mean ** 2 * (looks + 1) / looks * (gammainc(looks + 2, high) - gammainc(looks + 2, low))
    first = censoring.low_value * below + inside_first + censoring.high_value * above
    second = censoring.low_value ** 2 * below + inside_second + censoring.high_value ** 2 * above
    return first, second


def uncensored_means(looks, observed_means, censoring):
    """The speckle means whose censored means are `observed_means` (bisection in log; the censored mean rises)."""
    low, high = np.log(observed_means) - 14.0, np.log(observed_means) + 14.0
    for _ in range(MEAN_SOLVE_STEPS):
        middle = (low + high) / 2
        too_small = censored_moments(looks, np.exp(middle), censoring)[0] < observed_means
        low, high = np.where(too_small, middle, low), np.where(too_small, high, middle)
    return np.exp((low + high) / 2)


def censored_looks(observed_means, relative_variances, censoring):
    """The looks L at which censored Gamma speckle of the windows' means has their mean variance / mean^2.

    For each window the speckle mean is the one whose censored mean is the observed one; without clipping the
    answer is 1 / mean(variance / mean^2), the plain estimate. inf if the windows are more homogeneous than
    LOOKS_RANGE allows, nan if less.
    """
    inside = (observed_means > censoring.low_value) & (observed_means < censoring.high_value)
    observed_means, relative_variances = observed_means[inside], relative_variances[inside]
    if observed_means.size == 0:
        return float("nan")
    if observed_means.size > CENSORED_WINDOWS:  # evenly over the ranking order
        keep = np.linspace(0, observed_means.size - 1, CENSORED_WINDOWS).round().astype(int)
        observed_means, relative_variances = observed_means[keep], relative_variances[keep]
    target = relative_variances.mean()

    def excess(log_looks):
        """Expected minus observed mean relative variance at exp(log_looks) looks."""
        looks = np.exp(log_looks)
        first, second = censored_moments(looks, uncensored_means(looks, observed_means, censoring), censoring)
        return float(np.mean((second - first ** 2) / first ** 2) - target)

    low, high = np.log(LOOKS_RANGE)
    if excess(high) > 0:
        return float("inf")
    if excess(low) < 0:
        return float("nan")
    return float(np.exp(brentq(excess, low, high, xtol=1e-6)))


def coefficient_of_variation(intensity, valid=None):
    """Standard deviation / mean of linear intensity over the (valid) image: speckle and texture together."""
    values = intensity if valid is None else intensity[valid]
    if values.size == 0:
        return float("nan")
    mean = values.mean()
    return float(values.std() / mean) if mean > 0 else float("nan")

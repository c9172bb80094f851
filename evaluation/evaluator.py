"""Computing every metric: the real images first, then each generated image (its row), then the set distances.

Images arrive as EvaluationImages: [0, 1] values with the PhysicalScale that maps them back to SAR units and an
optional validity mask. evaluate.py reads them from files (ImageReader); training (--eval_freq) passes a model's
outputs. MetricSuite holds the networks and settings; Evaluator accumulates the two sets and writes the rows.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional

from data.image_io import has_valid_pixel, read_image_with_info, warn_no_valid_pixel
from data.radiometry import convert_channels
from evaluation import metrics, speckle, texture
from evaluation.features import network_views
from evaluation.inception import RESIZE_RULE, FeatureSet
from evaluation.physical import clipped_masks, physical_scale
from util.errors import SargenError

logger = logging.getLogger("sargen")

NO_REAL = "unavailable: no real images (pass --real_dir, or --real_label for a results folder)"
PAIR_RESIZE_RULE = ("a real image of another size is resized to its generated twin's size (antialiased bilinear; "
                    "mask nearest) for the paired metrics")
SPECKLE_KEYS = ("enl", "intensity_cv", "mean_db", "clipped_fraction")
PLOT_BIN_DB = 0.5  # bins of the dB histograms drawn on the page (coarser than the metric's, for a smooth line)


@dataclass
class EvaluationImage:
    """One image to score: C x H x W values in [0, 1], their PhysicalScale, band labels and validity mask."""

    name: str
    values: torch.Tensor
    scale: object
    band_labels: list
    valid: np.ndarray = None
    path: Path = None


def band_labels(scaling, channels):
    """'bandN' for each channel: the file's 1-based band numbers (--bands) or 1..channels."""
    numbers = scaling.bands if scaling.bands and len(scaling.bands) == channels else range(1, channels + 1)
    return [f"band{number}" for number in numbers]


class ImageReader:
    """Reads image files with one radiometry into EvaluationImages; with `skip_bad` unreadable files are left out."""

    def __init__(self, scaling, intensity_unit="auto", db_window=(-25.0, 0.0), skip_bad=False, labelled_by=None):
        """Remember the reading rule and how values map back to SAR units; `labelled_by`: the rule whose --bands
        name the bands (default: `scaling`'s), e.g. the real files' for generated files that hold those bands."""
        self.scaling, self.intensity_unit, self.db_window = scaling, intensity_unit, tuple(db_window)
        self.labelled_by = labelled_by or scaling
        self.skip_bad = skip_bad
        self.skipped = []
        self.without_valid_pixel = []  # files read whose pixels are all no-data (their metrics are NaN)

    def read(self, named):
        """The EvaluationImage of a NamedImage, or None for an unreadable file with --skip_bad."""
        if str(named.path) in self.skipped:
            return None
        try:
            values, info = read_image_with_info(named.path, None, self.scaling)
        except SargenError as error:
            if not self.skip_bad:
                raise
            logger.warning("skipped (--skip_bad): %s", error)
            self.skipped.append(str(named.path))
            return None
        valid = getattr(info, "valid", None)  # no-data mask of the reader, where it has one
        valid = None if valid is None else np.asarray(valid, dtype=bool)
        if not has_valid_pixel(valid) and str(named.path) not in self.without_valid_pixel:
            warn_no_valid_pixel(named.path, "its metrics are NaN")
            self.without_valid_pixel.append(str(named.path))
        scale = physical_scale(self.scaling, info.window, info.dtype, self.intensity_unit, self.db_window)
        return EvaluationImage(named.name, values, scale, band_labels(self.labelled_by, values.shape[0]), valid,
                               named.path)


def as_array(values):
    """A C x H x W tensor as an H x W x C float32 numpy array."""
    return values.permute(1, 2, 0).float().numpy()


def joint_valid(*masks):
    """The pixels valid in every mask given (None: all valid)."""
    masks = [mask for mask in masks if mask is not None]
    return np.logical_and.reduce(masks) if masks else None


def resized_pair(image, size):
    """(values, valid) of an EvaluationImage resized to `size` (H, W): values antialiased bilinear, mask nearest."""
    if tuple(image.values.shape[1:]) == tuple(size):
        return image.values, image.valid
    values = functional.interpolate(image.values[None].float(), size=tuple(size), mode="bilinear",
                                    align_corners=False, antialias=True)[0].clamp(0.0, 1.0)
    valid = image.valid
    if valid is not None:
        valid = functional.interpolate(torch.as_tensor(valid)[None, None].float(), size=tuple(size),
                                       mode="nearest")[0, 0].numpy() > 0.5
    return values, valid


def band_suffixes(labels):
    """The key suffix of each band: '' for a single band, '_LABEL' for several."""
    return [""] if len(labels) == 1 else [f"_{label}" for label in labels]


def with_band_mean(values, suffixes, key):
    """{key + suffix: value} per band or network view, plus the plain key as their mean when there are several."""
    row = {f"{key}{suffix}": value for suffix, value in zip(suffixes, values)}
    if len(suffixes) > 1:
        finite = [value for value in values if value is not None and np.isfinite(value)]
        row[key] = float(np.mean(finite)) if finite else float("nan")
    return row


@dataclass
class MetricSuite:
    """What to compute and with which networks; a `*_note` says why a metric is or is not computed."""

    db_range: tuple = (-25.0, 0.0)
    enl_window: int = 15
    enl_fraction: float = 0.1
    speckle: bool = True
    gram: object = None
    gram_note: str = "skipped (--no_gram)"
    fid: object = None
    fid_note: str = "skipped (--no_fid)"
    lpips: object = None
    lpips_note: str = "skipped (--no_lpips)"

    def settings(self):
        """The settings and networks, for metrics.json."""
        return {"db_range": list(self.db_range), "enl_window": self.enl_window, "enl_fraction": self.enl_fraction,
                "gram": self.gram.description() if self.gram is not None else self.gram_note,
                "fid": self.fid.description() if self.fid is not None else self.fid_note,
                "lpips": self.lpips.description() if self.lpips is not None else self.lpips_note}


@dataclass
class ImageStatistics:
    """One image's statistics per band (dB histograms, co-occurrences, SAR and texture values) and per view (Grams)."""

    histograms: list
    cooccurrences: list
    values: dict
    grams: dict = None


class SetStatistics:
    """Running statistics of an image set: pooled histograms and co-occurrences, summed Grams, features, rows."""

    def __init__(self, suite):
        """Start empty."""
        self.suite = suite
        self.count = 0
        self.histograms, self.cooccurrences = None, None
        self.gram_sums, self.features = {}, {}
        self.values = {}  # {name: per-image statistics}

    def add(self, image, statistics):
        """Add one image's statistics and queue its views for the Inception features."""
        self.count += 1
        self.values[image.name] = statistics.values
        if self.histograms is None:
            self.histograms = [np.zeros_like(counts) for counts in statistics.histograms]
            self.cooccurrences = [np.zeros_like(counts) for counts in statistics.cooccurrences]
        for total, counts in zip(self.histograms, statistics.histograms):
            total += counts
        for total, counts in zip(self.cooccurrences, statistics.cooccurrences):
            total += counts
        for suffix, grams in (statistics.grams or {}).items():
            sums = self.gram_sums.setdefault(suffix, {})
            for layer, gram in grams.items():
                sums[layer] = sums[layer] + gram if layer in sums else gram.clone()
        if self.suite.fid is not None:
            for suffix, view in network_views(image.values, image.band_labels):
                self.features.setdefault(suffix, FeatureSet(self.suite.fid)).add(view, image.valid)

    def mean_grams(self, suffix):
        """The mean Gram matrix of each layer of one view over the images added."""
        return {layer: gram / self.count for layer, gram in self.gram_sums[suffix].items()}

    def summary(self, key):
        """Mean, standard deviation and count of one per-image statistic."""
        return metrics.mean_and_std([values.get(key) for values in self.values.values()])


class Evaluator:
    """Accumulates real images (add_real), writes a row per generated image (add_generated), then set distances.

    `labels` are the band labels of the generated images: real images are compared in their channel count
    (converted as in training: 3 -> 1 by luminance, 1 -> 3 repeated).
    """

    def __init__(self, suite, labels):
        """Start with empty real and generated sets."""
        self.suite, self.labels = suite, list(labels)
        self.suffixes = band_suffixes(self.labels)
        self.real, self.generated = SetStatistics(suite), SetStatistics(suite)
        self.kept_real = {}  # {name: ImageStatistics} of real images with a generated twin
        self.resized_pairs = []

    def new_generated_set(self):
        """Forget the generated images (training scores a new set of outputs against the same real images)."""
        self.generated = SetStatistics(self.suite)

    def comparable(self, image):
        """The H x W x C values of an image in the generated images' channel count."""
        array = as_array(image.values)
        if array.shape[2] != len(self.labels):
            array = convert_channels(array, len(self.labels), image.path or image.name)
        return array

    def image_statistics(self, image, with_speckle=True):
        """Per-band dB histograms, co-occurrences, SAR and texture statistics, and Grams of one image."""
        array, valid, suite = self.comparable(image), image.valid, self.suite
        histograms, cooccurrences, values = [], [], {}
        for band, suffix in enumerate(self.suffixes):
            unit_values = array[:, :, band]
            decibels = image.scale.decibels(unit_values)
            histograms.append(metrics.db_histogram(decibels, suite.db_range, valid))
            cooccurrences.append(texture.cooccurrence_counts(decibels, suite.db_range, valid))
            values.update({f"glcm_{name}{suffix}": value
                           for name, value in texture.texture_properties(cooccurrences[-1]).items()})
            if suite.speckle and with_speckle:
                values.update({f"{name}{suffix}": value
                               for name, value in self.speckle_values(unit_values, image.scale, valid).items()})
        grams = None
        if suite.gram is not None:
            grams = {suffix: suite.gram.grams(view, valid)
                     for suffix, view in network_views(torch.from_numpy(array).permute(2, 0, 1), self.labels)}
        return ImageStatistics(histograms, cooccurrences, values, grams)

    def speckle_values(self, unit_values, scale, valid):
        """ENL, coefficient of variation, mean dB and clipped share of one band, in linear intensity."""
        intensity = scale.linear(unit_values)
        low, high = clipped_masks(unit_values)
        clipped = speckle.ClippedPixels(low, high, scale.censoring())
        used = np.ones(unit_values.shape, bool) if valid is None else valid
        mean = float(intensity[used].mean()) if used.any() else float("nan")
        return {"enl": speckle.equivalent_number_of_looks(intensity, valid, self.suite.enl_window,
                                                          self.suite.enl_fraction, clipped),
                "intensity_cv": speckle.coefficient_of_variation(intensity, valid),
                "mean_db": float(10 * np.log10(mean)) if mean > 0 else float("nan"),
                "clipped_fraction": float((low | high)[used].mean()) if used.any() else float("nan")}

    def add_real(self, image, keep=False):
        """Accumulate one real image's statistics (and keep them for its generated twin with `keep`)."""
        statistics = self.image_statistics(image)
        self.real.add(image, statistics)
        if keep:
            self.kept_real[image.name] = statistics

    def add_generated(self, image, real=None):
        """The row of one generated image: its statistics, paired metrics (with its real twin) and domain distances."""
        statistics = self.image_statistics(image)
        self.generated.add(image, statistics)
        row = {"name": image.name, "fake": str(image.path) if image.path else None,
               "real": str(real.path) if real is not None and real.path else None}
        row.update(statistics.values)
        if real is not None:
            row.update(self.paired_row(image, statistics, real))
        if self.real.count:
            row.update(self.domain_row(statistics))
        return row

    def paired_row(self, image, statistics, real):
        """Pixel, perceptual, histogram, texture and Gram distances to the real twin, and its SAR statistics."""
        suite = self.suite
        real_values, real_valid = resized_pair(real, image.values.shape[1:])
        resized = real_values is not real.values
        if resized:
            self.resized_pairs.append(image.name)
            logger.info("%s: real %s is %s, generated %s is %s: resized the real image for the paired metrics",
                        image.name, real.path, "x".join(map(str, real.values.shape[1:])), image.path,
                        "x".join(map(str, image.values.shape[1:])))
        real_twin = EvaluationImage(real.name, real_values, real.scale, real.band_labels, real_valid, real.path)
        real_statistics = self.kept_real.pop(real.name, None)
        if resized or real_statistics is None:
            real_statistics = self.image_statistics(real_twin, with_speckle=False)
        valid = joint_valid(image.valid, real_valid)
        fake_array, real_array = self.comparable(image), self.comparable(real_twin)
        row = {"resized": resized, **metrics.paired_metrics(fake_array, real_array, valid)}
        if suite.lpips is not None:
            views = zip(network_views(image.values, image.band_labels),
                        network_views(torch.from_numpy(real_array).permute(2, 0, 1), self.labels))
            suffixes, values = [], []
            for (suffix, fake_view), (_, real_view) in views:
                suffixes.append(suffix)
                values.append(suite.lpips(fake_view, real_view, valid))
            row.update(with_band_mean(values, suffixes, "lpips"))
        row.update(self.distances(statistics, real_statistics, "_real"))
        if suite.gram is not None:
            distances = [suite.gram.distance(statistics.grams[suffix], real_statistics.grams[suffix])
                         for suffix in statistics.grams]
            row.update(with_band_mean(distances, list(statistics.grams), "gram_distance_real"))
        real_values = self.real.values.get(real.name, {})  # measured at the real image's own size
        row.update({f"{key}_real{suffix}": real_values.get(f"{key}{suffix}")
                    for key in SPECKLE_KEYS for suffix in self.suffixes if self.suite.speckle})
        return row

    def distances(self, statistics, target, tag):
        """Per-band dB histogram (Wasserstein, Jensen-Shannon) and co-occurrence distances, keys ending in `tag`."""
        db_range = self.suite.db_range
        row = {}
        row.update(with_band_mean([metrics.histogram_wasserstein(a, b, db_range)
                                   for a, b in zip(statistics.histograms, target.histograms)],
                                  self.suffixes, f"histogram_wasserstein_db{tag}"))
        row.update(with_band_mean([metrics.histogram_jensen_shannon(a, b)
                                   for a, b in zip(statistics.histograms, target.histograms)],
                                  self.suffixes, f"histogram_js{tag}"))
        row.update(with_band_mean([texture.texture_distance(a, b)
                                   for a, b in zip(statistics.cooccurrences, target.cooccurrences)],
                                  self.suffixes, f"texture_distance{tag}"))
        return row

    def domain_row(self, statistics):
        """Histogram, texture and Gram distances of one generated image to the whole real set."""
        row = self.distances(statistics, self.real, "_domain")
        if self.suite.gram is not None:
            suffixes = list(statistics.grams)
            row.update(with_band_mean([self.suite.gram.distance(statistics.grams[suffix],
                                                                  self.real.mean_grams(suffix))
                                         for suffix in suffixes], suffixes, "gram_distance_domain"))
        return row

    def domain_metrics(self):
        """The generated set against the real set: FID, KID, pooled distances and SAR statistics of both."""
        generated, real = self.generated, self.real
        domain = {"generated_images": generated.count, "real_images": real.count}
        if not real.count:
            domain.update(dict.fromkeys(("fid", "kid", "histogram_wasserstein_db", "histogram_js",
                                         "texture_distance", "gram_distance"), NO_REAL))
        else:
            domain.update(self.inception_distances())
            domain.update(self.distances(generated, real, ""))
            if self.suite.gram is not None:
                suffixes = list(generated.gram_sums)
                domain.update(with_band_mean([self.suite.gram.distance(generated.mean_grams(suffix),
                                                                         real.mean_grams(suffix))
                                                for suffix in suffixes], suffixes, "gram_distance"))
            else:
                domain["gram_distance"] = self.suite.gram_note
        for key in dict.fromkeys(key for values in generated.values.values() for key in values):
            summary = {"generated": generated.summary(key)}
            if real.count:
                summary["real"] = real.summary(key)
                if key.startswith("mean_db"):
                    summary["difference"] = summary["generated"]["mean"] - summary["real"]["mean"]
                elif key.startswith(("enl", "intensity_cv")):
                    summary["ratio"] = ratio(summary["generated"]["mean"], summary["real"]["mean"])
            domain[key] = summary
        return domain

    def inception_distances(self):
        """FID and KID per network view, each with its image counts and resize rule, or why they are missing."""
        if self.suite.fid is None:
            return {"fid": self.suite.fid_note, "kid": self.suite.fid_note}
        if min(self.generated.count, self.real.count) < 2:
            reason = (f"unavailable: needs at least 2 generated and 2 real images, found {self.generated.count} and "
                      f"{self.real.count}")
            return {"fid": reason, "kid": reason}
        scores = {}
        for suffix, generated_set in self.generated.features.items():
            generated_features = generated_set.features()
            real_features = self.real.features[suffix].features()
            details = {"generated_images": len(generated_features), "real_images": len(real_features),
                       "dims": self.suite.fid.dims, "resize": RESIZE_RULE}
            try:
                fid = metrics.frechet_distance(generated_features, real_features)
            except np.linalg.LinAlgError as error:  # an SVD or eigendecomposition that did not converge
                fid = f"unavailable: {error}"
            scores[f"fid{suffix}"] = {"value": fid, **details} if isinstance(fid, float) else fid
            scores[f"kid{suffix}"] = {"value": metrics.kernel_distance(generated_features, real_features),
                                      "unbiased": True, **details}
        if len(scores) > 2:
            for key in ("fid", "kid"):
                values = [score["value"] for name, score in scores.items()
                          if name.startswith(f"{key}_") and isinstance(score, dict)]
                scores[key] = {"value": float(np.mean(values)) if values else float("nan"), "bands": "mean over bands"}
        return scores

    def plot_series(self):
        """{title: {'generated': [(x, y)], 'real': [(x, y)]}} for the page's small plots, per band: each set's dB
        histogram (share of valid pixels per PLOT_BIN_DB) and its per-image ENL and intensity CV, sorted."""
        plots = {}
        low, high = self.suite.db_range
        for band, suffix in enumerate(self.suffixes):
            label = f" {suffix[1:]}" if suffix else ""
            histograms = {name: statistics.histograms[band] for name, statistics in self.sets()
                          if statistics.histograms is not None}
            plots[f"dB histogram{label}"] = {name: histogram_points(counts, low, high)
                                             for name, counts in histograms.items()}
            for key, title in (("enl", "ENL per image"), ("intensity_cv", "intensity CV per image")):
                values = {name: finite_sorted(row.get(f"{key}{suffix}") for row in statistics.values.values())
                          for name, statistics in self.sets()}
                if any(values.values()):
                    plots[f"{title}{label}"] = {name: list(enumerate(sorted_values, 1))
                                                for name, sorted_values in values.items()}
        return plots

    def sets(self):
        """(name, SetStatistics) of the generated and, when there are any, the real images."""
        return [("generated", self.generated)] + ([("real", self.real)] if self.real.count else [])

    def settings(self):
        """How the metrics were computed, for metrics.json."""
        return {**self.suite.settings(), "bands": self.labels, "pair_resize": PAIR_RESIZE_RULE,
                "resized_pairs": len(self.resized_pairs)}


def finite_sorted(values):
    """The finite numbers among `values` (None left out), sorted."""
    return sorted(value for value in values if value is not None and np.isfinite(value))


def histogram_points(counts, low, high):
    """(dB, share of pixels per PLOT_BIN_DB) points of a HISTOGRAM_BIN_DB histogram over low..high dB."""
    group = max(1, int(round(PLOT_BIN_DB / metrics.HISTOGRAM_BIN_DB)))
    usable = len(counts) // group * group
    grouped = np.asarray(counts[:usable], dtype=np.float64).reshape(-1, group).sum(axis=1)
    total = grouped.sum()
    width = (high - low) / len(grouped)
    shares = grouped / total if total else grouped
    return [(low + width * (index + 0.5), float(share)) for index, share in enumerate(shares)]


def ratio(numerator, denominator):
    """numerator / denominator, nan when either is not a finite number or the denominator is 0."""
    if not (np.isfinite(numerator) and np.isfinite(denominator)) or denominator == 0:
        return float("nan")
    return float(numerator / denominator)


def score_values(domain):
    """{metric: float} of the domain metrics that have a numeric value (FID and KID by their 'value')."""
    scores = {}
    for key, value in domain.items():
        if isinstance(value, dict):
            value = value.get("value")
        if isinstance(value, float) and np.isfinite(value):
            scores[key] = value
    return {key: value for key, value in scores.items() if key not in ("generated_images", "real_images")}


"""Computing every metric: the real target domain first, then each generated image, then domain distances."""

import numpy as np
from torch import nn

from data.image_io import read_image
from data.radiometry import Radiometry, radiometry_for
from evaluation import metrics
from evaluation.features import GramFeatures, InceptionFeatures, inception_weights_state, stack_features
from util.device import parse_gpu_ids, select_device
from util.errors import SargenError

NO_REAL = "unavailable: no real target images (pass --real_dir, or --real_label for the results folder)"
PAIRED_KEYS = ("psnr", "ssim", "mae", "rmse", "histogram_wasserstein_real", "histogram_js_real", "gram_distance_real")
DOMAIN_KEYS = ("histogram_wasserstein_domain", "histogram_js_domain", "gram_distance_domain")
SPECKLE_KEYS = ("enl", "intensity_cv")


class ImageSetStatistics:
    """Running statistics of a set of images: pooled histograms, summed Grams, Inception features, speckle."""

    def __init__(self):
        """Start empty."""
        self.histograms = 0.0
        self.gram_sum = None
        self.count = 0
        self.features = []
        self.speckle = {}

    def add(self, key, histograms, grams, features, speckle):
        """Add one image's statistics; `key` names it in `speckle`; `grams` and `features` may be None."""
        self.count += 1
        self.histograms = self.histograms + histograms
        self.speckle[key] = speckle
        if grams is not None:
            self.gram_sum = grams if self.gram_sum is None else {
                layer: self.gram_sum[layer] + gram for layer, gram in grams.items()}
        if features is not None:
            self.features.append(features)

    def mean_grams(self):
        """The mean Gram matrix of each layer over the images added."""
        return {layer: gram / self.count for layer, gram in self.gram_sum.items()}

    def speckle_summary(self, key):
        """Mean, standard deviation and count of one speckle statistic over the images."""
        return metrics.mean_and_std([values[key] for values in self.speckle.values()])


def ratio(numerator, denominator):
    """numerator / denominator, nan when either is not a finite number or the denominator is 0."""
    if not (np.isfinite(numerator) and np.isfinite(denominator)) or denominator == 0:
        return float("nan")
    return float(numerator / denominator)


def as_array(image):
    """A C x H x W tensor as an H x W x C float32 numpy array."""
    return image.permute(1, 2, 0).numpy()


def resized(image, size):
    """A C x H x W tensor resized to `size` (H, W) by antialiased bilinear interpolation (as it is if equal)."""
    if tuple(image.shape[1:]) == tuple(size):
        return image
    return nn.functional.interpolate(image[None], size=tuple(size), mode="bilinear", align_corners=False,
                                     antialias=True)[0].clamp(0.0, 1.0)


class Evaluator:
    """Reads the images of an EvaluationImages set and computes per-image rows and domain-level metrics.

    Call add_real() for every real target image first, then evaluate_pair() for each generated image, then
    domain_metrics().
    """

    def __init__(self, opt, images):
        """Read the options, build the networks that are needed (VGG, Inception-v3) on the chosen device."""
        self.opt, self.images = opt, images
        self.device = select_device(parse_gpu_ids(opt.gpu_ids))
        # the real target domain's reading rule (--NAME_A for fake_B2A, else --NAME_B, or the plain --NAME)
        self.radiometry = radiometry_for(opt, "A" if images.fake_label.endswith("2A") else "B")
        self.real_scaling = self.radiometry if opt.real_dir else Radiometry()
        self.channels = read_image(images.pairs[0].fake).shape[0]
        self.gram = None if opt.no_gram else GramFeatures(opt.vgg, opt.vgg_weights, opt.style_layer, opt.vgg_seed,
                                                          self.device)
        self.inception, self.inception_note = self.build_inception()
        self.real, self.fake = ImageSetStatistics(), ImageSetStatistics()
        self.resized_pairs = 0

    def build_inception(self):
        """(InceptionFeatures or None, a note on why FID/KID are or are not computed)."""
        if self.opt.fid == "off":
            return None, "skipped (--no_fid)"
        fake_count, real_count = len(self.images.pairs), len(self.images.real_domain)
        if min(fake_count, real_count) < 2:
            reason = f"needs at least 2 generated and 2 real target images, found {fake_count} and {real_count}"
            if self.opt.fid == "required":
                raise SargenError(f"--fid: {reason} (pass --real_dir or --no_fid)")
            return None, f"unavailable: {reason}"
        state, description = inception_weights_state(self.opt.inception_weights, self.opt.fid == "required")
        if state is None:
            return None, f"unavailable: {description}"
        source = f"--inception_weights {self.opt.inception_weights}"
        return InceptionFeatures(state, description, self.device, source), description

    def read_real(self, path):
        """A real target image with the generated images' channel count, scaled by the --real_dir rule."""
        return read_image(path, self.channels, self.real_scaling)

    def image_statistics(self, image):
        """(H x W x C array, histograms, Grams or None, Inception features or None, speckle) of one image."""
        array = as_array(image)
        grams = self.gram.grams(image) if self.gram is not None else None
        features = self.inception(image) if self.inception is not None else None
        speckle = metrics.speckle_statistics(array, self.opt.intensity_unit, self.radiometry.db_window,
                                             self.opt.enl_window, self.opt.enl_fraction)
        return array, metrics.intensity_histograms(array), grams, features, speckle

    def add_real(self, path):
        """Accumulate one real target image's statistics."""
        _, *statistics = self.image_statistics(self.read_real(path))
        self.real.add(path, *statistics)

    def evaluate_pair(self, pair):
        """The row of one generated image: paired metrics (if it has a real twin), domain distances, speckle."""
        image = read_image(pair.fake, self.channels)
        _, histograms, grams, features, speckle = self.image_statistics(image)
        self.fake.add(pair.name, histograms, grams, features, speckle)
        row = {"name": pair.name, "fake": str(pair.fake), "real": str(pair.real) if pair.real else None}
        row.update(self.paired_row(pair, image, histograms, grams))
        row.update(self.domain_row(histograms, grams))
        row.update(speckle)
        row["enl_real"] = self.real.speckle[pair.real]["enl"] if pair.real in self.real.speckle else None
        return row

    def paired_row(self, pair, image, histograms, grams):
        """Pixel, histogram and Gram distances to the paired real image (None without one).

        A real image of another size is resized to the generated image's size for the pixel metrics.
        """
        if pair.real is None:
            return dict.fromkeys(PAIRED_KEYS)
        real_image = self.read_real(pair.real)
        real_histograms = metrics.intensity_histograms(as_array(real_image))
        if real_image.shape != image.shape:
            self.resized_pairs += 1
        row = metrics.paired_metrics(as_array(image), as_array(resized(real_image, image.shape[1:])))
        row["histogram_wasserstein_real"] = metrics.histogram_wasserstein(histograms, real_histograms)
        row["histogram_js_real"] = metrics.histogram_jensen_shannon(histograms, real_histograms)
        row["gram_distance_real"] = (self.gram.distance(grams, self.gram.grams(real_image))
                                     if self.gram is not None else None)
        return row

    def domain_row(self, histograms, grams):
        """Histogram and Gram distances of one generated image to the real target domain (None without one)."""
        if not self.real.count:
            return dict.fromkeys(DOMAIN_KEYS)
        return {"histogram_wasserstein_domain": metrics.histogram_wasserstein(histograms, self.real.histograms),
                "histogram_js_domain": metrics.histogram_jensen_shannon(histograms, self.real.histograms),
                "gram_distance_domain": (self.gram.distance(grams, self.real.mean_grams())
                                         if self.gram is not None else None)}

    def domain_metrics(self):
        """Generated set against the real target domain: pooled histograms, mean Grams, FID, KID, speckle."""
        domain = {"generated_images": self.fake.count, "real_images": self.real.count}
        if not self.real.count:
            domain.update(dict.fromkeys(("histogram_wasserstein", "histogram_js", "gram_distance", "fid", "kid"),
                                        NO_REAL))
            domain.update({key: {"generated": self.fake.speckle_summary(key), "real": NO_REAL}
                           for key in SPECKLE_KEYS})
            return domain
        domain["histogram_wasserstein"] = metrics.histogram_wasserstein(self.fake.histograms, self.real.histograms)
        domain["histogram_js"] = metrics.histogram_jensen_shannon(self.fake.histograms, self.real.histograms)
        domain["gram_distance"] = (self.gram.distance(self.fake.mean_grams(), self.real.mean_grams())
                                   if self.gram is not None else "skipped (--no_gram)")
        domain.update(self.inception_distances())
        for key in SPECKLE_KEYS:
            generated, real = self.fake.speckle_summary(key), self.real.speckle_summary(key)
            domain[key] = {"generated": generated, "real": real, "ratio": ratio(generated["mean"], real["mean"])}
        return domain

    def inception_distances(self):
        """FID and KID between the generated and real Inception-v3 features, or the note why not."""
        if self.inception is None:
            return {"fid": self.inception_note, "kid": self.inception_note}
        fake_features, real_features = stack_features(self.fake.features), stack_features(self.real.features)
        return {"fid": metrics.frechet_distance(fake_features, real_features),
                "kid": metrics.kernel_distance(fake_features, real_features)}

    def settings(self):
        """How the metrics were computed, for metrics.json and the page."""
        opt = self.opt
        return {"results": str(self.images.results_dir), "fake_label": self.images.fake_label,
                "real_source": self.images.real_source, "channels": self.channels,
                "real_scaling": self.real_scaling.record() if opt.real_dir else "8-bit values / 255",
                "resized_pairs": self.resized_pairs, "intensity_unit": opt.intensity_unit,
                "db_window": list(self.radiometry.db_window), "enl_window": opt.enl_window,
                "enl_fraction": opt.enl_fraction,
                "gram": self.gram.description() if self.gram is not None else "skipped (--no_gram)",
                "inception": self.inception_note, "device": str(self.device)}

"""Scoring during training (--eval_freq): a fixed subset of the source test images, translated by the model, against
the target test images, with the evaluation package's metrics; and the best step by --best_metric.

The test images come from the dataset mode (its evaluation_sets: DATAROOT/testA and testB for unaligned data,
test/A and test/B for aligned data, the test split's patches of both sensors for sen12ms and sen12; swapped for
--direction BtoA). The subset: --eval_size images evenly spaced over the sorted source images, and as many of
the target images. The target images' statistics are computed once. Metrics: FID and KID when pytorch-fid's
weights are there (hub cache or --inception_weights), else the Gram distance (VGG19, ImageNet weights when
torchvision's cache has them, else seeded random ones); always the dB histogram and texture distances; with
co-registered test data (the same scenes: pairing.json's co_registered, an aligned layout without a record, the
same patch of a sen12ms/sen12 scene) the target images are the sources' partners and PSNR, SSIM, MAE and RMSE
averaged over the pairs are scored too.
"""

import logging

import torch
from torchvision.transforms import functional as TF

from data import find_dataset_class
from data.image_io import read_image
from evaluation.collect import NamedImage
from evaluation.evaluator import EvaluationImage, Evaluator, ImageReader, MetricSuite, band_labels, score_values
from evaluation.features import GramFeatures
from evaluation.inception import FIDFeatures, find_fid_weights
from evaluation.options import add_fid_options, image_radiometry, target_domain
from evaluation.physical import rendering_scale
from models.vgg import imagenet_cache_path
from options.number_types import non_negative_int, positive_int
from util.errors import SargenError

logger = logging.getLogger("sargen")

METRIC_DIRECTIONS = {"fid": "lower", "kid": "lower", "gram_distance": "lower", "histogram_wasserstein_db": "lower",
                     "histogram_js": "lower", "texture_distance": "lower", "psnr": "higher", "ssim": "higher",
                     "mae": "lower", "rmse": "lower"}
PAIRED_SCORES = ("psnr", "ssim", "mae", "rmse")
TRAINING_VGG = "vgg19"
TRAINING_STYLE_LAYERS = "0,1,2,3,4"


def add_training_evaluation_options(parser):
    """Add --eval_freq, --eval_size, --best_metric and the FID options (models trained by steps)."""
    parser.add_argument("--eval_freq", type=non_negative_int, default=0,
                        help="score --eval_size test images every this many steps and at the last one, logged to "
                             "metrics_log.txt; keeps best_net_*.pth by --best_metric (0: never)")
    parser.add_argument("--eval_size", type=positive_int, default=50,
                        help="source test images scored (evenly spaced over the sorted folder), and target "
                             "images compared with")
    parser.add_argument("--best_metric", default="auto", choices=("auto", *METRIC_DIRECTIONS),
                        help="metric that picks best_net_*.pth (psnr and ssim: higher is better, the others lower; "
                             "psnr to rmse need an aligned test set); auto: fid with pytorch-fid's weights, else "
                             "gram_distance")
    add_fid_options(parser)
    return parser


def evenly_spaced(items, count):
    """At most `count` of `items`, evenly spaced, first included (all when there are fewer)."""
    if len(items) <= count:
        return list(items)
    return [items[index * len(items) // count] for index in range(count)]


def training_suite(opt, device):
    """(MetricSuite, note): FID and KID with pytorch-fid's weights, else VGG19 Grams; histograms and textures."""
    suite = MetricSuite(tuple(image_radiometry(opt, target_domain(opt)).db_window), speckle=False, fid_note="",
                        gram_note="")
    path, reason = find_fid_weights(opt.inception_weights)
    if path is not None:
        suite.fid = FIDFeatures(path, opt.fid_dims, device)
        return suite, f"FID and KID with pytorch-fid's Inception ({opt.fid_dims}-d, {suite.fid.weights})"
    weights = "imagenet" if imagenet_cache_path(TRAINING_VGG).is_file() else "random"
    suite.gram = GramFeatures(TRAINING_VGG, weights, TRAINING_STYLE_LAYERS, 0, device)
    suite.fid_note = reason
    return suite, f"Gram distance ({TRAINING_VGG}, {suite.gram.network.weights_description}); FID and KID {reason}"


class TrainingEvaluation:
    """Scores a model's translations of a fixed subset of the source test images against the target test images."""

    def __init__(self, opt, device, image_size):
        """List the subsets, build the metrics, and compute the target images' statistics once."""
        self.opt, self.device, self.image_size = opt, device, image_size
        sets = find_dataset_class(opt.dataset_mode).evaluation_sets(opt)
        self.paired = bool(sets.partners)
        source, target = ("A", "B") if opt.direction == "AtoB" else ("B", "A")
        self.source_scaling = image_radiometry(opt, source)
        self.target_scaling = image_radiometry(opt, target)
        self.source_channels = opt.input_nc if source == "A" else opt.output_nc
        self.target_channels = opt.output_nc if source == "A" else opt.input_nc
        self.sources = evenly_spaced(sets.sources, opt.eval_size)
        if self.paired:  # each target named by its source, so that the pair meets by name
            targets = [NamedImage(path.stem, sets.partners[path]) for path in self.sources if path in sets.partners]
        else:
            targets = [NamedImage(path.stem, path) for path in evenly_spaced(sets.targets, opt.eval_size)]
        self.suite, self.metrics_note = training_suite(opt, device)
        labels = band_labels(self.target_scaling, self.target_channels)
        self.evaluator = Evaluator(self.suite, labels)
        reader = ImageReader(self.target_scaling, db_window=self.target_scaling.db_window,
                             skip_bad=getattr(opt, "skip_bad", False))
        self.reals = {}
        for named in targets:
            image = reader.read(named)
            if image is not None:
                self.evaluator.add_real(image, keep=self.paired)
                self.reals[image.name] = image
        self.kept_real = dict(self.evaluator.kept_real)  # the paired real images' statistics, for every score()
        self.scale = rendering_scale(self.target_scaling, db_window=self.target_scaling.db_window)
        self.labels = labels
        self.description = (f"{len(self.sources)} images of {sets.source_description} against {len(targets)} of "
                            f"{sets.target_description}{f' (pairs {sets.pairing})' if self.paired else ''}; "
                            f"{self.metrics_note}")
        logger.info("--eval_freq %d: %s", opt.eval_freq, self.description)

    def available_metrics(self):
        """The metrics score() returns."""
        names = ["histogram_wasserstein_db", "histogram_js", "texture_distance"]
        names += ["fid", "kid"] if self.suite.fid is not None else ["gram_distance"]
        return names + (list(PAIRED_SCORES) if self.paired else [])

    def source_batches(self):
        """Batches (B x C x S x S in [-1, 1], names) of the source subset, resized to the model's image size."""
        batch, names = [], []
        for path in self.sources:
            try:
                image = read_image(path, self.source_channels, self.source_scaling)
            except SargenError as error:
                if not getattr(self.opt, "skip_bad", False):
                    raise
                logger.warning("skipped (--skip_bad): %s", error)
                continue
            batch.append(TF.resize(image, [self.image_size, self.image_size], antialias=True).clamp(0, 1) * 2 - 1)
            names.append(path.stem)
            if len(batch) == self.opt.batch_size:
                yield torch.stack(batch), names
                batch, names = [], []
        if batch:
            yield torch.stack(batch), names

    @torch.no_grad()
    def score(self, translate):
        """{metric: value} of the translations by `translate` (a batch in [-1, 1] -> translations in [-1, 1])."""
        self.evaluator.new_generated_set()
        self.evaluator.kept_real = dict(self.kept_real)
        rows = []
        for batch, names in self.source_batches():
            outputs = translate(batch.to(self.device)).detach().float().cpu()
            for name, output in zip(names, outputs):
                image = EvaluationImage(name, ((output + 1) / 2).clamp(0, 1), self.scale, self.labels)
                rows.append(self.evaluator.add_generated(image, self.reals.get(name) if self.paired else None))
        scores = score_values(self.evaluator.domain_metrics())
        for key in PAIRED_SCORES if self.paired else ():
            values = [row[key] for row in rows if key in row]
            if values:
                scores[key] = float(sum(values) / len(values))
        return {name: scores[name] for name in self.available_metrics() if name in scores}


class BestCheckpoint:
    """The best score of --best_metric so far and its step; saved in the resume state."""

    def __init__(self, metric="auto"):
        """Nothing scored yet."""
        self.requested = metric
        self.metric, self.value, self.step, self.settings = None, None, None, None

    def start(self, available, settings):
        """Fix the metric (auto: fid if available, else gram_distance) for runs scored as `settings` say.

        A resumed best chosen by another metric or with other settings is dropped, with a warning.
        """
        metric = self.requested
        if metric == "auto":
            metric = "fid" if "fid" in available else "gram_distance"
        if metric not in available:
            raise SargenError(f"--best_metric {metric}: not computed here (computed: {', '.join(available)}); "
                              f"FID needs pytorch-fid's weights, psnr to rmse an aligned test set")
        if self.value is not None and (self.metric, self.settings) != (metric, settings):
            logger.warning("the resumed best (%s %s at step %s) was scored otherwise (%s; now %s by %s): "
                           "starting a new best", self.metric, self.value, self.step, self.settings, settings, metric)
            self.value, self.step = None, None
        self.metric, self.settings = metric, settings

    def update(self, step, scores):
        """Record `scores` of `step`; True when they hold a new best value of the metric."""
        value = scores.get(self.metric)
        if value is None:
            return False
        better = (self.value is None or (value < self.value if METRIC_DIRECTIONS[self.metric] == "lower"
                                         else value > self.value))
        if better:
            self.value, self.step = float(value), int(step)
        return better

    def state(self):
        """The resume state: metric, best value and step, and the settings they were scored with."""
        return {"metric": self.metric, "value": self.value, "step": self.step, "settings": self.settings}

    def load(self, state):
        """Take the state of a resumed checkpoint (None: nothing scored yet)."""
        if state:
            self.metric, self.value, self.step, self.settings = (state.get(key) for key in
                                                                 ("metric", "value", "step", "settings"))

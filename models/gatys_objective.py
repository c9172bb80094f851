"""The Gatys objective: VGG features, Gram matrices and the weighted content and style losses of images.

Shared by --model gatys (per-image optimization) and --model gatys_feedforward (a generator trained on the same
loss), so both minimise one loss with one VGG module, Gram matrix and weights policy. Gram files (written by
``train.py --model gatys``) hold the mean Gram of the target band, overall and per land-cover category, with the
record of how they were made (backbone, weights, style layers, normalization): read_gram_file refuses a file
whose record does not fit the run, and the record fills the VGG options a run leaves unset.
"""

import logging
from pathlib import Path

import torch

from models.losses import content_loss, gram_matrix, style_loss
from models.vgg import (
    NORMALIZATION,
    VGGFeatures,
    default_help,
    parse_layers,
    weights_description,
)
from options.number_types import weight
from util.checkpoint import check_format, load_checkpoint
from util.device import autocast_dtype
from util.errors import SargenError

logger = logging.getLogger("sargen")

GRAM_KIND = "gatys_gram"
RECORD_KEYS = ("backbone", "weights", "style_layers")
LOSS_FALLBACKS = {"content_layer": "3", "lambda_style": 1e5, "lambda_content": 1.0}


def add_loss_options(parser, recorded_in=None):
    """Add --content_layer, --lambda_style and --lambda_content (unset = None when `recorded_in` holds them)."""
    recorded = recorded_in is not None

    def default(name):
        return None if recorded else LOSS_FALLBACKS[name]

    parser.add_argument("--content_layer", default=default("content_layer"),
                        help="content layers, as --style_layer" + default_help(LOSS_FALLBACKS["content_layer"],
                                                                               recorded_in))
    parser.add_argument("--lambda_style", type=weight, default=default("lambda_style"),
                        help="weight of the style loss" + default_help(LOSS_FALLBACKS["lambda_style"], recorded_in))
    parser.add_argument("--lambda_content", type=weight, default=default("lambda_content"),
                        help="weight of the content loss" + default_help(LOSS_FALLBACKS["lambda_content"],
                                                                         recorded_in))
    return parser


def check_vgg_channels(opt):
    """Refuse --input_nc/--output_nc other than 1 or 3: the losses compare VGG features of grey or RGB images."""
    for option, channels in (("--input_nc", opt.input_nc), ("--output_nc", opt.output_nc)):
        if channels not in (1, 3):
            raise SargenError(f"{option} {channels}: --model {opt.model} compares VGG features of 1- or 3-channel "
                              f"images; pick 1 or 3 bands (--bands_A/--bands_B) or use --model ugatit")


class GatysObjective:
    """A frozen VGG cut after the deepest loss layer, and the per-image Gatys losses computed with it."""

    def __init__(self, opt, device, with_content=True):
        """Build the VGG of opt.vgg/vgg_weights/vgg_seed for the style (and, `with_content`, content) layers."""
        self.backbone = opt.vgg
        self.style_layers = parse_layers(opt.vgg, opt.style_layer, "--style_layer")
        self.content_layers = parse_layers(opt.vgg, opt.content_layer, "--content_layer") if with_content else []
        self.vgg = VGGFeatures(opt.vgg, opt.vgg_weights, self.style_layers + self.content_layers,
                               opt.vgg_seed).to(device)
        self.device = device
        self.autocast_dtype = autocast_dtype(device, opt.precision)
        self.lambda_style = getattr(opt, "lambda_style", None)
        self.lambda_content = getattr(opt, "lambda_content", None)

    def metadata(self):
        """What identifies the Gram targets: backbone, weights, layers and normalization."""
        return {"backbone": self.backbone, "weights": self.vgg.weights_description,
                "style_layers": list(self.style_layers), "normalization": NORMALIZATION}

    def description(self):
        """The network and layers, for results pages and logs."""
        return (f"VGG {self.backbone}, weights {self.vgg.weights_description}, style layers "
                f"{','.join(self.style_layers)}, content layers {','.join(self.content_layers)}")

    def features(self, images, precision=True):
        """VGG features of [-1, 1] images (as [0, 1]), in the chosen precision unless told otherwise."""
        images01 = (images + 1.0) / 2.0
        dtype = self.autocast_dtype if precision else None
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            return self.vgg(images01)

    def grams(self, features):
        """The float32 Gram matrix of each style layer."""
        return {name: gram_matrix(features[name]) for name in self.style_layers}

    @torch.no_grad()
    def content_targets(self, images, precision=False):
        """The content layers' features of [-1, 1] source images (float32 unless `precision`)."""
        features = self.features(images, precision)
        return {name: features[name] for name in self.content_layers}

    def losses(self, images, content_targets, style_targets, precision=True):
        """Per-image total, style and content losses of [-1, 1] images."""
        features = self.features(images, precision)
        style = style_loss(self.grams(features), style_targets)
        content = content_loss({name: features[name] for name in self.content_layers}, content_targets)
        total = self.lambda_style * style + self.lambda_content * content
        return total, style, content


def expected_metadata(opt):
    """The record a Gram file must hold for the VGG options of `opt`, known before any weights are loaded."""
    return {"backbone": opt.vgg, "weights": weights_description(opt.vgg, opt.vgg_weights, opt.vgg_seed),
            "style_layers": parse_layers(opt.vgg, opt.style_layer, "--style_layer")}


def check_gram_metadata(record, expected, path):
    """Refuse a Gram record made with another backbone, weights or layers than `expected`; return the record."""
    for key in RECORD_KEYS:
        if record.get(key) != expected[key]:
            raise SargenError(f"{path} was made with {key} {record.get(key)} but this run uses {expected[key]}: "
                              f"leave out --vgg/--vgg_weights/--vgg_seed/--style_layer to use the file's, or "
                              f"rerun train.py with the same options")
    return record


def read_gram_file(path, expected=None):
    """Load a Gram file (weights_only; format and kind checked) and, given `expected`, check its record."""
    payload = check_format(load_checkpoint(path, "Gram file"), path, GRAM_KIND)
    return payload if expected is None else check_gram_metadata(payload, expected, path)


def read_gram_record(path):
    """The Gram file at `path` (format checked), or None when there is none."""
    return read_gram_file(path) if Path(path).is_file() else None


def category_gram(payload, category, same_category):
    """The saved mean Gram of `category` with --same_category, else that of all training images."""
    if same_category:
        if category in payload.get("category_gram", {}):
            return payload["category_gram"][category]
        logger.warning("no training images of category '%s': using the overall mean Gram", category)
    return payload["gram"]


def stacked_style_targets(payload, categories, same_category, style_layers, device):
    """{layer: B x C x C} target Grams for images of `categories` (one per image)."""
    per_image = [category_gram(payload, category, same_category) for category in categories]
    return {name: torch.stack([grams[name] for grams in per_image]).to(device) for name in style_layers}

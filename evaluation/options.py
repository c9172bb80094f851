"""evaluate.py's command-line options, and the radiometry each image set is read with."""

import argparse
import dataclasses

from data.image_io import add_image_options
from data.radiometry import DEFAULT_SCALING, radiometry_for
from evaluation.inception import FID_DIMS
from evaluation.perceptual import LPIPS_NETS
from evaluation.physical import INTENSITY_UNITS
from models.vgg import add_vgg_options
from options.number_types import MAX_NETWORK_SIDE, batch_count, integer, real
from util.cli import ArgumentParser

EXIT_SOME_UNAVAILABLE = 3  # evaluate.py's exit code when the report is written but some metrics could not run


def image_radiometry(opt, role):
    """The radiometry (bands, scaling rule, window, unit) the `role` images are read with: 'generated' or 'real'
    (evaluate.py), or the domain 'A' or 'B' of the test folders (--eval_freq).

    The one place that maps the options to each image set: generated and real images are both of the target
    domain, so they take its per-domain options (--bands_B, ...; the _A ones for fake_B2A), else the plain ones.
    """
    return radiometry_for(opt, role if role in ("A", "B") else target_domain(opt))


def target_domain(opt):
    """The domain generated images belong to: A for --fake_label *2A or --direction BtoA, else B."""
    label = getattr(opt, "fake_label", None) or ""
    return "A" if label.endswith("2A") or getattr(opt, "direction", "AtoB") == "BtoA" else "B"


def generated_radiometry(opt, images):
    """The generated images' radiometry: test.py's 8-bit results PNGs are value / 255, its GeoTIFF results are read
    as raster_radiometry says, other folders by the options."""
    if images.raster_record is not None:
        return raster_radiometry(images.raster_record, image_radiometry(opt, "real"))
    return DEFAULT_SCALING if images.results_layout else image_radiometry(opt, "generated")


def raster_radiometry(record, real):
    """How test.py's GeoTIFF results (their raster_outputs.json `record`) are read: 8-bit levels as value / 255;
    physical values by the real target files' rule (`real`: db, its window) over every band, in the unit written."""
    if record["unit"] == "uint8":
        return DEFAULT_SCALING
    return dataclasses.replace(real, mode="db", bands=None, input_unit="db" if record["unit"] == "db" else "linear")


def add_fid_options(parser):
    """Add --inception_weights and --fid_dims (evaluate.py and --eval_freq during training)."""
    parser.add_argument("--inception_weights", default=None,
                        help="pytorch-fid's Inception weights file pt_inception-2015-12-05-6726825d.pth (default: "
                             "where pytorch-fid looks, $TORCH_HOME/hub/checkpoints)")
    parser.add_argument("--fid_dims", type=integer(), default=2048, choices=FID_DIMS,
                        help="Inception features for FID and KID (2048: the pool features papers use)")
    return parser


def add_speckle_options(parser):
    """Add the options of the SAR statistics: what pixel values stand for, the ENL windows."""
    parser.add_argument("--intensity_unit", default="auto", choices=INTENSITY_UNITS,
                        help="what 8-bit renderings (and, under rules other than db, file values) stand for: db "
                             "(8-bit: 0..255 spans --db_window), amplitude or intensity; auto: db for 8-bit files, "
                             "--input_unit for others")
    parser.add_argument("--enl_window", type=integer(1, MAX_NETWORK_SIDE), default=15,
                        help="side of the ENL windows in pixels")
    parser.add_argument("--enl_fraction", type=real(above=0.0, maximum=1.0), default=0.1,
                        help="fraction of the most homogeneous windows the ENL is measured on")
    return parser


def add_metric_switch(parser, name, metric, weights):
    """--NAME (the metric is required: an error if it cannot run) and --no_NAME (skipped); default 'auto': computed
    when its weights are there, else reported unavailable with where to put them."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{name}", dest=name, action="store_const", const="required", default="auto",
                       help=f"require {metric}, with {weights}, or fail; default: compute it when the weights are "
                            f"on disk, else report it unavailable (exit code {EXIT_SOME_UNAVAILABLE})")
    group.add_argument(f"--no_{name}", dest=name, action="store_const", const="off", help=f"skip {metric}")


def build_parser():
    """The parser of evaluate.py's options."""
    parser = ArgumentParser(
        description="Metrics of generated images against real ones (writes metrics.json, metrics.csv and, when "
                    "the output folder has an index.html, its metrics section). Exit codes: 0 every metric computed, "
                    f"{EXIT_SOME_UNAVAILABLE} report written but some metrics unavailable (weights absent, too few "
                    "images), 2 an error (nothing written).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--fake_dir", default=None, help="folder of generated images (any tool's; PNG, JPEG, TIFF)")
    parser.add_argument("--real_dir", default=None,
                        help="folder of real target images; a real image pairs with the generated image of its "
                             "name (file name without extension)")
    parser.add_argument("--fake_prefix", default="gen_sar_",
                        help="prefix stripped from generated file names before pairing (app.py writes "
                             "gen_sar_NAME); '' to strip nothing")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a metrics.json or metrics.csv in the --out folder that evaluate.py did not write")
    parser.add_argument("--out", default=None, help="folder for metrics.json and metrics.csv (default: the "
                                                    "generated images' folder, or --results)")
    parser.add_argument("--results", default=None,
                        help="shorthand for a results folder of test.py: generated images RESULTS/images/"
                             "NAME_LABEL.png, real ones NAME_real_B.png beside them or --real_dir")
    parser.add_argument("--fake_label", default=None,
                        help="--results: label of the generated images; default: fake_B, else fake_A2B, else fake_B2A")
    parser.add_argument("--real_label", default=None,
                        help="--results: label of the real images in the folder; default: real_B for fake_B and "
                             "fake_A2B, real_A for fake_B2A")
    parser.add_argument("--unpaired", action="store_true",
                        help="the folders hold different scenes: no paired metrics, even where names match")
    parser.add_argument("--skip_bad", action="store_true",
                        help="warn about and leave out images that cannot be read (default: stop, naming the file)")
    add_image_options(parser)
    add_speckle_options(parser)
    add_vgg_options(parser, "Gram distance")
    parser.set_defaults(vgg_weights=None)  # unset: ImageNet from the cache, else the Gram distance is unavailable
    for action in parser._actions:
        if action.dest == "vgg_weights":
            action.help += ("; unset: ImageNet from torchvision's cache when it is there, else the Gram distance is "
                            "reported unavailable")
    add_metric_switch(parser, "gram", "the Gram (style) distance", "VGG's ImageNet weights (downloaded if needed)")
    add_fid_options(parser)
    parser.add_argument("--batch_size", type=batch_count, default=50, help="images per Inception batch")
    add_metric_switch(parser, "fid", "FID and KID", "pytorch-fid's Inception weights (downloaded if needed)")
    parser.add_argument("--lpips_net", default="alex", choices=tuple(LPIPS_NETS),
                        help="LPIPS backbone (lpips package, v0.1)")
    parser.add_argument("--lpips_weights", default=None,
                        help="the backbone's torchvision ImageNet file (default: torchvision's cache)")
    add_metric_switch(parser, "lpips", "LPIPS", "the backbone's ImageNet weights")
    parser.add_argument("--gpu_ids", default="0", help="GPU ids, e.g. 0; -1 for the CPU")
    return parser


def parse_options(argv=None):
    """Parse evaluate.py's command line; exactly one of --fake_dir and --results is required."""
    parser = build_parser()
    opt = parser.parse_args(argv)
    if (opt.fake_dir is None) == (opt.results is None):
        parser.error("give --fake_dir DIR (with --real_dir DIR) or --results RESULTS_DIR")
    if opt.fake_dir is not None and opt.real_dir is None:
        parser.error("--fake_dir needs --real_dir: the folder of real target images")
    return opt

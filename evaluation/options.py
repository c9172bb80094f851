"""evaluate.py's command-line options."""

import argparse

from data.image_io import add_image_options
from evaluation.metrics import INTENSITY_UNITS
from models.vgg import add_vgg_options
from options.base_options import positive_int


def fraction(text):
    """An argparse type: a number in (0, 1]."""
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text}")
    return value


def build_parser():
    """The parser of evaluate.py's options."""
    parser = argparse.ArgumentParser(description="Metrics of generated images against real target images "
                                                 "(writes metrics.json, metrics.csv and a section of index.html)")
    parser.add_argument("--results", required=True, help="results folder written by test.py (holding images/)")
    parser.add_argument("--real_dir", default=None,
                        help="folder of real target images; paired with generated ones by name (file name "
                             "without extension = NAME); default: the real images in the results folder")
    parser.add_argument("--fake_label", default=None,
                        help="label of the generated images NAME_LABEL.png; default: fake_B, else fake_A2B, "
                             "else fake_B2A")
    parser.add_argument("--real_label", default=None,
                        help="label of the real target images in the results folder; default: real_B for "
                             "fake_B and fake_A2B, real_A for fake_B2A")
    add_image_options(parser)  # how --real_dir images map to [0, 1]; results PNGs are always value / 255
    parser.add_argument("--intensity_unit", default="db", choices=INTENSITY_UNITS,
                        help="what pixel values 0..1 stand for, for ENL and speckle statistics: db (0..1 spans "
                             "--db_window), amplitude or intensity")
    parser.add_argument("--enl_window", type=positive_int, default=15, help="side of the ENL windows in pixels")
    parser.add_argument("--enl_fraction", type=fraction, default=0.1,
                        help="fraction of the most homogeneous windows the ENL is measured on")
    add_vgg_options(parser, "Gram distance")
    parser.add_argument("--no_gram", action="store_true", help="skip the Gram (style) distance and VGG")
    parser.add_argument("--inception_weights", default="imagenet",
                        help="imagenet (torchvision's cache) or a file PATH with an inception_v3 state dict")
    fid = parser.add_mutually_exclusive_group()
    fid.add_argument("--fid", dest="fid", action="store_const", const="required", default="auto",
                     help="compute FID and KID, downloading the ImageNet weights if needed, or fail; "
                          "default: compute them only when the weights are on disk")
    fid.add_argument("--no_fid", dest="fid", action="store_const", const="off", help="skip FID and KID")
    parser.add_argument("--gpu_ids", default="0", help="GPU ids, e.g. 0; -1 for the CPU")
    return parser

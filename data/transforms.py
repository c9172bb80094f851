"""Resize, crop and flip as pix2pix's --preprocess, on CxHxW tensors, shared by every dataset mode."""

import random

import torch
import torch.nn.functional as F

from options.number_types import MAX_NETWORK_SIDE, integer

PREPROCESS_CHOICES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")


def add_preprocess_options(parser):
    """Add pix2pix's preprocessing options."""
    parser.add_argument("--preprocess", default="resize_and_crop", choices=PREPROCESS_CHOICES,
                        help="scaling and cropping of images at load time")
    parser.add_argument("--load_size", type=integer(0, MAX_NETWORK_SIDE), default=286,
                        help="scale images to this size (0 with --dataset_mode unaligned: --img_size + 30 for "
                             "training, --img_size for testing)")
    parser.add_argument("--crop_size", type=integer(0, MAX_NETWORK_SIDE), default=256,
                        help="then crop to this size (0 with --dataset_mode unaligned: --img_size)")
    parser.add_argument("--no_flip", action="store_true", help="do not flip images horizontally for augmentation")
    return parser


def scaled_size(opt, height, width):
    """Height and width after the resize step of opt.preprocess."""
    if opt.preprocess.startswith("resize"):
        return opt.load_size, opt.load_size
    if opt.preprocess.startswith("scale_width"):
        target_width = max(opt.load_size, opt.crop_size if "crop" in opt.preprocess else 1)
        return max(1, round(height * target_width / width)), target_width
    return height, width


def sample_params(opt, height, width, generator=random):
    """Random crop position and flip for one sample, shared by its A and B images."""
    scaled_height, scaled_width = scaled_size(opt, height, width)
    crop_top = crop_left = 0
    if "crop" in opt.preprocess:
        crop_top = generator.randint(0, max(0, scaled_height - opt.crop_size))
        crop_left = generator.randint(0, max(0, scaled_width - opt.crop_size))
    flip = opt.is_train and not opt.no_flip and generator.random() > 0.5
    return {"crop_top": crop_top, "crop_left": crop_left, "flip": flip}


def apply_preprocess(image, opt, params):
    """Resize, crop and flip a CxHxW tensor in [0, 1], then map it to the model range [-1, 1]."""
    return apply_geometry(image, opt, params) * 2.0 - 1.0


def apply_geometry(image, opt, params):
    """Resize, crop and flip a CxHxW tensor in [0, 1] (also a valid-pixel mask as 0/1 floats) by opt.preprocess."""
    height, width = image.shape[-2:]
    scaled_height, scaled_width = scaled_size(opt, height, width)
    if (scaled_height, scaled_width) != (height, width):
        # torchvision's resize of tensors, without importing torchvision (180 MB of memory) for it
        image = F.interpolate(image[None], size=(scaled_height, scaled_width), mode="bilinear",
                              antialias=True)[0].clamp(0.0, 1.0)
    if "crop" in opt.preprocess:
        size = min(opt.crop_size, scaled_height, scaled_width)
        image = image[:, params["crop_top"]: params["crop_top"] + size, params["crop_left"]: params["crop_left"] + size]
    if params["flip"]:
        image = torch.flip(image, dims=[-1])
    return image

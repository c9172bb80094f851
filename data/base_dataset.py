"""The dataset base class: options hook, image loading through data/image_io, batching."""

from pathlib import Path

import torch
import torch.utils.data

from data import transforms
from data.image_io import IntensityScaling, read_image
from util.errors import SargenError

CATEGORIES = ("building", "farmland", "road", "vegetation", "water")


def category_of(path):
    """The land-cover category a file name starts with ('building_012.png' -> 'building'), or 'none'."""
    prefix = Path(path).stem.split("_", 1)[0].lower()
    return prefix if prefix in CATEGORIES else "none"


class BaseDataset(torch.utils.data.Dataset):
    """A dataset of image files under opt.dataroot, returning dicts of tensors in [-1, 1] and paths."""

    @staticmethod
    def modify_commandline_options(parser, is_train):
        """Add dataset-specific options; the base class adds none."""
        return parser

    def __init__(self, opt):
        """Remember the options and the pixel scaling rule."""
        self.opt = opt
        if not opt.dataroot:
            raise SargenError("--dataroot is required: the folder with your images")
        self.root = Path(opt.dataroot)
        self.scaling = IntensityScaling.from_options(opt)

    def read(self, path, channels):
        """Read one image as a CxHxW tensor in [0, 1] with `channels` channels."""
        return read_image(path, channels, self.scaling)

    def preprocess(self, image, params=None):
        """Resize, crop and flip a [0, 1] image to the model range; new random parameters unless given."""
        if params is None:
            params = transforms.sample_params(self.opt, *image.shape[-2:])
        return transforms.apply_preprocess(image, self.opt, params)

    @staticmethod
    def collate(items):
        """Stack equal-shaped tensors of a batch; keep everything else (paths, optional images) as lists."""
        batch = {}
        for key in items[0]:
            values = [item.get(key) for item in items]
            tensors = all(isinstance(value, torch.Tensor) for value in values)
            if tensors and len({tuple(value.shape) for value in values}) == 1:
                batch[key] = torch.stack(values)
            else:
                batch[key] = values
        return batch

"""Unpaired images of two domains: DATAROOT/PHASEA and DATAROOT/PHASEB (U-GAT-IT's trainA/trainB/testA/testB).

Domain A images are read with --input_nc channels, domain B images with --output_nc channels; the
folders may hold any number of images of any size. Training items pair an A image with an
independently chosen B image; test items hold only the source domain of --direction.

With --load_size/--crop_size 0 (the U-GAT-IT model's default) images are resized to img_size + 30
and randomly cropped to img_size for training, as in U-GAT-IT, and resized to img_size for testing.
"""

import argparse
import random
from pathlib import Path

from data import transforms
from data.base_dataset import BaseDataset, category_of
from data.image_io import list_image_files
from util.errors import SargenError

UGATIT_RESIZE_MARGIN = 30


def preprocess_options(opt):
    """The options with --load_size/--crop_size 0 resolved from --img_size (U-GAT-IT's augmentation)."""
    if opt.load_size and opt.crop_size:
        return opt
    img_size = getattr(opt, "img_size", None)
    if not img_size:
        raise SargenError("--load_size and --crop_size are 0 but --img_size is unknown: pass --img_size")
    margin = UGATIT_RESIZE_MARGIN if opt.is_train else 0
    return argparse.Namespace(**{**vars(opt), "load_size": opt.load_size or img_size + margin,
                                 "crop_size": opt.crop_size or img_size})


class UnalignedDataset(BaseDataset):
    """Items {A, B, A_paths, B_paths} for training; {X, X_paths} of the source domain X for testing."""

    def __init__(self, opt):
        """List both domains' images for training, the source domain's for testing."""
        super().__init__(opt)
        if not self.root.is_dir():
            raise SargenError(f"--dataroot not found: {self.root} (expected {opt.phase}A and {opt.phase}B in it)")
        if opt.is_train:
            domains = ("A", "B")
        else:
            domains = ("A",) if opt.direction == "AtoB" else ("B",)
        self.paths = {domain: list_image_files(self.root / f"{opt.phase}{domain}", opt.max_dataset_size,
                                               f"domain {domain} images")
                      for domain in domains}

    def item_name(self, index):
        """The stem of the source-domain file of item `index`."""
        return Path(next(iter(self.paths.values()))[index]).stem

    def domain_channels(self, domain):
        """Channels of a domain's images, read from the options at load time (the model may set them)."""
        return self.opt.input_nc if domain == "A" else self.opt.output_nc

    def __len__(self):
        """Training: the larger domain's image count (pix2pix); testing: the source domain's."""
        return max(len(paths) for paths in self.paths.values())

    def load_domain_image(self, domain, index, rng):
        """Read one image of `domain`, then resize, crop and flip it with parameters from `rng`; (image, path).

        In training a skipped file (--skip_bad, or a patch over --max_nodata) is replaced by the next readable
        one; the replacement depends only on the index, the files and `rng`, so a resumed run reads the same
        images. In testing a skipped file gives (None, path).
        """
        paths = self.paths[domain]
        opt = preprocess_options(self.opt)
        attempts = len(paths) if self.opt.is_train else 1
        masked = 0
        for offset in range(attempts):
            path = paths[(index + offset) % len(paths)]
            image, valid = self.read_with_mask(path, self.domain_channels(domain), domain)
            if image is None:
                continue
            params = transforms.sample_params(opt, *image.shape[-2:], generator=rng)
            if self.too_much_nodata(valid, opt, params):
                masked += 1
                continue
            return transforms.apply_preprocess(image, opt, params), str(path)
        if self.opt.is_train and masked:
            raise SargenError(f"none of the {len(paths)} domain {domain} images in {path.parent} can be used: "
                              f"{masked} hold more no-data than --max_nodata {self.max_nodata:g} allows in their "
                              f"patches (raise it), the others cannot be read")
        if self.opt.is_train:
            raise SargenError(f"none of the {len(paths)} domain {domain} images in {path.parent} can be read "
                              f"(--skip_bad skipped them all)")
        return None, str(path)

    def __getitem__(self, index):
        """An item (None if skipped); `index` is an int, or (a_index, b_index, seed) from the training sampler."""
        if isinstance(index, (tuple, list)):
            a_index, b_index, seed = index
            rng = random.Random(seed)
        else:
            a_index, b_index, rng = index, None, random
        item = {}
        for domain in self.paths:
            if domain == "B" and "A" in self.paths:
                if b_index is None:
                    b_index = a_index if self.opt.serial_batches else rng.randrange(len(self.paths["B"]))
                position = b_index
            else:
                position = a_index
            image, path = self.load_domain_image(domain, position, rng)
            if image is None:
                return None
            item[domain] = image
            item[f"{domain}_paths"] = path
        item["category"] = category_of(item[f"{next(iter(self.paths))}_paths"])
        return item

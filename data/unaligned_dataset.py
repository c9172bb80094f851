"""Unpaired images of two domains: DATAROOT/PHASEA and DATAROOT/PHASEB (U-GAT-IT's trainA/trainB/testA/testB).

Domain A images are read with domain A's radiometry and --input_nc channels, domain B images with domain B's
and --output_nc channels; the folders may hold any number of images of any size. Training items pair an A
image with an independently chosen B image; test items hold the source domain of --direction and, when the
target folder holds a file of the same name (a co-registered partner), that image too.

With ``paired_training`` (a model that learns from pairs, see data/base_dataset.py) training items are instead
each source image with its co-registered partner (as test items find it), read alike.

With --load_size/--crop_size 0 (the U-GAT-IT model's default) images are resized to img_size + 30
and randomly cropped to img_size for training, as in U-GAT-IT, and resized to img_size for testing.
"""

import argparse
import random
from pathlib import Path

from data import transforms
from data.base_dataset import BaseDataset, category_of, folder_evaluation_sets, patch_valid
from data.image_io import is_image_file, list_image_files
from data.pairing import UNPAIRED, folder_pairing
from data.radiometry import translation_domains
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
    """Items {A, B, A_paths, B_paths} for training; {X, X_paths} of the source domain X for testing, with the
    target domain's co-registered partner {Y, Y_paths} (None where an image has none) when the data has partners."""

    def __init__(self, opt):
        """List both domains' images for training, the source domain's (and its partners) for testing."""
        super().__init__(opt)
        self.source, self.target = ("A", "B") if opt.direction == "AtoB" else ("B", "A")
        self.paths = self.list_domains(("A", "B") if opt.is_train else (self.source,))
        self.paired_training = opt.is_train and getattr(opt, "paired_training", False)
        self.partners = self.find_partners() if self.paired_training or not opt.is_train else {}
        if self.paired_training:
            self.pairs = [{self.source: (path, self.source), self.target: (self.partners[path], self.target)}
                          for path in self.paths[self.source] if path in self.partners]
            if not self.pairs:
                raise SargenError(f"--model {opt.model} trains on co-registered pairs, but none of the "
                                  f"{len(self.paths[self.source])} domain {self.source} training images has a "
                                  f"partner under {self.root} ({self.pairing_rule()})")

    @classmethod
    def evaluation_sets(cls, opt):
        """DATAROOT/testA and testB (swapped for --direction BtoA), partners by name where pairing.json records
        them as co-registered."""
        root = Path(opt.dataroot)
        source, target = translation_domains(opt)
        sets = folder_evaluation_sets(root / f"test{source}", root / f"test{target}", aligned=False)
        if sets is None:
            raise SargenError(f"--eval_freq: no test images to score: expected {root / f'test{source}'} and "
                              f"{root / f'test{target}'}")
        return sets

    def list_domains(self, domains):
        """{domain: sorted image paths} of DATAROOT/PHASE{domain} for each of `domains`."""
        if not self.root.is_dir():
            raise SargenError(f"--dataroot not found: {self.root} (expected {self.opt.phase}A and "
                              f"{self.opt.phase}B in it)")
        return {domain: list_image_files(self.root / f"{self.opt.phase}{domain}", self.opt.max_dataset_size,
                                         f"domain {domain} images")
                for domain in domains}

    def pairing_rule(self):
        """How partners are found, for messages."""
        return (f"a file of the same name in {self.opt.phase}{self.target}, unless pairing.json records the folders "
                f"as unpaired")

    def find_partners(self):
        """{source path: target path} of the test images whose target folder holds a file of the same name, unless
        the dataset's pairing.json records the two folders as unpaired."""
        folder = self.root / f"{self.opt.phase}{self.target}"
        source_folder = self.root / f"{self.opt.phase}{self.source}"
        if not folder.is_dir() or folder_pairing(source_folder, folder) == UNPAIRED:
            return {}
        by_stem = {}
        for path in sorted(folder.iterdir()):
            if path.is_file() and is_image_file(path):
                by_stem.setdefault(path.stem, path)
        return {path: by_stem[path.stem] for path in self.paths[self.source] if path.stem in by_stem}

    def item_name(self, index):
        """The stem of the source-domain file of item `index`."""
        return Path(next(iter(self.paths.values()))[index]).stem

    def __len__(self):
        """Training: the larger domain's image count (pix2pix), or the pairs'; testing: the source domain's."""
        if self.paired_training:
            return len(self.pairs)
        return max(len(paths) for paths in self.paths.values())

    def load_domain_image(self, domain, index, rng):
        """Read one image of `domain`, then resize, crop and flip it with parameters from `rng`; (image, path,
        valid mask or None).

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
            image, valid = self.read_with_mask(path, domain)
            if image is None:
                continue
            params = transforms.sample_params(opt, *image.shape[-2:], generator=rng)
            if self.too_much_nodata(valid, opt, params):
                masked += 1
                continue
            return self.preprocess_domain_image(image, params), str(path), patch_valid(valid, opt, params)
        if self.opt.is_train and masked:
            raise SargenError(f"none of the {len(paths)} domain {domain} images in {path.parent} can be used: "
                              f"{masked} hold more no-data than --max_nodata {self.max_nodata:g} allows in their "
                              f"patches (raise it), the others cannot be read")
        if self.opt.is_train:
            raise SargenError(f"none of the {len(paths)} domain {domain} images in {path.parent} can be read "
                              f"(--skip_bad skipped them all)")
        return None, str(path), None

    def preprocess_domain_image(self, image, params):
        """Resize, crop and flip an image read in [0, 1] with `params` (U-GAT-IT's sizes; see preprocess_options)."""
        return transforms.apply_preprocess(image, preprocess_options(self.opt), params)

    def __getitem__(self, index):
        """An item (None if skipped); `index` is an int, or (a_index, b_index, seed) from the training sampler
        ((index, seed) with paired_training)."""
        if self.paired_training:
            index, seed = index
            return self.first_usable_pair(self.pairs, index, preprocess_options(self.opt), random.Random(seed))
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
            image, path, valid = self.load_domain_image(domain, position, rng)
            if image is None:
                return None
            item.update({domain: image, f"{domain}_paths": path, f"{domain}_valid": valid})
        item["category"] = category_of(item[f"{next(iter(self.paths))}_paths"])
        if self.partners and not self.add_partner(item, Path(item[f"{self.source}_paths"])):
            return None
        return item

    def add_partner(self, item, source_path):
        """Add the target-domain partner of a test item's source image (None if it has none); False if it is skipped."""
        partner = self.partners.get(source_path)
        image, valid = (None, None) if partner is None else self.read_with_mask(partner, self.target)
        if partner is not None and image is None:
            return False
        if image is not None:
            opt = preprocess_options(self.opt)
            params = transforms.sample_params(opt, *image.shape[-2:])
            image, valid = self.preprocess_domain_image(image, params), patch_valid(valid, opt, params)
        item[self.target] = image
        item[f"{self.target}_paths"] = None if partner is None else str(partner)
        item[f"{self.target}_valid"] = valid
        return True

"""Paired source/target images: DATAROOT/PHASE/A and DATAROOT/PHASE/B, paired by file name."""

import random
from pathlib import Path

from data import transforms
from data.base_dataset import BaseDataset, category_of, folder_evaluation_sets, patch_valid
from data.image_io import list_image_files
from data.radiometry import translation_domains
from util.errors import SargenError


class AlignedDataset(BaseDataset):
    """Items from one side's folder, with the other side's image of the same name when it exists."""

    @staticmethod
    def modify_commandline_options(parser, is_train):
        """Add --sides."""
        parser.add_argument("--sides", default="A,B", choices=("A,B", "B,A", "A", "B"),
                            help="sides to read; the first side's files make the items, the second is paired "
                                 "by file name when present")
        return parser

    @classmethod
    def item_keys(cls, opt):
        """Items hold the source side (the folder of --direction's source domain) as A and its partner as B."""
        return "A", "B"

    @classmethod
    def evaluation_sets(cls, opt):
        """DATAROOT/test/A and test/B (swapped for --direction BtoA), co-registered by file name unless the
        dataset's pairing.json says otherwise (--eval_freq)."""
        source, target = translation_domains(opt)
        folder = Path(opt.dataroot) / "test"
        sets = folder_evaluation_sets(folder / source, folder / target, aligned=True)
        if sets is None:
            raise SargenError(f"--eval_freq: no test images to score: expected {folder / source} and "
                              f"{folder / target}")
        return sets

    def __init__(self, opt):
        """List the primary side's files and index the other side's by name."""
        super().__init__(opt)
        if not self.root.is_dir():
            raise SargenError(f"--dataroot not found: {self.root} (expected {self.root}/{opt.phase}/A and .../B)")
        source, target = ("A", "B") if opt.direction == "AtoB" else ("B", "A")
        self.folders = {"A": self.root / opt.phase / source, "B": self.root / opt.phase / target}
        self.domains = {"A": source, "B": target}  # the domain whose reading rule reads each side
        sides = opt.sides.split(",")
        self.primary, self.other = sides[0], (sides[1] if len(sides) > 1 else None)
        self.paths = list_image_files(self.folders[self.primary], opt.max_dataset_size, f"{self.primary} images")
        other_folder = self.folders.get(self.other)
        other_files = list_image_files(other_folder) if other_folder and _has_images(other_folder) else []
        self.other_by_stem = {path.stem: path for path in other_files}
        self.paired_training = opt.is_train and getattr(opt, "paired_training", False) and self.other is not None
        if self.paired_training:
            self.pairs = [{side: (path, self.domains[side]) for side, path in
                           ((self.primary, path), (self.other, self.other_by_stem[path.stem]))}
                          for path in self.paths if path.stem in self.other_by_stem]
            if not self.pairs:
                raise SargenError(f"--model {opt.model} trains on co-registered pairs, but no file of "
                                  f"{self.folders[self.primary]} has a partner of the same name in "
                                  f"{self.folders[self.other]}")
            self.paths = [files[self.primary][0] for files in self.pairs]

    def __len__(self):
        """Number of items."""
        return len(self.paths)

    def __getitem__(self, index):
        """The primary image, its paired image (if any), their paths and the category; None if one is skipped.

        `index` is an int, or (index, seed) from the step-training sampler: crop and flip then come from the seed.
        """
        rng = random
        if isinstance(index, (tuple, list)):
            index, seed = index
            rng = random.Random(seed)
        if self.paired_training:
            return self.first_usable_pair(self.pairs, index, self.opt, rng)
        path = self.paths[index]
        primary_image, primary_valid = self.read_with_mask(path, self.domains[self.primary])
        if primary_image is None:
            return None
        params = transforms.sample_params(self.opt, *primary_image.shape[-2:], generator=rng)
        if self.too_much_nodata(primary_valid, self.opt, params):
            return None
        item = {self.primary: self.preprocess(primary_image, params), f"{self.primary}_paths": str(path),
                f"{self.primary}_valid": patch_valid(primary_valid, self.opt, params), "category": category_of(path)}
        if self.other is None:
            return item
        paired = self.other_by_stem.get(path.stem)
        paired_image, paired_valid = (None, None) if paired is None else \
            self.read_with_mask(paired, self.domains[self.other])
        if paired is not None and (paired_image is None or self.too_much_nodata(paired_valid, self.opt, params)):
            return None
        item[self.other] = None if paired is None else self.preprocess(paired_image, params)
        item[f"{self.other}_paths"] = None if paired is None else str(paired)
        item[f"{self.other}_valid"] = patch_valid(paired_valid, self.opt, params)
        return item


def _has_images(folder):
    """Whether `folder` exists and holds at least one file."""
    return folder.is_dir() and any(folder.iterdir())

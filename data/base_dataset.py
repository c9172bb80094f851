"""The dataset base class: options hook, image loading through data/image_io, batching.

A file that cannot be read stops the run with its name; with --skip_bad it is logged once (per process) and
left out: read() returns None, a dataset returns None for the item (or, for unaligned training, takes the
next readable file), collate() drops None items and the loaders of data/__init__.py skip empty batches.

Each mode also says which test images --eval_freq scores (evaluation_sets): its test split's source and target
images and, where the data is co-registered, each source image's partner.
Images are read with their domain's image options (--nodata_A for domain A files, ...). In training, a patch
(the image after resizing and cropping) whose masked (no-data) fraction is over --max_nodata is skipped the
same way; the skips are counted, across DataLoader workers, and reported once at the end of training.
Items carry each image's valid-pixel mask after the same resize, crop and flip (KEY_valid: 1xHxW bool, True =
made only of valid pixels; None when the file has no no-data), so a loss can leave masked pixels out.

A model that learns from co-registered pairs (pix2pix) sets the hidden default ``paired_training``: the training
items of every mode are then source images with their co-registered partner, resized, cropped and flipped alike
(see BaseDataset.read_pair), and a pair that is skipped is replaced by the next usable one.
"""

import argparse
import logging
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.utils.data

from data import transforms
from data.image_io import (
    has_valid_pixel,
    list_image_files,
    read_image_with_info,
    require_reading_rule,
    warn_no_valid_pixel,
)
from data.pairing import CO_REGISTERED, folder_pairing
from data.radiometry import radiometry_for, translation_domains
from util.errors import SargenError

logger = logging.getLogger("sargen")

CATEGORIES = ("building", "farmland", "road", "vegetation", "water")
VALID_SHARE = 0.999  # a resampled pixel is valid when (nearly) all the pixels it is made of are


def category_of(path):
    """The land-cover category a file name starts with ('building_012.png' -> 'building'), or 'none'."""
    prefix = Path(path).stem.split("_", 1)[0].lower()
    return prefix if prefix in CATEGORIES else "none"


@dataclass
class EvaluationSets:
    """The test images --eval_freq scores: source and target files, and the co-registered partner (a target
    file) of each source file that has one (empty for unpaired data); the descriptions name where they are and
    how partners are found."""

    sources: list
    targets: list
    partners: dict = field(default_factory=dict)
    source_description: str = ""
    target_description: str = ""
    pairing: str = "by name"


def test_split_options(opt):
    """A copy of (training) options that reads the test split as test.py does: --phase test, every image."""
    return argparse.Namespace(**{**vars(opt), "phase": "test", "is_train": False, "max_dataset_size": None})


def folder_evaluation_sets(source_dir, target_dir, aligned):
    """EvaluationSets of two test folders, or None when one is missing; partners by file name where the folders
    are co-registered: as the dataset's pairing.json says, else for an `aligned` layout."""
    if not (source_dir.is_dir() and target_dir.is_dir()):
        return None
    sources = list_image_files(source_dir, what="--eval_freq source")
    targets = list_image_files(target_dir, what="--eval_freq target")
    recorded = folder_pairing(source_dir, target_dir)
    partners = {}
    if recorded == CO_REGISTERED or (recorded is None and aligned):
        by_stem = {}
        for path in targets:
            by_stem.setdefault(path.stem, path)
        partners = {path: by_stem[path.stem] for path in sources if path.stem in by_stem}
    return EvaluationSets(sources, targets, partners, str(source_dir), str(target_dir))


def count_in_worker_slot(counter):
    """Add one to `counter` (a shared tensor of one slot per DataLoader worker, slot 0 the main process)."""
    worker = torch.utils.data.get_worker_info()
    counter[0 if worker is None else min(worker.id + 1, len(counter) - 1)] += 1


def patch_mask(valid, opt, params):
    """A HxW valid-pixel mask (numpy bool) after opt's resize, crop and flip with `params`: 1xhxw floats in [0, 1]."""
    return transforms.apply_geometry(torch.from_numpy(valid)[None].float(), opt, params)


def patch_valid(valid, opt, params):
    """The pixels of the resized, cropped and flipped patch made only of valid ones (1xhxw bool), or None when
    `valid` is None (every pixel valid)."""
    return None if valid is None else patch_mask(valid, opt, params) >= VALID_SHARE


class BaseDataset(torch.utils.data.Dataset, metaclass=ABCMeta):
    """A dataset of image files under opt.dataroot, returning dicts of tensors in [-1, 1] and paths.

    Every dataset mode provides the abstract methods; a class that leaves one unimplemented is a base class, never
    offered as a --dataset_mode choice (util.registry).
    """

    @abstractmethod
    def __len__(self):
        """How many items the dataset holds."""

    @abstractmethod
    def __getitem__(self, index):
        """The item at `index`: a dict of tensors in [-1, 1] and paths."""

    @staticmethod
    def modify_commandline_options(parser, is_train):
        """Add dataset-specific options; the base class adds none."""
        return parser

    def __init__(self, opt):
        """Remember the options; each domain's reading rule is looked up at read time (a model may set it)."""
        self.opt = opt
        if not opt.dataroot:
            raise SargenError("--dataroot is required: the folder with your images")
        self.root = Path(opt.dataroot)
        self.skip_bad = getattr(opt, "skip_bad", False)
        self.bad_paths = set()  # files this process found unreadable (--skip_bad)
        self.max_nodata = getattr(opt, "max_nodata", None) if getattr(opt, "is_train", False) else None
        # patches skipped for no-data and test images without a valid pixel, one counter per DataLoader worker
        # (shared memory, seen by the main process)
        self.nodata_skips = torch.zeros(getattr(opt, "num_threads", 0) + 1, dtype=torch.int64).share_memory_()
        self.empty_reads = torch.zeros_like(self.nodata_skips).share_memory_()

    @classmethod
    def item_keys(cls, opt):
        """The keys of the source and the target image in this mode's items: the domains of --direction."""
        return translation_domains(opt)

    @classmethod
    def evaluation_sets(cls, opt):
        """The EvaluationSets of the test split of `opt`'s data (--eval_freq); a mode without one says so."""
        raise SargenError(f"--eval_freq: --dataset_mode {opt.dataset_mode} has no test split to score")

    def radiometry(self, domain):
        """How images of `domain` (A or B) are read: the options, else the model's record, else the mode's defaults."""
        return radiometry_for(self.opt, domain)

    def read(self, path, domain):
        """Read one image of `domain` as a CxHxW tensor in [0, 1] with its channels; None if skipped (--skip_bad)."""
        return self.read_with_mask(path, domain)[0]

    def read_with_mask(self, path, domain):
        """(image, HxW valid-pixel mask or None) of one file of `domain`; (None, None) if skipped (--skip_bad).

        At test time a 16-bit or float raster needs a known reading rule: a model without a record and no option is
        an error (8-bit rasters read as value / 255, like 8-bit PNGs).
        """
        if str(path) in self.bad_paths:
            return None, None
        try:
            if not self.opt.is_train:
                require_reading_rule(self.opt, domain, path, "the model")
            image, info = read_image_with_info(path, None, self.radiometry(domain))
            if not self.opt.is_train and not has_valid_pixel(info.valid):  # training: --max_nodata decides
                warn_no_valid_pixel(path, "its results hold no data")
                count_in_worker_slot(self.empty_reads)
            return image, info.valid
        except SargenError as error:
            if not self.skip_bad:
                raise
            self.bad_paths.add(str(path))
            logger.warning("skipped (--skip_bad): %s", error)
            return None, None

    def too_much_nodata(self, valid, opt, params):
        """Whether a training patch (`valid` after opt's resize, crop and flip with `params`) is more masked than
        --max_nodata allows; counts the skip."""
        if self.max_nodata is None or valid is None:
            return False
        if 1.0 - float(patch_mask(valid, opt, params).mean()) <= self.max_nodata:
            return False
        count_in_worker_slot(self.nodata_skips)
        return True

    def report_nodata_skips(self):
        """Log, once, how many training patches --max_nodata skipped."""
        skipped = int(self.nodata_skips.sum())
        if skipped:
            logger.warning("--max_nodata %g: skipped %d training patch(es) with more no-data (their files were "
                           "replaced or left out)", self.max_nodata, skipped)
        return skipped

    def report_empty_reads(self):
        """Log, once, how many test image files without a valid pixel were read; return the count."""
        empty = int(self.empty_reads.sum())
        if empty:
            logger.warning("%d image file(s) read without a valid pixel (all no-data or NaN; named above): their "
                           "results hold no data", empty)
        return empty

    def read_pair(self, files, opt, rng):
        """A training item of co-registered files ({key: (path, domain)}): each image read with its domain's rule,
        all resized, cropped and flipped alike (parameters drawn from `rng` on the first image), with their paths
        and valid masks; None when one is skipped (--skip_bad, or a patch over --max_nodata)."""
        read = {}
        for key, (path, domain) in files.items():
            image, valid = self.read_with_mask(path, domain)
            if image is None:
                return None
            read[key] = (path, image, valid)
        first_image = next(iter(read.values()))[1]
        params = transforms.sample_params(opt, *first_image.shape[-2:], generator=rng)
        item = {}
        for key, (path, image, valid) in read.items():
            if self.too_much_nodata(valid, opt, params):
                return None
            item.update({key: transforms.apply_preprocess(image, opt, params), f"{key}_paths": str(path),
                         f"{key}_valid": patch_valid(valid, opt, params)})
        item["category"] = category_of(files[next(iter(files))][0])
        return item

    def first_usable_pair(self, pairs, index, opt, rng):
        """read_pair of pair `index` of `pairs` ([{key: (path, domain)}]), else of the next one that can be used
        (the same one whatever the run's history, so a resumed run reads the same data)."""
        for offset in range(len(pairs)):
            item = self.read_pair(pairs[(index + offset) % len(pairs)], opt, rng)
            if item is not None:
                return item
        raise SargenError(f"none of the {len(pairs)} co-registered training pairs can be used: the files cannot be "
                          f"read (--skip_bad) or hold more no-data than --max_nodata {self.max_nodata:g} allows")

    def preprocess(self, image, params=None):
        """Resize, crop and flip a [0, 1] image to the model range; new random parameters unless given."""
        if params is None:
            params = transforms.sample_params(self.opt, *image.shape[-2:])
        return transforms.apply_preprocess(image, self.opt, params)

    def item_name(self, index):
        """The name results of item `index` get (its source file's stem), known without reading the image."""
        return Path(self.paths[index]).stem

    @staticmethod
    def collate(items):
        """Stack equal-shaped tensors of a batch; keep everything else (paths, optional images) as lists.

        Items of skipped files (None) are left out; a batch of nothing but them is None.
        """
        items = [item for item in items if item is not None]
        if not items:
            return None
        batch = {}
        for key in items[0]:
            values = [item.get(key) for item in items]
            tensors = all(isinstance(value, torch.Tensor) for value in values)
            if tensors and len({tuple(value.shape) for value in values}) == 1:
                batch[key] = torch.stack(values)
            else:
                batch[key] = values
        return batch

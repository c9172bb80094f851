"""Dataset registry: `--dataset_mode NAME` loads the BaseDataset subclass in data/NAME_dataset.py.

A dataset file defines one class named like the file (aligned_dataset.py -> AlignedDataset) that
subclasses BaseDataset and adds its own options in ``modify_commandline_options(parser, is_train)``.
"""

import torch.utils.data

from data.base_dataset import BaseDataset
from util.registry import available_names, find_class


def available_dataset_modes():
    """Names accepted by --dataset_mode."""
    return available_names("data", "_dataset", BaseDataset)


def find_dataset_class(name):
    """The dataset class registered under `name`."""
    return find_class("data", "_dataset", name, BaseDataset, "--dataset_mode")


def get_option_setter(name):
    """The static hook through which dataset mode `name` adds its options."""
    return find_dataset_class(name).modify_commandline_options


def create_dataset(opt):
    """Instantiate the dataset named by opt.dataset_mode."""
    return find_dataset_class(opt.dataset_mode)(opt)


class DataLoader(torch.utils.data.DataLoader):
    """A DataLoader that leaves out batches whose every image was skipped (--skip_bad; see BaseDataset.collate)."""

    def __iter__(self):
        """The batches, without the empty ones."""
        return (batch for batch in super().__iter__() if batch is not None)


def create_dataloader(dataset, opt, shuffle=None):
    """A DataLoader over `dataset` with pix2pix's batch, shuffle and worker options."""
    if shuffle is None:
        shuffle = not opt.serial_batches
    return DataLoader(
        dataset,
        batch_size=opt.batch_size,
        shuffle=shuffle,
        num_workers=int(opt.num_threads),
        collate_fn=BaseDataset.collate,
        persistent_workers=False,
    )

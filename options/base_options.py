"""Options shared by every script, parsed in two passes so models and datasets add their own."""

import argparse
import logging
import random
import sys
from pathlib import Path

import numpy as np
import torch

import data
import models
from data.image_io import add_image_options, apply_image_limits
from data.transforms import add_preprocess_options
from options.number_types import MAX_BAND, MAX_IMAGE_SIDE, batch_count, integer, positive_int, seed
from util import distributed
from util.cli import ArgumentParser
from util.device import add_allocator_option, default_data_workers, parse_gpu_ids, reuse_memory_on_cpu
from util.fileio import write_text_atomic

logger = logging.getLogger("sargen")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's help with each option's default, left out where it says nothing (None, on/off flags)."""

    def _get_help_string(self, action):
        """The option's help, plus '(default: X)' unless the default is None, the option a flag, or already said."""
        text = action.help or ""
        if action.default in (None, argparse.SUPPRESS) or action.nargs == 0 or "(default: " in text:
            return text
        return text + " (default: %(default)s)"


class BaseOptions:
    """Common options; subclasses set `is_train` and add their own flags."""

    is_train = False

    def initialize(self, parser):
        """Add the options every script shares (pix2pix's names and meanings)."""
        parser.add_argument("--dataroot", default=None, help="data folder (layout depends on --dataset_mode)")
        parser.add_argument("--name", default="experiment_name", help="experiment name: checkpoints/NAME, results/NAME")
        parser.add_argument("--gpu_ids", default="0", help="GPU ids, e.g. 0 or 0,1; -1 for the CPU")
        parser.add_argument("--checkpoints_dir", default="./checkpoints", help="where models and options are saved")
        parser.add_argument("--model", default="gatys", choices=models.available_models(), help="which model")
        parser.add_argument("--dataset_mode", default="aligned", choices=data.available_dataset_modes(),
                            help="how the data folder is read")
        parser.add_argument("--direction", default="AtoB", choices=("AtoB", "BtoA"), help="translation direction")
        parser.add_argument("--input_nc", type=integer(1, MAX_BAND), default=3,
                            help="channels of domain A (source) images, e.g. 3 (RGB) or 4 (B, G, R, NIR)")
        parser.add_argument("--output_nc", type=integer(1, MAX_BAND), default=3,
                            help="channels of domain B (generated) images, e.g. 1 (VV) or 2 (VV, VH)")
        parser.add_argument("--batch_size", type=batch_count, default=1,
                            help="images per batch (per process under torchrun)")
        parser.add_argument("--serial_batches", action="store_true", help="take images in order, not shuffled")
        parser.add_argument("--num_threads", type=integer(0, 1024), default=default_data_workers(),
                            help="data-loading worker processes; default: min(4, usable CPUs - 1) on this machine")
        parser.add_argument("--skip_bad", action="store_true",
                            help="warn about and leave out images that cannot be read (default: stop, naming the file)")
        parser.add_argument("--max_dataset_size", type=positive_int, default=None,
                            help="use at most this many images (default: all)")
        parser.add_argument("--display_winsize", type=integer(1, MAX_IMAGE_SIDE), default=256,
                            help="image width on HTML pages")
        parser.add_argument("--epoch", default="latest", help="which saved state to load (latest or an iteration)")
        parser.add_argument("--seed", type=seed, default=0, help="random seed for python, numpy and torch")
        parser.add_argument("--verbose", action="store_true", help="log debugging details")
        add_allocator_option(parser)
        add_preprocess_options(parser)
        add_image_options(parser)
        return parser

    def build_parser(self, argv):
        """Build the full parser: common options, then the chosen model's and dataset's, then -h/--help.

        The passes that find the model and the dataset mode run without -h, so that --help shows every option
        of both with the defaults the run uses.
        """
        parser = ArgumentParser(add_help=False)
        parser = self.initialize(parser)
        known, _ = parser.parse_known_args(argv)
        parser = models.get_option_setter(known.model)(parser, self.is_train)
        model_defaults = dict(parser._defaults)
        known, _ = parser.parse_known_args(argv)  # the model may have changed the dataset default
        parser = data.get_option_setter(known.dataset_mode)(parser, self.is_train)
        parser.set_defaults(**model_defaults)  # a model's defaults win over its dataset mode's
        script = "train.py" if self.is_train else "test.py"
        description = (f"{script} options of --model {known.model} with --dataset_mode {known.dataset_mode} "
                       f"(another model's or dataset mode's: {script} --model NAME [--dataset_mode NAME] --help)")
        return ArgumentParser(parents=[parser], formatter_class=HelpFormatter, description=description)

    def parse(self, argv=None, save=True):
        """Parse the command line, set seeds and the device, print the options and save them."""
        argv = sys.argv[1:] if argv is None else argv
        parser = self.build_parser(argv)
        opt = parser.parse_args(argv)
        opt.is_train = self.is_train
        opt.gpu_ids = parse_gpu_ids(opt.gpu_ids)
        self.validate(parser, opt)
        apply_image_limits(opt)
        if opt.verbose:
            logger.setLevel(logging.DEBUG)
        opt.device = distributed.init_from_env(opt.gpu_ids)  # under torchrun: this rank's device
        reuse_memory_on_cpu(opt.device, opt.system_allocator)
        seed_everything(opt.seed)  # the same on every rank: identical initial weights
        self.parser = parser
        logger.info(format_options(opt, parser))
        if save and distributed.is_main():
            file_name = f"{'train' if self.is_train else 'test'}_opt.txt"
            save_options(opt, parser, Path(opt.checkpoints_dir) / opt.name / file_name)
        return opt

    def validate(self, parser, opt):
        """Reject option combinations that cannot work, through argparse's error (usage + one line)."""
        if opt.crop_size > opt.load_size and opt.preprocess.startswith(("resize_and", "scale_width_and")):
            parser.error(f"--crop_size {opt.crop_size} is larger than --load_size {opt.load_size}")


def seed_everything(seed):
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def format_options(opt, parser):
    """The options as a table, marking values that differ from the defaults."""
    option_names = {action.dest for action in parser._actions}
    lines = ["----------------- Options ---------------"]
    for key, value in sorted(vars(opt).items()):
        default = parser.get_default(key)
        note = f"\t[default: {default}]" if key in option_names and value != default else ""
        lines.append(f"{key:>25}: {value!s:<30}{note}")
    lines.append("----------------- End -------------------")
    return "\n".join(lines)


def save_options(opt, parser, path):
    """Write the option table to `path` atomically."""
    write_text_atomic(path, format_options(opt, parser) + "\n")

"""Cross-band generation by Gatys-style neural style transfer.

train.py: the mean Gram matrices of the target band (B) training images, overall and per land-cover
category, saved to checkpoints/NAME/latest_gram.pth.
test.py: each source image (A) is optimized by backpropagation against
``lambda_style * style + lambda_content * content`` (models/gatys_objective.py), with the style target taken from
the saved mean Gram (``total``), the paired real target image (``real``) or a target-band training image
(``style``), starting from the source image, noise or a --model gatys_feedforward generator's output. The VGG
options a test leaves out are those the Gram file records (so no weights are fetched that it was not made with).
"""

import logging
import math
import random
import time
import zlib
from collections import OrderedDict
from pathlib import Path

import torch
from torch.utils.data import Subset

from data.base_dataset import category_of
from data.image_io import list_image_files, read_image
from data.radiometry import (
    DOMAINS,
    Radiometry,
    radiometry_for,
    radiometry_record,
    to_channels,
    use_radiometry_record,
)
from data.transforms import apply_preprocess, sample_params
from models.base_model import BaseModel
from models.feedforward_generator import CHECKPOINT_SUFFIX as FEEDFORWARD_SUFFIX
from models.feedforward_generator import load_feedforward_translator, translate_batch
from models.gatys_objective import (
    GRAM_KIND,
    GatysObjective,
    add_loss_options,
    category_gram,
    check_gram_metadata,
    check_vgg_channels,
    expected_metadata,
    read_gram_record,
    stacked_style_targets,
)
from models.image_optimizers import make_image_optimizer
from models.vgg import add_vgg_options, fill_vgg_options
from options.number_types import integer, positive_int, rate, step_count
from util import distributed
from util.checkpoint import save_checkpoint, saved_file
from util.cli import progress
from util.errors import SargenError
from util.results import ImageResult
from util.versions import software_versions

logger = logging.getLogger("sargen")

GRAM_SUFFIX = "_gram.pth"  # CHECKPOINTS_DIR/NAME/EPOCH_gram.pth
DEFAULT_STEPS = {"adam": 1000, "lbfgs": 300}
DEFAULT_LR = {"adam": 0.01, "lbfgs": 1.0}


class GatysModel(BaseModel):
    """Style transfer by image optimization against VGG content features and target-band Gram matrices."""

    @staticmethod
    def modify_commandline_options(parser, is_train):
        """Add the VGG, layer, loss and optimizer options; images default to 256 px, unflipped."""
        parser.set_defaults(dataset_mode="aligned", load_size=256, crop_size=256, no_flip=True,
                            sides="B" if is_train else "A,B")
        add_vgg_options(parser, "style loss", recorded_in=None if is_train else "the Gram file")
        parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                            help="VGG arithmetic; auto = bfloat16 where the hardware has it (losses stay float32)")
        if is_train:
            return parser
        add_loss_options(parser)
        parser.add_argument("--style_source", default="total", choices=("total", "real", "style"),
                            help="style target: mean Gram of the training target band, the paired real target, "
                                 "or one target-band training image")
        parser.add_argument("--same_category", action="store_true",
                            help="take the style of the image's land-cover category (file-name prefix)")
        parser.add_argument("--style_phase", default="train",
                            help="folder DATAROOT/STYLE_PHASE/B of the style images for --style_source style")
        parser.add_argument("--optimizer", default="lbfgs", choices=("adam", "lbfgs"),
                            help="lbfgs (per image, one network pass a step) or adam")
        parser.add_argument("--n_iter", type=step_count, default=None,
                            help=f"optimization steps (network passes); default {DEFAULT_STEPS}")
        parser.add_argument("--lr", type=rate, default=None, help=f"step size; default {DEFAULT_LR}")
        parser.add_argument("--history_size", type=integer(1, 1000), default=20, help="L-BFGS memory")
        parser.add_argument("--init", default="content", choices=("content", "noise", "feedforward"),
                            help="starting image: the source image, seeded noise, or the output of the "
                                 "--model gatys_feedforward generator in --feedforward_checkpoint")
        parser.add_argument("--feedforward_checkpoint", default=None,
                            help=f"with --init feedforward: the generator's checkpoint (default "
                                 f"CHECKPOINTS_DIR/NAME/latest{FEEDFORWARD_SUFFIX})")
        parser.add_argument("--log_freq", type=positive_int, default=10, help="record the losses every this many steps")
        parser.add_argument("--save_midResult", action="store_true", help="also save intermediate images")
        parser.add_argument("--save_epoch", type=positive_int, default=100,
                            help="with --save_midResult: every this many steps")
        return parser

    def __init__(self, opt):
        """Build the VGG extractor cut after the deepest layer any loss needs (at test: as the Gram file records)."""
        super().__init__(opt)
        self.gram_path = self.save_dir / f"{opt.epoch}{GRAM_SUFFIX}"
        check_vgg_channels(opt)
        if not self.is_train:
            opt.n_iter = DEFAULT_STEPS[opt.optimizer] if opt.n_iter is None else opt.n_iter
            opt.lr = DEFAULT_LR[opt.optimizer] if opt.lr is None else opt.lr
            self.gram_record = self.use_gram_file_record()
        self.objective = GatysObjective(opt, self.device, with_content=not self.is_train)
        self.style_layers = self.objective.style_layers
        self.feedforward = None

    def use_gram_file_record(self):
        """Fill the VGG options left out from the Gram file's record; with --style_source total, refuse explicit
        options that conflict with it before any weights are loaded. Returns the file's payload (or None)."""
        opt = self.opt
        if opt.style_source == "total":  # it needs the file: when missing, say which ones exist
            saved_file(self.save_dir, opt.epoch, GRAM_SUFFIX, "Gram file")
        record = read_gram_record(self.gram_path)
        fill_vgg_options(opt, record, self.gram_path)
        if record is not None:  # how training read each domain: the default for reading the test images
            use_radiometry_record(opt, record.get("radiometry"), self.gram_path)
        if opt.style_source == "total":
            check_gram_metadata(record, expected_metadata(opt), self.gram_path)
        return record

    def result_notes(self):
        """The settings shown on the results page."""
        opt = self.opt
        start = f"{opt.init} ({self.feedforward.description})" if self.feedforward else opt.init
        return [self.objective.description(),
                f"style source {opt.style_source}{' (same category)' if opt.same_category else ''}, "
                f"optimizer {opt.optimizer}, {opt.n_iter} steps, lr {opt.lr}, init {start}, "
                f"lambda_style {opt.lambda_style:g}, lambda_content {opt.lambda_content:g}, "
                f"precision {self.objective.autocast_dtype or torch.float32}"]

    # ---- train.py: the mean Gram of the target band -------------------------------------------

    def setup(self):
        """Before testing, take the saved Gram file if the style source needs it and load the starting generator."""
        if self.is_train:
            self.sums, self.image_size = {}, None
        elif self.opt.style_source == "total":
            self.saved_grams = check_gram_metadata(self.gram_record, self.objective.metadata(), self.gram_path)
        if not self.is_train and self.opt.style_source == "style":
            self.style_paths = list_image_files(Path(self.opt.dataroot) / self.opt.style_phase / "B",
                                                what="style images (--style_source style)")
        if not self.is_train and self.opt.init == "feedforward":
            self.load_feedforward()

    def load_feedforward(self):
        """Load the --feedforward_checkpoint generator whose outputs are the starting images."""
        opt = self.opt
        path = Path(opt.feedforward_checkpoint or self.save_dir / f"latest{FEEDFORWARD_SUFFIX}")
        self.feedforward = load_feedforward_translator(path, self.device, opt.precision)
        generator = self.feedforward.generator
        if (generator.input_nc, generator.output_nc) != (opt.input_nc, opt.output_nc):
            raise SargenError(f"{path} translates {generator.input_nc} to {generator.output_nc} channels, not "
                              f"--input_nc {opt.input_nc} to --output_nc {opt.output_nc}: pass those or another "
                              f"--feedforward_checkpoint")
        record = self.feedforward.radiometry_record or {}
        changes = [line for domain in DOMAINS if domain in record
                   for line in radiometry_for(opt, domain).differences(Radiometry.from_record(record[domain], domain,
                                                                                               str(path)))]
        if changes:
            logger.warning("%s was trained on images read otherwise: %s", path, "; ".join(changes))

    def training_batches(self, dataset):
        """One pass over this rank's share of the target-band training images (all of them without torchrun)."""
        from data import create_dataloader

        return create_dataloader(Subset(dataset, distributed.shard(range(len(dataset)))), self.opt, shuffle=False)

    def num_training_steps(self, dataset):
        """Batches in this rank's pass."""
        return -(-len(distributed.shard(range(len(dataset)))) // self.opt.batch_size)

    def set_input(self, batch):
        """Take a batch: target images (train) or source images with optional paired targets (test)."""
        if self.is_train:
            self.real_B = batch["B"].to(self.device)
            self.categories = batch["category"]
            return
        self.real_A = batch["A"].to(self.device)
        self.real_B = batch["B"]
        self.image_paths = batch["A_paths"]
        self.categories = batch["category"]

    @torch.inference_mode()
    def optimize_parameters(self):
        """Add the batch's Gram matrices (float64) to the running sums, overall and per category, and count images."""
        grams = self.objective.grams(self.objective.features(self.real_B, precision=False))
        self.image_size = list(self.real_B.shape[-2:])
        for index, category in enumerate(self.categories):
            self.accumulate(("count", category), torch.ones((), dtype=torch.float64, device=self.device))
            for name, gram in grams.items():
                self.accumulate(("category", category, name), gram[index].double())
        for name, gram in grams.items():
            self.accumulate(("gram", name), gram.double().sum(0))

    def accumulate(self, key, value):
        """Add `value` to the sum `key`: ("gram", layer), ("category", category, layer) or ("count", category)."""
        self.sums[key] = self.sums[key] + value if key in self.sums else value

    def finish_training(self):
        """Sum the Grams and counts of every rank; rank 0 saves the mean Grams and their metadata atomically."""
        sums = distributed.all_reduce_sum(distributed.with_keys_of_all_ranks(self.sums))
        counts = {key[1]: round(float(total)) for key, total in sums.items() if key[0] == "count"}
        image_count = sum(counts.values())
        if image_count == 0:
            raise SargenError("no training images were read: nothing to save")
        if not distributed.is_main():
            return
        payload = {
            "kind": GRAM_KIND, **self.objective.metadata(),
            "gram_formula": "F F^T / (C H W)",
            "image_size": self.image_size, "image_count": image_count,
            "categories": dict(sorted(counts.items())),
            "gram": {name: (sums[("gram", name)] / image_count).float() for name in self.style_layers},
            "category_gram": {category: {name: (sums[("category", category, name)] / count).float()
                                         for name in self.style_layers}
                              for category, count in sorted(counts.items())},
            "dataroot": str(self.opt.dataroot),
            "radiometry": radiometry_record(self.opt),
            "software": software_versions(),
        }
        save_checkpoint(payload, self.gram_path)
        logger.info("saved the mean Gram of %d images (%s) to %s", image_count,
                    ", ".join(f"{key} {value}" for key, value in payload["categories"].items()), self.gram_path)

    # ---- test.py: image optimization ------------------------------------------------------------

    def style_targets(self):
        """Per-image target Grams (stacked per layer) and, for --style_source style, the style images."""
        source = self.opt.style_source
        if source == "real":
            missing = [path for path, image in zip(self.image_paths, self.real_B) if image is None]
            if missing:
                raise SargenError(f"--style_source real needs the paired target image of {missing[0]} "
                                  f"in {Path(self.opt.dataroot) / self.opt.phase / 'B'}")
            real_B = self.real_B if isinstance(self.real_B, torch.Tensor) else torch.stack(self.real_B)
            with torch.no_grad():
                return self.objective.grams(self.objective.features(real_B.to(self.real_A), precision=False)), None
        if source == "style":
            style_images = torch.stack([self.load_style_image(path, category)
                                        for path, category in zip(self.image_paths, self.categories)])
            style_images = style_images.to(self.real_A)
            with torch.no_grad():
                return self.objective.grams(self.objective.features(style_images, precision=False)), style_images
        return stacked_style_targets(self.saved_grams, self.categories, self.opt.same_category, self.style_layers,
                                     self.device), None

    def saved_category_grams(self, category):
        """The saved mean Gram of `category` with --same_category, else of all training images."""
        return category_gram(self.saved_grams, category, self.opt.same_category)

    def load_style_image(self, content_path, category):
        """A target-band training image chosen for `content_path` (seeded; same category if asked)."""
        candidates = self.style_paths
        if self.opt.same_category:
            candidates = [path for path in self.style_paths if category_of(path) == category] or candidates
        chooser = random.Random(self.opt.seed * 1_000_003 + zlib.crc32(Path(content_path).name.encode()))
        path = chooser.choice(candidates)
        image = read_image(path, None, radiometry_for(self.opt, "B"))
        return apply_preprocess(image, self.opt, sample_params(self.opt, *image.shape[-2:]))

    def initial_images(self):
        """The starting images in [-1, 1]: the content images, seeded noise or the generator's output (output_nc)."""
        if self.opt.init == "feedforward":
            return translate_batch(self.feedforward, self.real_A).to(self.real_A)
        content = to_channels(self.real_A, self.opt.output_nc)
        if self.opt.init == "content":
            return content.clone()
        generator = torch.Generator().manual_seed(self.opt.seed)
        return (torch.rand(content.shape, generator=generator) * 2.0 - 1.0).to(content)

    def test(self):
        """Optimize the batch's images and record their loss curves and intermediate images."""
        opt = self.opt
        style_targets, self.style_images = self.style_targets()
        content_targets = self.objective.content_targets(self.real_A)
        images = self.initial_images().requires_grad_(True)
        optimizer = make_image_optimizer(opt.optimizer, images, opt.lr, opt.history_size)
        self.curves = [[] for _ in range(images.shape[0])]
        self.intermediate = OrderedDict()
        self.start_time = time.perf_counter()
        for step in progress(range(opt.n_iter), desc="optimizing", unit="step", leave=False):
            optimizer.zero_grad(set_to_none=True)
            total, style, content = self.objective.losses(images, content_targets, style_targets)
            total.sum().backward()
            optimizer.step()
            with torch.no_grad():
                images.clamp_(-1.0, 1.0)
            if step == 0 or (step + 1) % opt.log_freq == 0 or step == opt.n_iter - 1:
                self.record(step, total, style, content)
            if opt.save_midResult and (step + 1) % opt.save_epoch == 0 and step + 1 < opt.n_iter:
                self.intermediate[f"fake_B_step_{step + 1:05d}"] = images.detach().clone()
        self.fake_B = images.detach()
        with torch.no_grad():
            self.final_losses = self.objective.losses(self.fake_B, content_targets, style_targets, precision=False)
        total, style, content = self.final_losses
        for index in range(len(self.curves)):
            self.stop_if_not_finite(index, opt.n_iter, {"total": float(total[index]), "style": float(style[index]),
                                                        "content": float(content[index])})

    def record(self, step, total, style, content):
        """Append the step's per-image losses to the loss curves; stop when one is NaN or infinite."""
        total, style, content = total.detach(), style.detach(), content.detach()
        for index, curve in enumerate(self.curves):
            point = {"step": step, "seconds": time.perf_counter() - self.start_time,
                     "total": float(total[index]), "style": float(style[index]), "content": float(content[index])}
            self.stop_if_not_finite(index, step, point)
            curve.append(point)

    def stop_if_not_finite(self, index, step, losses):
        """Stop the run, naming the image, the step and the loss term, when one of `losses` is NaN or infinite."""
        for term in ("style", "content", "total"):
            if not math.isfinite(losses[term]):
                raise SargenError(f"non-finite loss of image {Path(self.image_paths[index]).stem} at step {step}: "
                                  f"{term} = {losses[term]} (lower --lr, --lambda_style or --lambda_content, "
                                  f"or check the image)")

    def get_current_results(self):
        """Each image's visuals, final losses (float32) and MSE against the real target when there is one."""
        results = []
        total, style, content = self.final_losses
        for index, path in enumerate(self.image_paths):
            extra = OrderedDict()
            if self.style_images is not None:
                extra["style_B"] = self.style_images[index]
            for label, images in self.intermediate.items():
                extra[label] = images[index]
            results.append(image_result(path, self.real_A[index], self.fake_B[index], self.real_B[index],
                                        (total[index], style[index], content[index]), extra, self.curves[index]))
        return results


def image_result(path, real_A, fake_B, real_B, losses, extra_visuals=(), curve=()):
    """One image's results-page row: real_A, fake_B, real_B (when paired) and `extra_visuals`; the final total,
    style and content losses and, when real_B has fake_B's size, their mean squared error on [0, 1]."""
    total, style, content = losses
    visuals = OrderedDict(real_A=real_A, fake_B=fake_B)
    scalars = {"total": float(total), "style": float(style), "content": float(content)}
    if real_B is not None:
        visuals["real_B"] = real_B
        fake01, real01 = (fake_B.cpu() + 1) / 2, (real_B.cpu() + 1) / 2
        if fake01.shape == real01.shape:
            scalars["mse_real_B"] = float(((fake01 - real01) ** 2).mean())
    visuals.update(extra_visuals)
    return ImageResult(Path(path).stem, visuals, scalars, list(curve))

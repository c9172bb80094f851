"""Cross-band generation in one pass: a feed-forward generator trained with the Gatys losses.

train.py: a convolutional generator (models/feedforward_generator.py; Johnson et al. 2016, Ulyanov et al. 2016)
learns to turn source-band images (DATAROOT/train/A) into target-band ones, minimising per image
``lambda_style * style + lambda_content * content + lambda_tv * total variation``: the content loss against the
source image's own VGG features, the style loss against the target band's mean Gram (overall, or of the image's
land-cover category with --same_category), with the objective of --model gatys (models/gatys_objective.py). The
mean Gram is the Gram file of ``train.py --model gatys`` (CHECKPOINTS_DIR/NAME/latest_gram.pth or --gram_file),
computed by that code on DATAROOT/train/B when it is missing; its record sets the VGG options left out.
Training runs on models/step_trained_model.py: checkpoints with exact resume and the radiometry record of both
domains, the loss log, visdom, the training HTML page, the NaN stop, --eval_freq scores with best_net, and
torchrun (DistributedDataParallel).

test.py: each source image is translated in one pass, whole or tiled (--tile, models/tiling.py), and listed with
its final losses as --model gatys lists its optimized images (real_A, fake_B, real_B), so evaluate.py compares
the two. The checkpoint holds the style targets, the options and how each domain was read (radiometry): no
training flag is needed.
"""

import argparse
import logging
import math
from collections import OrderedDict
from pathlib import Path

import torch

from data import create_dataset
from models.feedforward_generator import (
    CHECKPOINT_SUFFIX,
    HEAD_LR_SCALE,
    NETWORK_NAME,
    STATE_KEY,
    FeedForwardGenerator,
    FeedForwardTranslator,
    generator_from_checkpoint,
    read_feedforward_checkpoint,
    translate_batch,
    translate_image,
)
from models.gatys_model import GRAM_SUFFIX, GatysModel, image_result
from models.gatys_objective import (
    LOSS_FALLBACKS,
    GatysObjective,
    add_loss_options,
    check_gram_metadata,
    check_vgg_channels,
    expected_metadata,
    read_gram_file,
    read_gram_record,
    stacked_style_targets,
)
from models.losses import total_variation
from models.step_trained_model import StepTrainedModel
from models.tiling import add_tiling_options, tiling_arguments
from models.ugatit_model import str2bool
from models.vgg import add_vgg_options, fill_vgg_options
from options.number_types import integer, rate, step_count, weight
from options.train_options import add_iterative_training_options
from util import distributed
from util.cli import progress
from util.errors import SargenError

logger = logging.getLogger("sargen")

LOSS_NAMES = ("style", "content", "tv", "total")
# Defaults measured on the x2ka example data at 128 px (benchmarks/bench_gatys.py): within 10 minutes on 2 CPU cores.
DEFAULT_NGF, DEFAULT_LAYERS, DEFAULT_LR, DEFAULT_STEPS = 16, 3, 2e-3, 400
CONTENT_CACHE_BYTES = 2 << 30
GRAM_FILE_NAME = f"latest{GRAM_SUFFIX}"


class GatysFeedforwardModel(StepTrainedModel):
    """A generator trained with the Gatys content, style and total-variation losses; one pass per image at test."""

    state_key = STATE_KEY
    checkpoint_suffix = CHECKPOINT_SUFFIX
    checkpoint_what = "feed-forward generator"

    @staticmethod
    def modify_commandline_options(parser, is_train):
        """Add the network, loss, training and tiling options; 256 px images, unflipped, as --model gatys."""
        parser.set_defaults(dataset_mode="aligned", load_size=256, crop_size=256, no_flip=True,
                            sides="A" if is_train else "A,B")
        recorded_in = "the Gram file" if is_train else "the checkpoint"
        add_vgg_options(parser, "style loss", recorded_in)
        add_loss_options(parser, None if is_train else "the checkpoint")
        parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                            help="VGG (training) and generator (test) arithmetic; auto = bfloat16 where the "
                                 "hardware has it (losses stay float32)")
        if is_train:
            parser.set_defaults(batch_size=4)
            parser.add_argument("--same_category", action="store_true",
                                help="style target of each image: the mean Gram of its land-cover category "
                                     "(file-name prefix)")
            parser.add_argument("--gram_file", default=None,
                                help=f"Gram file of the target band (default CHECKPOINTS_DIR/NAME/{GRAM_FILE_NAME}, "
                                     f"computed as train.py --model gatys would when missing)")
            parser.add_argument("--ngf", type=integer(1, 4096), default=DEFAULT_NGF,
                                help="channels of the generator's convolutions")
            parser.add_argument("--n_layers", type=integer(1, 256), default=DEFAULT_LAYERS,
                                help="3x3 convolutions of the generator's body (half before its image-wide "
                                     "normalization)")
            parser.add_argument("--lambda_tv", type=weight, default=0.0,
                                help="weight of the total-variation loss (mean absolute neighbour difference)")
            parser.add_argument("--iteration", type=step_count, default=DEFAULT_STEPS, help="training steps")
            parser.add_argument("--lr", type=rate, default=DEFAULT_LR,
                                help=f"Adam learning rate of the body (the output head and grain: {HEAD_LR_SCALE:g}x)")
            parser.add_argument("--decay_flag", type=str2bool, default=True,
                                help="decay the learning rate to 0 along a half cosine over the steps")
            add_iterative_training_options(parser)
        else:
            parser.add_argument("--same_category", action=argparse.BooleanOptionalAction, default=None,
                                help="losses against the image's category Gram (default: as in training)")
            parser.add_argument("--checkpoint", default=None,
                                help=f"generator checkpoint (default CHECKPOINTS_DIR/NAME/EPOCH{CHECKPOINT_SUFFIX})")
            add_tiling_options(parser, "translate each image tile by tile with tiles of this many pixels (a "
                                       "multiple of 4), for images of any size; 0: the whole image at once")
        return parser

    def __init__(self, opt):
        """Training: the VGG objective (as the Gram file records it), the generator and its optimizer."""
        super().__init__(opt)
        if not self.is_train:
            return
        check_vgg_channels(opt)
        self.gram_path = Path(opt.gram_file) if opt.gram_file else self.save_dir / GRAM_FILE_NAME
        if opt.gram_file and not self.gram_path.is_file():
            raise SargenError(f"--gram_file not found: {self.gram_path} (make it with train.py --model gatys, or "
                              f"leave the option out to compute CHECKPOINTS_DIR/NAME/{GRAM_FILE_NAME})")
        self.gram_payload = read_gram_record(self.gram_path)
        fill_vgg_options(opt, self.gram_payload, self.gram_path)
        if self.gram_payload is not None:
            check_gram_metadata(self.gram_payload, expected_metadata(opt), self.gram_path)
        self.objective = GatysObjective(opt, self.device)
        self.generator = FeedForwardGenerator(opt.input_nc, opt.output_nc, opt.ngf, opt.n_layers).to(self.device)
        self.networks = OrderedDict({NETWORK_NAME: self.generator})
        head = self.generator.head_parameters()
        body = [parameter for parameter in self.generator.parameters() if all(parameter is not p for p in head)]
        self.optimizer = torch.optim.Adam([{"params": body, "lr": opt.lr},
                                           {"params": head, "lr": opt.lr * HEAD_LR_SCALE, "lr_scale": HEAD_LR_SCALE}],
                                          lr=opt.lr)
        self.content_cache = ContentTargetCache(opt)
        self.optimizers = OrderedDict({NETWORK_NAME: self.optimizer})
        self.generator_forward = self.generator  # wrapped for torchrun in setup()

    # ---- training ---------------------------------------------------------------------------------

    def setup(self):
        """Training: the mean Gram (read, or computed and saved), then resume and display; test: the checkpoint."""
        if not self.is_train:
            self.load_for_test()
            return
        if self.gram_payload is None:
            self.gram_payload = compute_gram_file(self.opt, self.gram_path)
        self.gram_payload = check_gram_metadata(self.gram_payload, self.objective.metadata(), self.gram_path)
        logger.info("style target: the mean Gram of %d target-band images in %s%s", self.gram_payload["image_count"],
                    self.gram_path, " (per category)" if self.opt.same_category else "")
        super().setup()

    def read_checkpoint(self, path):
        """Load a --model gatys_feedforward checkpoint."""
        return read_feedforward_checkpoint(path)

    def wrap_for_distributed(self):
        """Under torchrun: the generator in DistributedDataParallel (gradients averaged over the ranks)."""
        self.generator_forward = distributed.wrap(self.generator, self.device)

    def training_batches(self, dataset):
        """This rank's batches of source images for the steps still to run (see TrainingSampler)."""
        return super().training_batches(dataset, [len(dataset)])

    def set_input(self, batch):
        """Take a batch: source images (and categories) for training; source and paired targets for testing."""
        self.real_A = batch["A"].to(self.device) if self.is_train else batch["A"]
        self.categories = batch["category"]
        self.image_paths = batch["A_paths"]
        if not self.is_train:
            self.real_B = batch["B"]

    def training_state(self):
        """The resume state plus what test.py needs: the style targets and their record."""
        state = super().training_state()
        payload = self.gram_payload
        targets = {key: payload[key] for key in ("backbone", "weights", "style_layers", "normalization",
                                                 "image_count", "gram")}
        if self.opt.same_category:
            targets["category_gram"] = payload["category_gram"]
        state["style_targets"] = {**targets, "gram_file": str(self.gram_path)}
        return state

    def optimize_parameters(self):
        """One step: translate, score against the content and style targets (+ total variation), update."""
        self.step += 1
        self.set_learning_rate()
        opt, real_A = self.opt, self.real_A
        content_targets = self.content_cache.targets(self.objective, real_A, self.image_paths)
        style_targets = stacked_style_targets(self.gram_payload, self.categories, opt.same_category,
                                              self.objective.style_layers, self.device)
        fake_B = self.generator_forward(real_A)
        total, style, content = self.objective.losses(fake_B, content_targets, style_targets)
        tv = total_variation(fake_B)
        total = total + opt.lambda_tv * tv
        losses = {"style": style.mean(), "content": content.mean(), "tv": tv.mean(), "total": total.mean()}
        logged = self.stop_if_not_finite(losses)
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        self.optimizer.step()
        self.losses = {name: logged[name] for name in LOSS_NAMES}
        self.current_images = (real_A[0], fake_B[0].detach())

    def learning_rate(self, step):
        """The body's learning rate at 1-based `step`: --lr, decayed to 0 along a half cosine with --decay_flag."""
        if not self.opt.decay_flag:
            return self.opt.lr
        return self.opt.lr * 0.5 * (1.0 + math.cos(math.pi * min(step - 1, self.opt.iteration) / self.opt.iteration))

    def progress_losses(self, losses):
        """The progress bar shows the total and the content loss (the style loss is ~1e-5 before its weight)."""
        return [("total", losses["total"]), ("content", losses["content"])]

    def get_current_visuals(self):
        """The first image of the last step: source and generated, as pages show their domains."""
        real_A, fake_B = self.current_images
        return OrderedDict(real_A=self.shown(real_A, "A"), fake_B=self.shown(fake_B, "B"))

    def translate_for_evaluation(self, images):
        """--eval_freq: the generator's translations of source test images (any size: padded to multiples of 4)."""
        def translator(batch):
            return self.generator(batch.to(self.device)).float(), None, None

        return translate_batch(translator, images)

    # ---- test.py ----------------------------------------------------------------------------------

    def load_for_test(self):
        """Load the generator; the options left out take the checkpoint's values; build the loss objective."""
        opt = self.opt
        path = Path(opt.checkpoint or self.saved_checkpoint_path(opt.epoch))
        payload = read_feedforward_checkpoint(path)
        state = payload.get(STATE_KEY)
        if not isinstance(state, dict) or "style_targets" not in state:
            raise SargenError(f"{path} holds no style targets: it was not written by train.py --model "
                              f"gatys_feedforward")
        self.style_record, saved = state["style_targets"], state.get("options", {})
        fill_vgg_options(opt, self.style_record, path)
        check_gram_metadata(self.style_record, expected_metadata(opt), path)
        for name, fallback in {**LOSS_FALLBACKS, "same_category": False}.items():
            if getattr(opt, name) is None:
                setattr(opt, name, saved.get(name, fallback))
        if opt.same_category and "category_gram" not in self.style_record:
            raise SargenError(f"{path} was trained without --same_category and holds no category Grams: "
                              f"test with --no-same_category")
        self.translator = FeedForwardTranslator(generator_from_checkpoint(payload, path), self.device, opt.precision)
        generator = self.translator.generator
        opt.input_nc, opt.output_nc = generator.input_nc, generator.output_nc
        self.use_radiometry_record(state, path)
        self.objective = GatysObjective(opt, self.device)
        self.checkpoint_file, self.checkpoint_step = path, state.get("iteration", "unknown")
        logger.info("%s: %s", path, self.translator.description)

    def result_notes(self):
        """The checkpoint, networks and loss settings shown on the results page."""
        opt = self.opt
        tiling = (f"tiles of {opt.tile} px, overlap {opt.overlap}, context {opt.tile_context}, "
                  f"{opt.tile_passes} passes" if opt.tile
                  else "whole images")
        return [f"checkpoint {self.checkpoint_file}, step {self.checkpoint_step}: {self.translator.description}, "
                f"{tiling}",
                f"losses: {self.objective.description()}, style target the mean Gram of "
                f"{self.style_record['image_count']} target-band images{' per category' if opt.same_category else ''}"
                f", lambda_style {opt.lambda_style:g}, lambda_content {opt.lambda_content:g}",
                *self.radiometry_notes()]

    def test(self):
        """Translate each source image in one pass (tiled with --tile) and compute its final float32 losses."""
        opt = self.opt
        tiling = tiling_arguments(opt) if opt.tile else {}
        self.fake_B = [translate_image(self.translator, image, opt.tile, opt.overlap, **tiling)
                       for image in self.real_A]
        self.final_losses = []
        for image, fake, category in zip(self.real_A, self.fake_B, self.categories):
            image, fake = image[None].to(self.device), fake[None].to(self.device)
            style_targets = stacked_style_targets(self.style_record, [category], opt.same_category,
                                                  self.objective.style_layers, self.device)
            with torch.no_grad():
                losses = self.objective.losses(fake, self.objective.content_targets(image), style_targets,
                                               precision=False)
            self.final_losses.append(tuple(float(value[0]) for value in losses))

    def get_current_results(self):
        """One row per image: real_A, fake_B, real_B (when paired), final losses and the MSE against real_B."""
        return [image_result(path, real_A, fake_B, real_B, losses)
                for path, real_A, fake_B, real_B, losses in zip(self.image_paths, self.real_A, self.fake_B,
                                                                self.real_B, self.final_losses)]


class ContentTargetCache:
    """The content targets (VGG features) of each training image, computed once when the images are read the same
    way at every step (no flip, no random crop): a third of a training step's VGG work."""

    def __init__(self, opt, limit_bytes=CONTENT_CACHE_BYTES):
        """Cache when --no_flip and the preprocessing has no random crop; hold at most `limit_bytes`."""
        self.enabled = opt.no_flip and (opt.preprocess in ("scale_width", "none") or (
            opt.preprocess == "resize_and_crop" and opt.crop_size >= opt.load_size))
        self.limit_bytes, self.used_bytes, self.entries = limit_bytes, 0, {}

    def targets(self, objective, images, paths):
        """{layer: B x C x H x W} content targets of `images` (files `paths`), from the cache where it has them."""
        if not self.enabled:
            return objective.content_targets(images, precision=True)
        missing = [index for index, path in enumerate(paths) if path not in self.entries]
        computed = {}
        if missing:
            features = objective.content_targets(images[missing], precision=True)
            for position, index in enumerate(missing):
                computed[index] = {name: values[position].clone() for name, values in features.items()}
                self.remember(paths[index], computed[index])
        return {name: torch.stack([computed[index][name] if index in computed else self.entries[path][name]
                                   for index, path in enumerate(paths)]) for name in objective.content_layers}

    def remember(self, path, entry):
        """Keep `entry` for `path` while the cache holds less than its limit (beyond it: computed at every step)."""
        size = sum(features.numel() * features.element_size() for features in entry.values())
        if self.used_bytes + size <= self.limit_bytes:
            self.entries[path], self.used_bytes = entry, self.used_bytes + size


def compute_gram_file(opt, path):
    """Write the Gram file `path` exactly as train.py --model gatys would with these options; return its payload.

    The target-band training images (DATAROOT/PHASE/B) go through --model gatys' own Gram precompute (split over
    the ranks under torchrun); every rank then reads the file rank 0 wrote.
    """
    logger.info("no Gram file at %s: computing the mean Gram of the target band as train.py --model gatys does", path)
    gram_opt = argparse.Namespace(**{**vars(opt), "model": "gatys", "sides": "B", "epoch": "latest"})
    model = GatysModel(gram_opt)
    model.setup()
    dataset = create_dataset(gram_opt)
    for batch in progress(model.training_batches(dataset), total=model.num_training_steps(dataset),
                          desc="Gram of the target band", unit="batch"):
        model.set_input(batch)
        model.optimize_parameters()
    model.finish_training()
    distributed.all_reduce_sum({"written": torch.zeros(1)})  # a barrier: rank 0 has saved the file
    return read_gram_file(path)

"""pix2pix: paired image-to-image translation with a conditional GAN and an L1 loss (Isola et al., CVPR 2017).

train.py: a generator (--netG, models/pix2pix_networks.py) learns the source domain's co-registered twin in the
target domain, minimising ``GAN(D(source, G(source))) + lambda_L1 * |G(source) - target|_1``, against a PatchGAN
discriminator (--netD) that tells (source, real target) pairs from (source, translation) ones, with pix2pix's
options, defaults, step and Adam settings. The L1 term counts valid pixels only: a pixel masked as no-data in the
source or the target file (after the same resize, crop and flip) is left out. Training items are co-registered
pairs in every mode: ``aligned`` (test/A and test/B by file name), and ``sen12ms``, ``sen12`` and the unaligned
layout (a patch and its twin of the other sensor; by file name unless pairing.json says unpaired), each domain
read with its own radiometry and channel count (e.g. 13 Sentinel-2 bands to VV+VH). It runs on
models/step_trained_model.py: checkpoints with exact resume and the radiometry record of both domains, the loss
log, visdom, the training HTML page, the NaN stop, --eval_freq scores with best_net, and torchrun
(DistributedDataParallel: each rank normalizes by its own batch, as the original's multi-GPU runs do, the
batch-norm running statistics are averaged over the ranks after every step, and each rank draws its own dropout
masks, from a seed of the step and the rank).

The step computes what the original's does, with less overhead: fused Adam updates, and the discriminator's fake
and real passes batched into one call with batch normalization over each pass's own images (as two calls).

test.py: each source image translated whole at its own size (padded to the generator's size multiple), the
generator in eval mode (see models/pix2pix_checkpoint.py for the normalization); the page shows the source, the
translation, its co-registered real twin and a per-pixel error map in the target's physical unit (dB for a
domain read with the db rule, else 8-bit grey levels). Results go out as PNG or, with --results_format, as
GeoTIFF in physical units; evaluate.py scores them paired (fake_B against real_B).
"""

import logging
import random
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from data import find_dataset_class
from data.radiometry import radiometry_for, translation_domains
from evaluation.physical import rendering_scale
from models.pix2pix_checkpoint import (
    CHECKPOINT_SUFFIX,
    DISCRIMINATOR,
    GENERATOR,
    STATE_KEY,
    generator_channels,
    generator_from_checkpoint,
    generator_options,
    generator_translator,
    read_pix2pix_checkpoint,
)
from models.pix2pix_networks import (
    DISCRIMINATORS,
    GENERATORS,
    INIT_TYPES,
    NORMALIZATIONS,
    DiscriminatorPasses,
    build_discriminator,
    build_generator,
    init_weights,
)
from models.raster_results import RasterOutputs, add_results_format_option
from models.step_trained_model import StepTrainedModel
from models.tiling import size_multiple, translate_whole
from models.ugatit_model import frozen, str2bool
from options.app_options import PRECISIONS
from options.number_types import MAX_BATCH, integer, rate, real, step_count, weight
from options.train_options import add_iterative_training_options
from util import distributed
from util.errors import SargenError
from util.results import ImageResult
from util.visuals import error_map

logger = logging.getLogger("sargen")

LOSS_NAMES = ("G_GAN", "G_L1", "D_real", "D_fake")
GAN_MODES = ("vanilla", "lsgan")
ERROR_FULL_SCALE = 0.4  # the error map's red: this share of the target's window (10 dB of a -25..0 dB window)
EIGHT_BIT_LEVELS = 255


def gan_loss(logits, real, mode):
    """The GAN loss of discriminator logits against the real (1) or fake (0) label: BCE (vanilla) or MSE (lsgan)."""
    target = torch.full_like(logits, 1.0 if real else 0.0)
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


def masked_l1(fake, real, valid=None):
    """Mean absolute difference over the valid pixels (valid: B x 1 x H x W bool, None: all), every channel."""
    if valid is None:
        return F.l1_loss(fake, real)
    weights = valid.to(fake.dtype).expand_as(fake)
    return ((fake - real).abs() * weights).sum() / weights.sum().clamp_min(1.0)


def item_valid(batch, keys, index):
    """The pixels of item `index` of a batch valid in its images of every one of `keys` (1 x H x W bool), or None
    when none of them has a no-data mask."""
    valid = None
    for key in keys:
        masks = batch.get(f"{key}_valid")
        mask = None if masks is None else masks[index]
        if mask is not None:
            valid = mask if valid is None else valid & mask
    return valid


def batch_valid(batch, keys, like):
    """item_valid of every item of a training batch, stacked (B x 1 x H x W on `like`'s device; items without a mask
    all valid), or None when no item has one."""
    masks = [item_valid(batch, keys, index) for index in range(like.shape[0])]
    if all(mask is None for mask in masks):
        return None
    everywhere = torch.ones(1, *like.shape[-2:], dtype=torch.bool)
    return torch.stack([everywhere if mask is None else mask for mask in masks]).to(like.device)


class ImagePool:
    """pix2pix's history of generated pairs (--pool_size; 0: none): once full, each query returns a stored fake
    half of the time, and stores the new one in its place."""

    def __init__(self, size):
        """An empty pool of `size` images."""
        self.size, self.images = size, []

    def query(self, images):
        """The discriminator's fake batch for `images` (detached)."""
        if self.size == 0:
            return images.detach()
        returned = []
        for image in images.detach():
            image = image[None]
            if len(self.images) < self.size:
                self.images.append(image)
                returned.append(image)
            elif random.uniform(0, 1) > 0.5:
                index = random.randint(0, self.size - 1)
                returned.append(self.images[index].clone())
                self.images[index] = image
            else:
                returned.append(image)
        return torch.cat(returned)

    def state(self):
        """The stored images, on the CPU (for the checkpoint)."""
        return [image.cpu() for image in self.images]

    def load(self, images, device):
        """Restore stored images."""
        self.images = [image.to(device) for image in images]


def physical_error(fake, real, radiometry):
    """(CxHxW signed error, unit, the error map's full scale) of a translation and its real twin (CxHxW in [-1, 1])
    in the target domain's unit: dB through the db rule's window, else 8-bit grey levels of the reading window."""
    fake01 = ((fake.detach().float().cpu() + 1) / 2).clamp(0, 1).numpy()
    real01 = ((real.detach().float().cpu() + 1) / 2).clamp(0, 1).numpy()
    if radiometry.mode == "db":
        scale = rendering_scale(radiometry)
        difference = scale.decibels(fake01) - scale.decibels(real01)
        return difference, "db", ERROR_FULL_SCALE * scale.gain
    return (fake01 - real01) * EIGHT_BIT_LEVELS, "levels", ERROR_FULL_SCALE * EIGHT_BIT_LEVELS


def error_scores(difference, valid, unit):
    """Mean absolute and mean signed error over the valid pixels, overall and per band (for bands > 1)."""
    mask = np.ones(difference.shape[-2:], bool) if valid is None else valid
    scores = {f"mean_abs_error_{unit}": float(np.abs(difference[:, mask]).mean()) if mask.any() else float("nan"),
              f"mean_error_{unit}": float(difference[:, mask].mean()) if mask.any() else float("nan")}
    if difference.shape[0] > 1 and mask.any():
        for band, values in enumerate(difference, start=1):
            scores[f"mean_abs_error_{unit}_band{band}"] = float(np.abs(values[mask]).mean())
    return scores


class Pix2PixModel(StepTrainedModel):
    """pix2pix training on co-registered pairs and test-set translation with an error map."""

    state_key = STATE_KEY
    checkpoint_suffix = CHECKPOINT_SUFFIX
    checkpoint_what = "pix2pix"

    @staticmethod
    def modify_commandline_options(parser, is_train):
        """Add pix2pix's network, loss and optimizer options (its names and defaults); read co-registered pairs."""
        parser.set_defaults(dataset_mode="aligned", paired_training=True)
        if is_train:
            parser.add_argument("--netG", default="unet_256", choices=GENERATORS,
                                help="generator: U-Net (inputs multiples of 256 / 128 px) or ResNet (multiples of 4)")
            parser.add_argument("--netD", default="basic", choices=DISCRIMINATORS,
                                help="discriminator: basic (70x70 PatchGAN), n_layers (--n_layers_D), pixel (1x1)")
            parser.add_argument("--n_layers_D", type=integer(1, 64), default=3, help="layers of --netD n_layers")
            parser.add_argument("--ngf", type=integer(1, 4096), default=64,
                                help="generator channels in the first layer")
            parser.add_argument("--ndf", type=integer(1, 4096), default=64,
                                help="discriminator channels in the first layer")
            parser.add_argument("--norm", default="batch", choices=NORMALIZATIONS,
                                help="normalization of both networks (batch: eval-mode running statistics at test, "
                                     "so tiles are normalized as the whole image)")
            parser.add_argument("--no_dropout", action="store_true", help="no dropout in the generator")
            parser.add_argument("--init_type", default="normal", choices=INIT_TYPES, help="weight initialization")
            parser.add_argument("--init_gain", type=weight, default=0.02,
                                help="scale of the normal, xavier and orthogonal initializations")
            parser.add_argument("--gan_mode", default="vanilla", choices=GAN_MODES,
                                help="vanilla: cross-entropy GAN loss; lsgan: least squares")
            parser.add_argument("--lambda_L1", type=weight, default=100.0, help="weight of the L1 loss")
            parser.add_argument("--pool_size", type=integer(0, MAX_BATCH), default=0,
                                help="generated pairs kept for the discriminator (0: none, pix2pix's default)")
            parser.add_argument("--iteration", type=step_count, default=80_000,
                                help="training steps (pix2pix's 200 epochs of the 400 facades pairs)")
            parser.add_argument("--lr", type=rate, default=2e-4, help="Adam learning rate")
            parser.add_argument("--beta1", type=real(0.0, below=1.0), default=0.5, help="Adam beta1")
            parser.add_argument("--decay_flag", type=str2bool, default=True,
                                help="decay the learning rate linearly to 0 over the second half of the steps "
                                     "(pix2pix's n_epochs = n_epochs_decay)")
            add_iterative_training_options(parser)
        else:
            parser.set_defaults(preprocess="none")
            parser.add_argument("--checkpoint", default=None,
                                help=f"checkpoint file to test (default CHECKPOINTS_DIR/NAME/EPOCH{CHECKPOINT_SUFFIX})")
            parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                                help="auto: bfloat16 on CUDA GPUs that have it, float32 on the CPU")
            add_results_format_option(parser)
        return parser

    def __init__(self, opt):
        """Training: the generator, the discriminator (on source and target stacked), their optimizers, the pool."""
        super().__init__(opt)
        self.item_keys = find_dataset_class(opt.dataset_mode).item_keys(opt)
        self.source_domain, self.target_domain = translation_domains(opt)
        if not self.is_train:
            return
        self.channels_last = self.device.type == "cuda"
        try:
            generator = build_generator(opt.netG, *generator_channels(opt), opt.ngf, opt.norm, not opt.no_dropout)
            discriminator = build_discriminator(opt.netD, opt.input_nc + opt.output_nc, opt.ndf, opt.n_layers_D,
                                                opt.norm)
        except ValueError as error:
            raise SargenError(f"cannot build pix2pix from the options: {error}") from None
        self.check_crop_size(generator)
        self.networks = OrderedDict({GENERATOR: init_weights(generator, opt.init_type, opt.init_gain),
                                     DISCRIMINATOR: init_weights(discriminator, opt.init_type, opt.init_gain)})
        for network in self.networks.values():
            network.to(self.device).train()
            if self.channels_last:
                network.to(memory_format=torch.channels_last)
        self.generator, self.discriminator = self.networks[GENERATOR], self.networks[DISCRIMINATOR]
        # The step's forward modules; setup() wraps them in DistributedDataParallel under torchrun.
        self.generator_forward = self.generator
        self.discriminator_passes = DiscriminatorPasses(self.discriminator)
        adam = {"lr": opt.lr, "betas": (opt.beta1, 0.999)}
        fused = {"fused": True} if self.device.type in ("cpu", "cuda") else {}  # one sweep over all tensors
        self.optimizer_G = torch.optim.Adam(self.generator.parameters(), **adam, **fused)
        self.optimizer_D = torch.optim.Adam(self.discriminator.parameters(), **adam, **fused)
        self.optimizers = OrderedDict({GENERATOR: self.optimizer_G, DISCRIMINATOR: self.optimizer_D})
        self.pool = ImagePool(opt.pool_size)
        self.checked_size = False

    def check_crop_size(self, generator):
        """Refuse a --crop_size the generator cannot take (a U-Net's sides are multiples of 2**levels)."""
        opt, multiple = self.opt, size_multiple(generator)
        if "crop" in opt.preprocess and opt.crop_size % multiple:
            raise SargenError(f"--crop_size {opt.crop_size} is not a multiple of {multiple}, which --netG {opt.netG} "
                              f"needs: use --crop_size {max(multiple, opt.crop_size // multiple * multiple)}"
                              f"{' or a resnet generator (multiples of 4)' if multiple > 4 else ''}")

    # ---- training ---------------------------------------------------------------------------------

    def read_checkpoint(self, path):
        """Load a --model pix2pix checkpoint (kept for the image pool resume() restores)."""
        self.resumed_payload = read_pix2pix_checkpoint(path)
        return self.resumed_payload

    def resume(self):
        """Resume as every step-trained model does, and restore the image pool."""
        super().resume()
        state = self.resumed_payload.get(STATE_KEY)
        if isinstance(state, dict):
            self.pool.load(state.get("image_pool", []), self.device)
        self.resumed_payload = None

    def training_state(self):
        """The resume state, with the image pool."""
        return {**super().training_state(), "image_pool": self.pool.state()}

    def wrap_for_distributed(self):
        """Under torchrun: the generator and the discriminator passes in DistributedDataParallel."""
        self.generator_forward = distributed.wrap(self.generator, self.device)
        self.discriminator_passes = distributed.wrap(self.discriminator_passes, self.device)

    def training_batches(self, dataset):
        """This rank's batches of co-registered pairs for the steps still to run (see TrainingSampler)."""
        return super().training_batches(dataset, [len(dataset)])

    def set_input(self, batch):
        """Take a batch: source and target images (and their valid masks) in training; for testing also paths."""
        source, target = self.item_keys
        if not self.is_train:
            self.real_A, self.real_B = batch[source], batch.get(target)
            self.image_paths, self.target_paths = batch[f"{source}_paths"], batch.get(f"{target}_paths")
            self.valid = [item_valid(batch, (source, target), index) for index in range(len(self.image_paths))]
            return
        self.real_A, self.real_B = self.to_device(batch[source]), self.to_device(batch[target])
        self.valid = batch_valid(batch, (source, target), self.real_A)
        if not self.checked_size:
            multiple = size_multiple(self.generator)
            if any(side % multiple for side in self.real_A.shape[-2:]):
                raise SargenError(f"training images of {tuple(self.real_A.shape[-2:])} px: --netG {self.opt.netG} "
                                  f"takes sides that are multiples of {multiple} (set --preprocess and --crop_size)")
            self.checked_size = True

    def to_device(self, images):
        """Move a batch to the model's device (channels_last on CUDA)."""
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def optimize_parameters(self):
        """One pix2pix step: translate; update D on (source, translation) as fake and (source, target) as real;
        update G against the updated D with the GAN and the masked L1 loss.

        As in the original, D's update sees the translation detached and the G update D's output for the same
        translation, recomputed with D's new weights (D's own weights build no graph there). The losses of each
        update are averaged over the ranks and checked before it: a NaN or infinite one stops every rank.
        """
        self.step += 1
        self.set_learning_rate()
        self.seed_dropout()
        opt, real_A, real_B = self.opt, self.real_A, self.real_B
        fake_B = self.generator_forward(real_A)

        self.optimizer_D.zero_grad(set_to_none=True)
        fake_pairs = self.pool.query(torch.cat((real_A, fake_B), 1))
        fake_logits, real_logits = self.discriminator_passes(fake_pairs, torch.cat((real_A, real_B), 1))
        losses_D = {"D_fake": gan_loss(fake_logits.float(), False, opt.gan_mode),
                    "D_real": gan_loss(real_logits.float(), True, opt.gan_mode)}
        logged_D = self.stop_if_not_finite(losses_D)
        ((losses_D["D_fake"] + losses_D["D_real"]) * 0.5).backward()
        self.optimizer_D.step()

        self.optimizer_G.zero_grad(set_to_none=True)
        with frozen([self.discriminator]):
            logits = self.discriminator(torch.cat((real_A, fake_B), 1))
        losses_G = {"G_GAN": gan_loss(logits.float(), True, opt.gan_mode),
                    "G_L1": masked_l1(fake_B.float(), real_B.float(), self.valid) * opt.lambda_L1}
        logged_G = self.stop_if_not_finite(losses_G)
        (losses_G["G_GAN"] + losses_G["G_L1"]).backward()
        self.optimizer_G.step()
        self.average_running_statistics()

        logged = {**logged_G, **logged_D}
        self.losses = {name: logged[name] for name in LOSS_NAMES}
        self.current_images = (real_A[0], fake_B[0].detach(), real_B[0])

    def seed_dropout(self):
        """Under torchrun: this step's dropout masks from a seed of (--seed, step, rank), so that ranks, which start
        from one seed, draw different masks, and a resumed run draws the same ones as an uninterrupted run."""
        if distributed.world_size() > 1:
            torch.manual_seed((self.opt.seed * 1_000_003 + self.step) * 1009 + distributed.rank())

    def average_running_statistics(self):
        """Under torchrun: the networks' batch-norm running statistics averaged over the ranks (identical again)."""
        if distributed.world_size() < 2:
            return
        buffers = {f"{name}.{key}": buffer for name, network in self.networks.items()
                   for key, buffer in network.named_buffers() if buffer.is_floating_point()}
        if not buffers:
            return
        for key, averaged in distributed.all_reduce_mean(buffers).items():
            buffers[key].copy_(averaged)

    def progress_losses(self, losses):
        """The progress bar shows the L1 and the discriminator's losses."""
        return [("G_L1", losses["G_L1"]), ("D_real", losses["D_real"]), ("D_fake", losses["D_fake"])]

    def get_current_visuals(self):
        """The first pair of the last step: source, translation and real target, as pages show their domains."""
        real_A, fake_B, real_B = self.current_images
        x, y = self.source_domain, self.target_domain
        return OrderedDict([(f"real_{x}", self.shown(real_A, x)), (f"fake_{y}", self.shown(fake_B, y)),
                            (f"real_{y}", self.shown(real_B, y))])

    def translate_for_evaluation(self, images):
        """--eval_freq: the generator's translations (eval mode) of source test images, padded to its size multiple."""
        def translator(batch):
            return self.generator(batch.to(self.device)).float()

        translator.generator = self.generator  # what translate_whole reads the size multiple from
        with torch.no_grad():
            return torch.stack([translate_whole(translator, image)[0] for image in images])

    # ---- test.py ----------------------------------------------------------------------------------

    def load_for_test(self):
        """Load the generator; the channels and the direction are the checkpoint's; read as its record says."""
        opt = self.opt
        path = Path(opt.checkpoint or self.saved_checkpoint_path(opt.epoch))
        payload = read_pix2pix_checkpoint(path)
        trained = generator_options(payload, path)
        if opt.direction != trained["direction"]:
            raise SargenError(f"{path} was trained for --direction {trained['direction']}: test with it")
        self.translator = generator_translator(generator_from_checkpoint(payload, path), self.device, opt.precision)
        opt.input_nc, opt.output_nc = trained["input_nc"], trained["output_nc"]
        state = payload[STATE_KEY]
        self.checkpoint_file, self.checkpoint_step = path, state.get("iteration", "unknown")
        self.use_radiometry_record(state, path)
        logger.info("%s: %s", path, self.translator.description)

    def raster_outputs(self):
        """GeoTIFF results in the target domain's physical unit as --results_format says (None: PNG only)."""
        return RasterOutputs.from_options(self.opt)

    def result_notes(self):
        """The checkpoint, network and error map shown on the results page."""
        radiometry = radiometry_for(self.opt, self.target_domain)
        if radiometry.mode == "db":
            window = radiometry.db_window
            scale = f"dB (domain {self.target_domain}'s -> {window[0]:g}..{window[1]:g} dB window)"
            full_scale = f"{ERROR_FULL_SCALE * (window[1] - window[0]):g} dB"
        else:
            scale = f"8-bit grey levels of domain {self.target_domain}'s reading window (it has no fixed dB window)"
            full_scale = f"{ERROR_FULL_SCALE * EIGHT_BIT_LEVELS:g} levels"
        return [f"checkpoint {self.checkpoint_file}, step {self.checkpoint_step}: {self.translator.description}, "
                f"whole images at their own size",
                f"error_map: |fake - real| per pixel in {scale}, averaged over the bands; blue 0, red {full_scale} "
                f"and over; black: no-data", *self.radiometry_notes()]

    def test(self):
        """Translate each source image whole at its own size (padded to the generator's size multiple)."""
        self.fake_B = [translate_whole(self.translator, image)[0] for image in self.real_A]

    def get_current_results(self):
        """One ImageResult per image: source, translation, real twin and error map (when the data has the twin),
        the mean errors as scalars; the translation and the files for GeoTIFF results."""
        x, y = self.source_domain, self.target_domain
        radiometry = radiometry_for(self.opt, y)
        results = []
        for index, path in enumerate(self.image_paths):
            real_A, fake_B = self.real_A[index], self.fake_B[index]
            real_B = self.real_B[index] if self.real_B is not None else None
            visuals = OrderedDict([(f"real_{x}", self.shown(real_A, x)), (f"fake_{y}", self.shown(fake_B, y))])
            scalars = {}
            if real_B is not None:
                visuals[f"real_{y}"] = self.shown(real_B, y)
                if real_B.shape == fake_B.shape:
                    valid = None if self.valid[index] is None else self.valid[index][0].cpu().numpy()
                    difference, unit, full_scale = physical_error(fake_B, real_B, radiometry)
                    error = torch.from_numpy(np.abs(difference).mean(axis=0))
                    visuals["error_map"] = error_map(error, full_scale,
                                                     None if valid is None else torch.from_numpy(valid))
                    scalars = error_scores(difference, valid, unit)
            target_path = self.target_paths[index] if self.target_paths is not None else None
            results.append(ImageResult(Path(path).stem, visuals, scalars, outputs={f"fake_{y}": fake_B},
                                       sources={f"real_{x}": path, f"real_{y}": target_path}))
        return results

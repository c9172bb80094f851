"""U-GAT-IT: unpaired image-to-image translation with CAM attention and AdaLIN (Kim et al., ICLR 2020).

train.py: both generators (A->B, B->A) and the four discriminators (global and local for each domain)
trained by iteration with the published losses, weights, optimizer and learning-rate decay, saved as
eo2sar-compatible checkpoints (models/ugatit_checkpoint.py) with sargen's resume state.
test.py: for each source image, the seven panels of U-GAT-IT's results (real; identity heatmap and
image; translation heatmap and image; reconstruction heatmap and image).

Channels: --input_nc is domain A's (trainA, testA) and --output_nc domain B's, any counts (e.g. 4 -> 2).
Identity mappings feed an image to the generator of its own domain, converted to that generator's input
channels (data.radiometry.to_channels). The checkpoint records how each domain was read (bands, scaling rule,
window, unit, channels); test.py and app.py read and write with that record unless options override it.

Under torchrun (several processes) each rank trains on its own share of every step's samples
(--batch_size per rank), the two passes of a step run through DistributedDataParallel, the losses are
averaged over the ranks, and rank 0 alone writes checkpoints, logs and the HTML page.
"""

import argparse
import contextlib
import logging
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from data.radiometry import to_channels
from models.raster_results import RasterOutputs, add_results_format_option
from models.step_trained_model import StepTrainedModel
from models.ugatit_checkpoint import (
    CHECKPOINT_SUFFIX,
    DISCRIMINATOR_NAMES,
    GENERATOR_NAMES,
    SARGEN_STATE_KEY,
    generator_from_checkpoint,
    read_checkpoint,
    sargen_state,
    saved_options,
)
from models.ugatit_inference import Translator
from models.ugatit_networks import (
    GLOBAL_DISCRIMINATOR_LAYERS,
    LOCAL_DISCRIMINATOR_LAYERS,
    Discriminator,
    Generator,
    RhoClipper,
    set_fused_statistics,
)
from options.app_options import PRECISIONS
from options.number_types import integer, network_side, rate, step_count, weight
from options.train_options import add_iterative_training_options
from util import distributed
from util.device import autocast_dtype
from util.errors import SargenError
from util.results import ImageResult
from util.visuals import heatmap_overlay

logger = logging.getLogger("sargen")

LOSS_NAMES = ("D_A", "D_B", "G_adv_A", "G_adv_B", "G_cycle_A", "G_cycle_B", "G_identity_A", "G_identity_B",
              "G_cam_A", "G_cam_B", "D", "G")
ADAM_BETAS = (0.5, 0.999)
DOMAIN_DISCRIMINATORS = {"A": ("disGA", "disLA"), "B": ("disGB", "disLB")}


def str2bool(text):
    """An argparse type accepting true/false, yes/no, 1/0 (the reference code's --decay_flag True)."""
    value = str(text).strip().lower()
    if value in ("true", "yes", "1", "t", "y"):
        return True
    if value in ("false", "no", "0", "f", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def lsgan(outputs, target):
    """Least-squares adversarial loss of (patch logit, CAM logit) pairs against a constant target."""
    return sum(F.mse_loss(logit, torch.full_like(logit, target)) for pair in outputs for logit in pair)


def discriminator_domain_loss(real_outputs, fake_outputs, opt):
    """One domain's global+local discriminator loss: real patches and CAM logits to 1, fakes to 0."""
    return opt.adv_weight * (lsgan(real_outputs, 1.0) + lsgan(fake_outputs, 0.0))


def generator_domain_losses(fake_outputs, real, reconstruction, identity, cam_translated, cam_identity):
    """The losses of the generator producing one domain: adversarial, cycle, identity and CAM (unweighted)."""
    return {
        "adv": lsgan(fake_outputs, 1.0),
        "cycle": F.l1_loss(reconstruction, real),
        "identity": F.l1_loss(identity, real),
        "cam": (F.binary_cross_entropy_with_logits(cam_translated, torch.ones_like(cam_translated))
                + F.binary_cross_entropy_with_logits(cam_identity, torch.zeros_like(cam_identity))),
    }


def weighted_generator_loss(losses, opt):
    """The published weighting of one domain's generator losses."""
    return (opt.adv_weight * losses["adv"] + opt.cycle_weight * losses["cycle"]
            + opt.identity_weight * losses["identity"] + opt.cam_weight * losses["cam"])


def discriminator_losses(outputs, opt):
    """{D_A, D_B} from DiscriminatorPasses' outputs."""
    return {f"D_{domain}": discriminator_domain_loss(outputs[f"real_{domain}"], outputs[f"fake_{domain}"], opt)
            for domain in "AB"}


def generator_losses(losses_A, losses_B, opt):
    """{G_adv_A, ..., G_cam_B} from both domains' generator losses, and their weighted total G."""
    named = {f"G_{key}_{domain}": value for domain, losses in (("A", losses_A), ("B", losses_B))
             for key, value in losses.items()}
    named["G"] = weighted_generator_loss(losses_A, opt) + weighted_generator_loss(losses_B, opt)
    return named


def set_requires_grad(networks, flag):
    """Switch gradient tracking of every parameter of `networks`."""
    for network in networks:
        for parameter in network.parameters():
            parameter.requires_grad_(flag)


@contextlib.contextmanager
def frozen(networks):
    """Within the block `networks` build no graph for their own parameters (only input gradients pass)."""
    set_requires_grad(networks, False)
    try:
        yield
    finally:
        set_requires_grad(networks, True)


def discriminate(discriminators, images, call_sizes=None):
    """[(patch logit, CAM logit)] of each of `discriminators` on `images`, as float32."""
    outputs = []
    for discriminator in discriminators:
        logit, cam_logit, _ = discriminator(images, call_sizes)
        outputs.append((logit.float(), cam_logit.float()))
    return outputs


def discriminate_real_and_fake(discriminators, real, fake):
    """discriminate() of real and of fake, run as one batch per discriminator with each call's own spectral norm."""
    batch = real.shape[0]
    stacked = discriminate(discriminators, torch.cat([real, fake]), call_sizes=(batch, fake.shape[0]))
    return ([(logit[:batch], cam_logit[:batch]) for logit, cam_logit in stacked],
            [(logit[batch:], cam_logit[batch:]) for logit, cam_logit in stacked])


class GeneratorPasses(nn.Module):
    """Every generator pass of a training step in one forward call (DistributedDataParallel allows one per backward)."""

    def __init__(self, genA2B, genB2A):
        """Hold both generators."""
        super().__init__()
        self.genA2B, self.genB2A = genA2B, genB2A

    def forward(self, real_A, real_B):
        """The translations, then each generator's reconstruction and identity passes batched into one call."""
        genA2B, genB2A = self.genA2B, self.genB2A
        fake_A2B, cam_logit_A2B, heatmap_A2B = genA2B(real_A)
        fake_B2A, cam_logit_B2A, heatmap_B2A = genB2A(real_B)
        batch = real_A.shape[0]
        to_A, cam_to_A, _ = genB2A(torch.cat([fake_A2B, to_channels(real_A, genB2A.input_nc)]))
        to_B, cam_to_B, _ = genA2B(torch.cat([fake_B2A, to_channels(real_B, genA2B.input_nc)]))
        return {"fake_A2B": fake_A2B, "cam_logit_A2B": cam_logit_A2B, "heatmap_A2B": heatmap_A2B,
                "fake_B2A": fake_B2A, "cam_logit_B2A": cam_logit_B2A, "heatmap_B2A": heatmap_B2A,
                "fake_A2B2A": to_A[:batch], "fake_A2A": to_A[batch:], "cam_logit_A2A": cam_to_A[batch:],
                "fake_B2A2B": to_B[:batch], "fake_B2B": to_B[batch:], "cam_logit_B2B": cam_to_B[batch:]}


class DiscriminatorPasses(nn.Module):
    """Every discriminator pass of the discriminator update in one forward call, in the reference's order."""

    def __init__(self, networks):
        """Hold the four discriminators of `networks` (a {name: module} mapping)."""
        super().__init__()
        self.networks = nn.ModuleDict({name: networks[name] for name in DISCRIMINATOR_NAMES})

    def forward(self, real_A, real_B, fake_A, fake_B):
        """{real_A, real_B, fake_A, fake_B: [(patch logit, CAM logit)] of the global and the local discriminator}."""
        outputs = {}
        for domain, real, fake in (("A", real_A, fake_A), ("B", real_B, fake_B)):
            discriminators = [self.networks[name] for name in DOMAIN_DISCRIMINATORS[domain]]
            outputs[f"real_{domain}"], outputs[f"fake_{domain}"] = discriminate_real_and_fake(
                discriminators, real, fake)
        return outputs


def check_discriminator_size(img_size, global_layers):
    """Refuse image sizes the global discriminator would shrink below its last 4x4 convolution."""
    local_layers = global_layers - (GLOBAL_DISCRIMINATOR_LAYERS - LOCAL_DISCRIMINATOR_LAYERS)
    if local_layers < 3:
        raise SargenError(f"--n_dis {global_layers} is too small: use at least "
                          f"{3 + GLOBAL_DISCRIMINATOR_LAYERS - LOCAL_DISCRIMINATOR_LAYERS}")
    # n_layers - 2 stride-2 stages, then a stride-1 stage and a 4x4 conv need >= 3 pixels left.
    smallest = 3 * 2 ** (global_layers - 2)
    if img_size < smallest:
        raise SargenError(f"--img_size {img_size} is too small for a {global_layers}-layer global discriminator: "
                          f"use --img_size >= {smallest} or a smaller --n_dis")


class UGATITModel(StepTrainedModel):
    """U-GAT-IT training and test-set translation, with eo2sar-compatible checkpoints."""

    state_key = SARGEN_STATE_KEY
    checkpoint_suffix = CHECKPOINT_SUFFIX
    checkpoint_what = "U-GAT-IT"

    @staticmethod
    def modify_commandline_options(parser, is_train):
        """Add the network, loss and optimizer options; read unaligned data resized as U-GAT-IT does."""
        parser.set_defaults(dataset_mode="unaligned", load_size=0, crop_size=0)
        parser.add_argument("--ch", "--ngf", dest="ch", type=integer(1, 4096), default=64,
                            help="base channel count of the networks (ngf, ndf); read from the checkpoint at test")
        parser.add_argument("--n_res", type=integer(0, 256), default=4,
                            help="residual blocks of the generators (at test: read from the checkpoint)")
        parser.add_argument("--n_dis", type=integer(1, 64), default=GLOBAL_DISCRIMINATOR_LAYERS,
                            help="layers of the global discriminators; the local ones have 2 fewer (published: 7)")
        parser.add_argument("--light", action="store_true",
                            help="light generator (pooled MLP input; the published eo2sar model is light); "
                                 "at test: read from the checkpoint")
        parser.add_argument("--img_size", type=network_side, default=256 if is_train else None,
                            help="image side for training (and for testing; default at test: the checkpoint's); "
                                 "--load_size/--crop_size 0 mean img_size+30 / img_size")
        if is_train:
            parser.add_argument("--iteration", type=step_count, default=1_000_000, help="training steps")
            parser.add_argument("--lr", type=rate, default=1e-4, help="Adam learning rate")
            parser.add_argument("--weight_decay", type=weight, default=1e-4, help="Adam weight decay")
            parser.add_argument("--decay_flag", type=str2bool, default=True,
                                help="decay the learning rate linearly to 0 over the second half of the steps")
            parser.add_argument("--adv_weight", type=weight, default=1.0, help="weight of the adversarial losses")
            parser.add_argument("--cycle_weight", type=weight, default=10.0, help="weight of the cycle L1 loss")
            parser.add_argument("--identity_weight", type=weight, default=10.0, help="weight of the identity L1 loss")
            parser.add_argument("--cam_weight", type=weight, default=1000.0, help="weight of the CAM BCE loss")
            parser.add_argument("--amp", action="store_true",
                                help="bfloat16 mixed precision for the networks (losses and optimizer in float32)")
            add_iterative_training_options(parser)
        else:
            parser.add_argument("--checkpoint", default=None,
                                help="checkpoint file to test (default: CHECKPOINTS_DIR/NAME/EPOCH_net_ugatit.pth), "
                                     "e.g. the published eo2sar model")
            parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                                help="auto: mixed bfloat16 on CUDA GPUs that have it, float32 on the CPU; float32: "
                                     "the plain forward; bfloat16: mixed bfloat16 anywhere")
            add_results_format_option(parser)
        return parser

    def __init__(self, opt):
        """Build the six networks and the optimizers for training; testing builds from the checkpoint in setup()."""
        super().__init__(opt)
        if not self.is_train:
            return
        self.channels_last = self.device.type == "cuda"
        self.autocast_dtype = autocast_dtype(self.device, "bfloat16") if opt.amp else None
        a_channels, b_channels = opt.input_nc, opt.output_nc
        check_discriminator_size(opt.img_size, opt.n_dis)
        global_layers, local_layers = opt.n_dis, opt.n_dis - (GLOBAL_DISCRIMINATOR_LAYERS - LOCAL_DISCRIMINATOR_LAYERS)
        generator_args = {"ngf": opt.ch, "n_blocks": opt.n_res, "img_size": opt.img_size, "light": opt.light}
        try:
            self.networks = OrderedDict(
                genA2B=Generator(a_channels, b_channels, **generator_args),
                genB2A=Generator(b_channels, a_channels, **generator_args),
                disGA=Discriminator(a_channels, opt.ch, global_layers),
                disGB=Discriminator(b_channels, opt.ch, global_layers),
                disLA=Discriminator(a_channels, opt.ch, local_layers),
                disLB=Discriminator(b_channels, opt.ch, local_layers),
            )
        except ValueError as error:
            raise SargenError(f"cannot build U-GAT-IT from the options: {error} (check --img_size, --n_res)") from None
        for network in self.networks.values():
            network.to(self.device).train()
            if self.channels_last:
                network.to(memory_format=torch.channels_last)
        self.generators = [self.networks[name] for name in GENERATOR_NAMES]
        self.discriminators = [self.networks[name] for name in DISCRIMINATOR_NAMES]
        for generator in self.generators:
            set_fused_statistics(generator, True)  # one multiply-add per AdaLIN/LIN element, forward and back
        # The step's two forward calls; setup() wraps them in DistributedDataParallel under torchrun.
        self.generator_passes = GeneratorPasses(self.networks["genA2B"], self.networks["genB2A"])
        self.discriminator_passes = DiscriminatorPasses(self.networks)
        adam = {"lr": opt.lr, "betas": ADAM_BETAS, "weight_decay": opt.weight_decay}
        # foreach/fused updates: one kernel sweep over all tensors instead of one per parameter.
        fast = {"fused": True} if self.device.type in ("cpu", "cuda") else {}
        self.optimizer_G = torch.optim.Adam([p for g in self.generators for p in g.parameters()], **adam, **fast)
        self.optimizer_D = torch.optim.Adam([p for d in self.discriminators for p in d.parameters()], **adam, **fast)
        self.optimizers = OrderedDict(G=self.optimizer_G, D=self.optimizer_D)
        self.rho_clipper = RhoClipper(0.0, 1.0)

    # ---- training ---------------------------------------------------------------------------------

    def read_checkpoint(self, path):
        """Load a U-GAT-IT checkpoint (eo2sar or sargen format)."""
        return read_checkpoint(path)

    def wrap_for_distributed(self):
        """Wrap the step's generator and discriminator passes in DistributedDataParallel under torchrun."""
        self.generator_passes = distributed.wrap(self.generator_passes, self.device)
        self.discriminator_passes = distributed.wrap(self.discriminator_passes, self.device)

    def training_batches(self, dataset):
        """This rank's batches for the steps still to run, reproducible from any step (see TrainingSampler)."""
        return super().training_batches(dataset, [len(dataset.paths["A"]), len(dataset.paths["B"])])

    def set_input(self, batch):
        """Take a batch: both domains for training, the source domain for testing."""
        if self.is_train:
            self.real_A = self.to_device(batch["A"])
            self.real_B = self.to_device(batch["B"])
            return
        source, target = ("A", "B") if self.opt.direction == "AtoB" else ("B", "A")
        self.real_source = batch[source]
        self.image_paths = batch[f"{source}_paths"]
        self.real_target = batch.get(target)  # co-registered partners (None, or a list with None where missing)
        self.target_paths = batch.get(f"{target}_paths")

    def to_device(self, images):
        """Move a batch to the model's device (channels_last on CUDA)."""
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def autocast(self):
        """The mixed-precision context of --amp (a no-op without it)."""
        dtype = self.autocast_dtype
        return torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def domain_discriminators(self, domain):
        """The global and the local discriminator of `domain` (A or B), unwrapped."""
        return [self.networks[name] for name in DOMAIN_DISCRIMINATORS[domain]]

    def optimize_parameters(self):
        """One U-GAT-IT step: discriminators on detached translations, then generators, then rho clipping.

        All generator passes run in one forward call, all passes of the discriminator update in another (the
        calls DistributedDataParallel synchronizes under torchrun). The losses of each update are averaged over
        the ranks and checked before it: a NaN or infinite one stops the run on every rank.
        """
        self.step += 1
        self.set_learning_rate()
        opt, real_A, real_B = self.opt, self.real_A, self.real_B
        with self.autocast():
            passes = self.generator_passes(real_A, real_B)

        # Discriminators: the translations are detached, so this backward pass stays out of the generators
        # (the reference recomputes them and backpropagates the discriminator loss through both).
        self.optimizer_D.zero_grad(set_to_none=True)
        with self.autocast():
            outputs = self.discriminator_passes(real_A, real_B, passes["fake_B2A"].detach(),
                                                passes["fake_A2B"].detach())
        losses_D = discriminator_losses(outputs, opt)
        logged_D = self.stop_if_not_finite(losses_D)
        (losses_D["D_A"] + losses_D["D_B"]).backward()
        self.optimizer_D.step()

        # Generators: the translations above, judged by the updated discriminators (unwrapped; their own
        # weights need no gradient here, only the images do).
        self.optimizer_G.zero_grad(set_to_none=True)
        with frozen(self.discriminators), self.autocast():
            fake_outputs_A = discriminate(self.domain_discriminators("A"), passes["fake_B2A"])
            fake_outputs_B = discriminate(self.domain_discriminators("B"), passes["fake_A2B"])
        losses_A = generator_domain_losses(fake_outputs_A, real_A, passes["fake_A2B2A"].float(),
                                           passes["fake_A2A"].float(), passes["cam_logit_B2A"].float(),
                                           passes["cam_logit_A2A"].float())
        losses_B = generator_domain_losses(fake_outputs_B, real_B, passes["fake_B2A2B"].float(),
                                           passes["fake_B2B"].float(), passes["cam_logit_A2B"].float(),
                                           passes["cam_logit_B2B"].float())
        losses_G = generator_losses(losses_A, losses_B, opt)
        logged_G = self.stop_if_not_finite(losses_G)
        losses_G["G"].backward()
        self.optimizer_G.step()
        for generator in self.generators:
            self.rho_clipper(generator)

        self.record_losses(logged_D, logged_G)
        self.current_images = (real_A[0], passes["fake_A2B"][0], passes["heatmap_A2B"][0], real_B[0],
                               passes["fake_B2A"][0], passes["heatmap_B2A"][0])

    def record_losses(self, losses_D, losses_G):
        """Keep the step's losses (as detached tensors; get_current_losses makes numbers of them)."""
        losses = {**losses_D, "D": losses_D["D_A"] + losses_D["D_B"], **losses_G}
        self.losses = {name: losses[name].detach() for name in LOSS_NAMES}

    def translate_for_evaluation(self, images):
        """--eval_freq: the translations of source test images (img_size, [-1, 1]) by the generator of --direction."""
        generator = self.networks["genA2B" if self.opt.direction == "AtoB" else "genB2A"]
        with self.autocast():
            return generator(self.to_device(images))[0].float()

    def get_current_visuals(self):
        """The first image of the last step: real, translated and heatmap (over the real image) per domain."""
        real_A, fake_A2B, heatmap_A2B, real_B, fake_B2A, heatmap_B2A = self.current_images
        real_A, real_B = self.shown(real_A, "A"), self.shown(real_B, "B")
        return OrderedDict(real_A=real_A, fake_A2B=self.shown(fake_A2B, "B"),
                           heatmap_A2B=heatmap_overlay(heatmap_A2B, real_A), real_B=real_B,
                           fake_B2A=self.shown(fake_B2A, "A"), heatmap_B2A=heatmap_overlay(heatmap_B2A, real_B))

    # ---- test.py ----------------------------------------------------------------------------------

    def load_for_test(self):
        """Load both generators; take img_size and the domains' channels from the checkpoint."""
        opt = self.opt
        path = opt.checkpoint or self.saved_checkpoint_path(opt.epoch)
        payload = read_checkpoint(path)
        img_size = opt.img_size or saved_options(payload).get("img_size")
        generators = {name: generator_from_checkpoint(payload, name, path, img_size) for name in GENERATOR_NAMES}
        self.translators = {name: Translator(generator, self.device, opt.precision)
                            for name, generator in generators.items()}
        genA2B = generators["genA2B"]
        opt.img_size, opt.input_nc, opt.output_nc = genA2B.img_size, genA2B.input_nc, genA2B.output_nc
        self.checkpoint_file = path
        self.checkpoint_step = sargen_state(payload).get("iteration", "unknown (reference-format file)")
        self.use_radiometry_record(sargen_state(payload), path)
        logger.info("%s: %s", path, self.translators["genA2B"].description)

    def raster_outputs(self):
        """GeoTIFF results in the target domain's physical unit as --results_format says (None: PNG only)."""
        return RasterOutputs.from_options(self.opt)

    def result_notes(self):
        """The checkpoint and networks shown on the results page."""
        return [f"checkpoint {self.checkpoint_file}, step {self.checkpoint_step}",
                f"genA2B: {self.translators['genA2B'].description}", *self.radiometry_notes()]

    def test(self):
        """Translate the source images, their identity mappings and the reconstructions, with heatmaps."""
        forward, backward = ("genA2B", "genB2A") if self.opt.direction == "AtoB" else ("genB2A", "genA2B")
        forward, backward = self.translators[forward], self.translators[backward]
        source = self.real_source
        fake_identity, _, heatmap_identity = backward(to_channels(source, backward.input_nc))
        fake, _, heatmap = forward(source)
        reconstruction, _, heatmap_reconstruction = backward(fake)
        self.test_outputs = (source, heatmap_identity, fake_identity, heatmap, fake, heatmap_reconstruction,
                             reconstruction)

    def get_current_results(self):
        """One ImageResult per image with U-GAT-IT's seven panels (heatmaps over the image they came from), and
        the co-registered real target image beside the translation when the data has one; the translation itself
        and the source and partner files for GeoTIFF results."""
        x, y = ("A", "B") if self.opt.direction == "AtoB" else ("B", "A")
        results = []
        for index, path in enumerate(self.image_paths):
            real, heat_id, fake_id, heat, fake, heat_rec, rec = (tensor[index] for tensor in self.test_outputs)
            outputs = {f"fake_{x}2{y}": fake}
            sources = {f"real_{x}": path, f"real_{y}": self.target_paths[index] if self.target_paths else None}
            real, fake = self.shown(real, x), self.shown(fake, y)
            visuals = OrderedDict()
            visuals[f"real_{x}"] = real
            visuals[f"heatmap_{x}2{x}"] = heatmap_overlay(heat_id, real)
            visuals[f"fake_{x}2{x}"] = self.shown(fake_id, x)
            visuals[f"heatmap_{x}2{y}"] = heatmap_overlay(heat, real)
            visuals[f"fake_{x}2{y}"] = fake
            partner = self.real_target[index] if self.real_target is not None else None
            if partner is not None:
                visuals[f"real_{y}"] = self.shown(partner, y)
            visuals[f"heatmap_{x}2{y}2{x}"] = heatmap_overlay(heat_rec, fake)
            visuals[f"fake_{x}2{y}2{x}"] = self.shown(rec, x)
            results.append(ImageResult(Path(path).stem, visuals, outputs=outputs, sources=sources))
        return results

"""Cross-band generation by Gatys-style neural style transfer.

train.py: the mean Gram matrices of the target band (B) training images, overall and per land-cover
category, saved to checkpoints/NAME/latest_gram.pth.
test.py: each source image (A) is optimized by backpropagation against
``lambda_style * style + lambda_content * content``, with the style target taken from the saved mean
Gram (``total``), the paired real target image (``real``) or a target-band training image (``style``).
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
from data.radiometry import radiometry_for, radiometry_record, to_channels, use_radiometry_record
from data.transforms import apply_preprocess, sample_params
from models.base_model import BaseModel
from models.image_optimizers import make_image_optimizer
from models.losses import content_loss, gram_matrix, style_loss
from models.vgg import NORMALIZATION, VGGFeatures, add_vgg_options, parse_layers
from util import distributed
from util.checkpoint import check_format, load_checkpoint, save_checkpoint, saved_file
from util.cli import progress
from util.device import autocast_dtype
from util.errors import SargenError
from util.results import ImageResult

logger = logging.getLogger("sargen")

GRAM_KIND = "gatys_gram"
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
        add_vgg_options(parser, "style loss")
        parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                            help="VGG arithmetic; auto = bfloat16 where the hardware has it (losses stay float32)")
        if is_train:
            return parser
        parser.add_argument("--content_layer", default="3", help="content layers, as --style_layer")
        parser.add_argument("--style_source", default="total", choices=("total", "real", "style"),
                            help="style target: mean Gram of the training target band, the paired real target, "
                                 "or one target-band training image")
        parser.add_argument("--same_category", action="store_true",
                            help="take the style of the image's land-cover category (file-name prefix)")
        parser.add_argument("--style_phase", default="train",
                            help="folder DATAROOT/STYLE_PHASE/B of the style images for --style_source style")
        parser.add_argument("--lambda_style", type=float, default=1e5, help="weight of the style loss")
        parser.add_argument("--lambda_content", type=float, default=1.0, help="weight of the content loss")
        parser.add_argument("--optimizer", default="lbfgs", choices=("adam", "lbfgs"),
                            help="lbfgs (per image, one network pass a step) or adam")
        parser.add_argument("--n_iter", type=int, default=None,
                            help=f"optimization steps (network passes); default {DEFAULT_STEPS}")
        parser.add_argument("--lr", type=float, default=None, help=f"step size; default {DEFAULT_LR}")
        parser.add_argument("--history_size", type=int, default=20, help="L-BFGS memory")
        parser.add_argument("--init", default="content", choices=("content", "noise"), help="starting image")
        parser.add_argument("--log_freq", type=int, default=10, help="record the losses every this many steps")
        parser.add_argument("--save_midResult", action="store_true", help="also save intermediate images")
        parser.add_argument("--save_epoch", type=int, default=100, help="with --save_midResult: every this many steps")
        return parser

    def __init__(self, opt):
        """Build the VGG extractor cut after the deepest layer any loss needs."""
        super().__init__(opt)
        for option, channels in (("--input_nc", opt.input_nc), ("--output_nc", opt.output_nc)):
            if channels not in (1, 3):
                raise SargenError(f"{option} {channels}: --model gatys compares VGG features of 1- or 3-channel "
                                  f"images; pick 1 or 3 bands (--bands_A/--bands_B) or use --model ugatit")
        self.style_layers = parse_layers(opt.vgg, opt.style_layer, "--style_layer")
        self.content_layers = [] if self.is_train else parse_layers(opt.vgg, opt.content_layer, "--content_layer")
        if not self.is_train:
            opt.n_iter = DEFAULT_STEPS[opt.optimizer] if opt.n_iter is None else opt.n_iter
            opt.lr = DEFAULT_LR[opt.optimizer] if opt.lr is None else opt.lr
        self.vgg = VGGFeatures(opt.vgg, opt.vgg_weights, self.style_layers + self.content_layers,
                               opt.vgg_seed).to(self.device)
        self.autocast_dtype = autocast_dtype(self.device, opt.precision)
        self.gram_path = self.save_dir / f"{opt.epoch}{GRAM_SUFFIX}"

    def metadata(self):
        """What identifies the Gram targets: backbone, weights, layers and normalization."""
        return {"backbone": self.opt.vgg, "weights": self.vgg.weights_description,
                "style_layers": list(self.style_layers), "normalization": NORMALIZATION}

    def result_notes(self):
        """The settings shown on the results page."""
        opt = self.opt
        return [f"VGG {opt.vgg}, weights {self.vgg.weights_description}, style layers {','.join(self.style_layers)}, "
                f"content layers {','.join(self.content_layers)}",
                f"style source {opt.style_source}{' (same category)' if opt.same_category else ''}, "
                f"optimizer {opt.optimizer}, {opt.n_iter} steps, lr {opt.lr}, init {opt.init}, "
                f"lambda_style {opt.lambda_style:g}, lambda_content {opt.lambda_content:g}, "
                f"precision {self.autocast_dtype or torch.float32}"]

    def features(self, images, precision=True):
        """VGG features of [-1, 1] images (as [0, 1]), in the chosen precision unless told otherwise."""
        images01 = (images + 1.0) / 2.0
        dtype = self.autocast_dtype if precision else None
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            return self.vgg(images01)

    def grams(self, features):
        """The float32 Gram matrix of each style layer."""
        return {name: gram_matrix(features[name]) for name in self.style_layers}

    # ---- train.py: the mean Gram of the target band -------------------------------------------

    def setup(self):
        """Before testing, load the saved Gram file if the style source needs it."""
        if self.is_train:
            self.sums, self.image_size = {}, None
        elif self.opt.style_source == "total":
            self.saved_grams = self.load_grams(saved_file(self.save_dir, self.opt.epoch, GRAM_SUFFIX, "Gram file"))
        if not self.is_train and self.opt.style_source == "style":
            self.style_paths = list_image_files(Path(self.opt.dataroot) / self.opt.style_phase / "B",
                                                what="style images (--style_source style)")

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
        grams = self.grams(self.features(self.real_B, precision=False))
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
            "kind": GRAM_KIND, **self.metadata(),
            "gram_formula": "F F^T / (C H W)",
            "image_size": self.image_size, "image_count": image_count,
            "categories": dict(sorted(counts.items())),
            "gram": {name: (sums[("gram", name)] / image_count).float() for name in self.style_layers},
            "category_gram": {category: {name: (sums[("category", category, name)] / count).float()
                                         for name in self.style_layers}
                              for category, count in sorted(counts.items())},
            "dataroot": str(self.opt.dataroot),
            "radiometry": radiometry_record(self.opt),
        }
        save_checkpoint(payload, self.gram_path)
        logger.info("saved the mean Gram of %d images (%s) to %s", image_count,
                    ", ".join(f"{key} {value}" for key, value in payload["categories"].items()), self.gram_path)

    # ---- test.py: image optimization ------------------------------------------------------------

    def load_grams(self, path):
        """Load a Gram file, refusing one made with another backbone, weights or layers."""
        payload = check_format(load_checkpoint(path, "Gram file"), path, GRAM_KIND)
        expected = self.metadata()
        for key in ("backbone", "weights", "style_layers"):
            if payload.get(key) != expected[key]:
                raise SargenError(f"Gram file {path} was made with {key} {payload.get(key)} but this test uses "
                                  f"{expected[key]}: rerun train.py with the same --vgg/--vgg_weights/--style_layer "
                                  f"or test with the file's settings")
        use_radiometry_record(self.opt, payload.get("radiometry"), path)
        return payload

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
                return self.grams(self.features(real_B.to(self.real_A), precision=False)), None
        if source == "style":
            style_images = torch.stack([self.load_style_image(path, category)
                                        for path, category in zip(self.image_paths, self.categories)])
            style_images = style_images.to(self.real_A)
            with torch.no_grad():
                return self.grams(self.features(style_images, precision=False)), style_images
        per_image = [self.saved_category_grams(category) for category in self.categories]
        return {name: torch.stack([grams[name] for grams in per_image]).to(self.device)
                for name in self.style_layers}, None

    def saved_category_grams(self, category):
        """The saved mean Gram of `category` with --same_category, else of all training images."""
        if self.opt.same_category:
            if category in self.saved_grams["category_gram"]:
                return self.saved_grams["category_gram"][category]
            logger.warning("no training images of category '%s': using the overall mean Gram", category)
        return self.saved_grams["gram"]

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
        """The starting images in [-1, 1]: the content images or seeded noise, with output_nc channels."""
        content = to_channels(self.real_A, self.opt.output_nc)
        if self.opt.init == "content":
            return content.clone()
        generator = torch.Generator().manual_seed(self.opt.seed)
        return (torch.rand(content.shape, generator=generator) * 2.0 - 1.0).to(content)

    def losses(self, images, content_targets, style_targets, precision=True):
        """Per-image total, style and content losses of [-1, 1] images."""
        features = self.features(images, precision)
        style = style_loss(self.grams(features), style_targets)
        content = content_loss({name: features[name] for name in self.content_layers}, content_targets)
        total = self.opt.lambda_style * style + self.opt.lambda_content * content
        return total, style, content

    def test(self):
        """Optimize the batch's images and record their loss curves and intermediate images."""
        opt = self.opt
        style_targets, self.style_images = self.style_targets()
        with torch.no_grad():
            content_features = self.features(self.real_A, precision=False)
            content_targets = {name: content_features[name] for name in self.content_layers}
        images = self.initial_images().requires_grad_(True)
        optimizer = make_image_optimizer(opt.optimizer, images, opt.lr, opt.history_size)
        self.curves = [[] for _ in range(images.shape[0])]
        self.intermediate = OrderedDict()
        self.start_time = time.perf_counter()
        for step in progress(range(opt.n_iter), desc="optimizing", unit="step", leave=False):
            optimizer.zero_grad(set_to_none=True)
            total, style, content = self.losses(images, content_targets, style_targets)
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
            self.final_losses = self.losses(self.fake_B, content_targets, style_targets, precision=False)
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
            visuals = OrderedDict(real_A=self.real_A[index], fake_B=self.fake_B[index])
            scalars = {"total": float(total[index]), "style": float(style[index]), "content": float(content[index])}
            real_B = self.real_B[index]
            if real_B is not None:
                visuals["real_B"] = real_B
                fake01, real01 = (self.fake_B[index].cpu() + 1) / 2, (real_B.cpu() + 1) / 2
                if fake01.shape == real01.shape:
                    scalars["mse_real_B"] = float(((fake01 - real01) ** 2).mean())
            if self.style_images is not None:
                visuals["style_B"] = self.style_images[index]
            for label, images in self.intermediate.items():
                visuals[label] = images[index]
            results.append(ImageResult(Path(path).stem, visuals, scalars, self.curves[index]))
        return results

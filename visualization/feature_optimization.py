"""The activation-maximization engine behind ContentVisualization.py and StyleVisualization.py.

Starting from noise, each image is optimized by backpropagation so that one VGG feature responds strongly:
- ``content``: one image per channel c, maximizing the channel's mean activation over the image.
- ``style``: one image per Gram element (i, j), i <= j, maximizing the mean over pixels of the product of the
  channel maps i and j. That is C times the element (i, j) of ``models.losses.gram_matrix`` of the layer
  (C = the layer's channel count), and it is computed with that function; the logs give both.

All images of a layer are optimized as one batch (chunks of ``--max_batch``). Each image has its own objective
and its own starting noise (seeded by target), the optimizer (Adam) works element by element, and the random
transforms are shared by the whole batch, so a batched run gives the images of one-at-a-time runs. The network
is run once per step, stops at the chosen layer, and its last convolution computes only the channels each
image needs (``models.vgg.ChannelSelectedVGG``).

Image parametrizations (``--param``):
- ``fourier`` (default): a decorrelated one. The image is the sigmoid of an inverse real FFT of a spectrum
  scaled by 1/f, mixed by the square root of ImageNet's colour covariance. Gradient steps then favour
  coarse, natural-looking structure instead of pixel noise.
- ``pixel``: the image itself, clamped to [0, 1] after each Adam step: the original method.
Transformation robustness: each step the image is translated by up to ``--jitter`` pixels (reflected border)
and rescaled by a random factor within ``--scale``. ``--tv_weight`` adds a total-variation penalty; the
objective is divided by the layer's typical value on fixed reference images first, so one weight suits every
layer and weights file.

Defaults, chosen by looking at grids of random-weight VGG16 layers 3-15 (offline, no ImageNet weights):
``fourier``, Adam lr 0.05, jitter im_size/16 px, scale 0.1, tv_weight 0.5 (2.0 flattens the images, 0.1 changes
little; a larger jitter trims the border artefacts of zero padding); 500 steps. ``--param pixel`` sets jitter,
scale and tv_weight to 0 and lr to 0.01 unless given: the original method, whose images stay mostly noise.
"""

import argparse
import logging
import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data.image_io import tensor_to_uint8, write_image
from models.losses import gram_matrix, total_variation
from models.vgg import (
    ChannelSelectedVGG,
    add_vgg_weight_options,
    calibration_images,
    last_conv_index,
    layer_names,
    load_vgg_features,
    parse_layers,
)
from options.base_options import format_options, save_options, seed_everything
from options.number_types import (
    batch_count,
    fraction,
    integer,
    network_side,
    non_negative_int,
    positive_int,
    rate,
    seed,
    step_count,
    weight,
)
from util.cli import ArgumentParser, progress
from util.device import autocast_dtype, parse_gpu_ids, select_device
from util.errors import SargenError
from util.fileio import write_text_atomic
from util.html import HTMLPage, format_value

logger = logging.getLogger("sargen")

PARAMETRIZATIONS = ("fourier", "pixel")
MODELS = {"VGG16": "vgg16", "VGG19": "vgg19"}
DEFAULT_LR = {"fourier": 0.05, "pixel": 0.01}
DEFAULT_IM_SIZE = {"content": 64, "style": 32}
DEFAULT_JITTER = "im_size/16"
DEFAULT_SCALE = 0.1
DEFAULT_TV_WEIGHT = 0.5
OBJECTIVE_TEXT = {"content": "mean activation of the channel",
                  "style": "mean over pixels of the product of channel maps i and j (= C x Gram element (i, j))"}
GRID_TEXT = {"content": "grid: one cell per channel, in reading order, each labelled with its channel index and final "
                        "objective",
             "style": "grid: row i, column j over the chosen channels, upper triangle (i <= j), each cell labelled "
                      "with its pair (i, j) and final objective; blank below"}
LOG_NAME = "objective_log.txt"
CELL_GAP = 2
GRID_DISPLAY_WIDTH = 512
# Enough starting contrast that most channels (and channel pairs) are active somewhere: a pair whose
# maps never overlap has a zero gradient and would stay blank.
FOURIER_INIT_STD = 0.2
# Square root of ImageNet's RGB covariance (Olah et al., Feature Visualization, 2017), columns scaled to norm <= 1.
COLOR_CORRELATION_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_MIXING = COLOR_CORRELATION_SQRT / COLOR_CORRELATION_SQRT.norm(dim=0).max()


@dataclass(frozen=True)
class Settings:
    """How the images of one layer are optimized."""

    kind: str = "content"
    n_iter: int = 500
    lr: float = 0.05
    param: str = "fourier"
    im_size: int = 64
    input_nc: int = 3
    jitter: int = 4
    scale: float = 0.1
    tv_weight: float = 0.5
    max_batch: int = 32
    seed: int = 0
    save_epoch: int = 0


@dataclass(frozen=True)
class Target:
    """One image to optimize: the channel (content) or channel pair (style) it maximizes, and its trial."""

    channels: tuple
    trial: int = 0

    @property
    def file_name(self):
        """channel_C_trial_T.png or channel_I_J_trial_T.png."""
        return f"channel_{'_'.join(str(channel) for channel in self.channels)}_trial_{self.trial}.png"

    def seed(self, base_seed):
        """The seed of this target's starting noise, the same whatever batch it is optimized in."""
        return zlib.crc32(f"{base_seed}:{self.trial}:{self.channels}".encode())


@dataclass
class LayerResult:
    """The optimized images of one layer's targets and their objectives."""

    layer_index: int
    layer_name: str
    channel_count: int
    channels: list
    targets: list
    images: torch.Tensor
    history: torch.Tensor
    final_objective: torch.Tensor

    @property
    def start_objective(self):
        """Each image's objective on its starting noise (as seen through the first step's transform)."""
        return self.history[0]


# ---------------------------------------------------------------- targets and objectives


def make_targets(kind, channels, n_trial):
    """One target per channel (content) or per pair i <= j of `channels` (style), for each trial."""
    if kind == "content":
        keys = [(channel,) for channel in channels]
    else:
        keys = [(first, second) for position, first in enumerate(channels) for second in channels[position:]]
    return [Target(key, trial) for trial in range(n_trial) for key in keys]


def objective_values(activations):
    """Each image's objective from its selected activations (B x K x H x W, K = 1 or 2), in float32.

    K = 1: the channel's mean activation. K = 2: the mean of the product of the two channel maps, i.e. twice
    the off-diagonal element of the 2 x 2 Gram matrix of the pair (gram_matrix divides by the K = 2 channels).
    """
    if activations.shape[1] == 1:
        return activations.float().mean(dim=(1, 2, 3))
    return 2.0 * gram_matrix(activations)[:, 0, 1]


def channel_tensor(targets, device):
    """The B x K channel indices of `targets` (K = 2 for pairs, including i = j)."""
    return torch.tensor([target.channels for target in targets], dtype=torch.long, device=device)


def reference_scale(network, kind, channel_count, im_size, seed, device):
    """The layer's typical objective on fixed reference images, so that --tv_weight means the same everywhere."""
    images = calibration_images(seed, size=im_size).to(device)
    with torch.no_grad():
        activations = network(images, torch.arange(channel_count, device=device).expand(len(images), -1))
    typical = activations.float().abs().mean() if kind == "content" else activations.float().pow(2).mean()
    return typical.clamp_min(1e-8)


# ---------------------------------------------------------------- image parametrizations


class PixelImages(nn.Module):
    """Images as their own pixels, kept in [0, 1] by clamping after each step (the original method)."""

    def __init__(self, noise):
        """Start from uniform noise in [0, 1] (B x C x H x W)."""
        super().__init__()
        self.pixels = nn.Parameter(noise.clone())

    @staticmethod
    def initial_noise(generator, channels, size):
        """One image's starting noise."""
        return torch.rand(channels, size, size, generator=generator)

    def forward(self):
        """The images, B x C x H x W in [0, 1]."""
        return self.pixels

    @torch.no_grad()
    def project(self):
        """Clamp the pixels to [0, 1]."""
        self.pixels.clamp_(0.0, 1.0)


class FourierImages(nn.Module):
    """Images as 1/f-scaled spectra with decorrelated colours, through a sigmoid into (0, 1)."""

    def __init__(self, noise, decay_power=1.0):
        """Start from small random spectra (B x C x H x W//2+1 x 2, real and imaginary parts)."""
        super().__init__()
        self.spectrum = nn.Parameter(noise.clone())
        self.size = noise.shape[2]
        frequencies = torch.sqrt(torch.fft.fftfreq(self.size)[:, None] ** 2
                                 + torch.fft.rfftfreq(self.size)[None, :] ** 2)
        self.register_buffer("frequency_scale", 1.0 / frequencies.clamp_min(1.0 / self.size) ** decay_power)

    @staticmethod
    def initial_noise(generator, channels, size):
        """One image's starting spectrum: small Gaussian noise, so the image starts near uniform grey."""
        return FOURIER_INIT_STD * torch.randn(channels, size, size // 2 + 1, 2, generator=generator)

    def forward(self):
        """The images, B x C x H x W in (0, 1)."""
        spectrum = torch.view_as_complex(self.spectrum) * self.frequency_scale.to(self.spectrum.device)
        images = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4.0
        if images.shape[1] == 3:
            images = torch.einsum("dc,bchw->bdhw", COLOR_MIXING.to(images.device), images)
        return torch.sigmoid(images)

    def project(self):
        """Nothing to do: the sigmoid keeps images in range."""


PARAMETRIZATION_CLASSES = {"pixel": PixelImages, "fourier": FourierImages}


def make_images(targets, settings, device):
    """The parametrized images of `targets`, each from its own seeded noise."""
    image_class = PARAMETRIZATION_CLASSES[settings.param]
    noise = [image_class.initial_noise(torch.Generator().manual_seed(target.seed(settings.seed)),
                                       settings.input_nc, settings.im_size) for target in targets]
    return image_class(torch.stack(noise)).to(device)


# ---------------------------------------------------------------- transforms and penalty


def random_transform(images, jitter, scale, generator):
    """Translate by up to `jitter` px (reflected border) and rescale by up to `scale`, the same for the whole batch."""
    if jitter > 0:
        size = images.shape[-1]
        shift = torch.randint(0, 2 * jitter + 1, (2,), generator=generator).tolist()
        padded = nn.functional.pad(images, (jitter,) * 4, mode="reflect")
        images = padded[:, :, shift[0]:shift[0] + size, shift[1]:shift[1] + size]
    if scale > 0:
        factor = math.exp((2.0 * torch.rand((), generator=generator).item() - 1.0) * math.log1p(scale))
        new_size = max(1, round(images.shape[-1] * factor))
        if new_size != images.shape[-1]:
            images = nn.functional.interpolate(images, size=(new_size, new_size), mode="bilinear",
                                               align_corners=False)
    return images


# ---------------------------------------------------------------- optimization


class FeatureVisualizer:
    """Optimizes images for the channels or Gram pairs of VGG layers, chunk by chunk."""

    def __init__(self, backbone, weights, settings, device="cpu", precision="auto", vgg_seed=0):
        """Load the VGG weights once; layers are cut from them on demand."""
        self.backbone = backbone
        self.settings = settings
        self.device = torch.device(device)
        self.autocast_dtype = autocast_dtype(self.device, precision)
        self.features, self.weights_description = load_vgg_features(backbone, weights, vgg_seed)
        self.features.requires_grad_(False).eval().to(device)
        logger.info("VGG %s, weights %s, arithmetic %s", backbone, self.weights_description,
                    self.autocast_dtype or torch.float32)

    def layer_network(self, layer_index):
        """The network cut after `layer_index` with a channel-selecting last convolution."""
        return ChannelSelectedVGG(self.features, layer_index).to(self.device)

    def channel_count(self, layer_index):
        """How many channels the layer at `layer_index` has."""
        return self.features[last_conv_index(self.features, layer_index)].out_channels

    def activations(self, network, images, channels):
        """The selected activations, under bfloat16 autocast where chosen."""
        if self.autocast_dtype is None:
            return network(images, channels)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype):
            return network(images, channels)

    def optimize_chunk(self, network, targets, scale, on_step=None):
        """Optimize the images of `targets` together; returns (images, objective history, final objective).

        The history holds, for each step, the objective each image had when that step began (the first row is
        the starting noise's); the final objective is the optimized images' own, untransformed.
        on_step(step, parametrization) is called after each step (for intermediate saves).
        """
        settings = self.settings
        parametrization = make_images(targets, settings, self.device)
        optimizer = torch.optim.Adam(parametrization.parameters(), lr=settings.lr)
        channels = channel_tensor(targets, self.device)
        generator = torch.Generator().manual_seed(settings.seed)
        history = []
        for step in range(1, settings.n_iter + 1):
            optimizer.zero_grad(set_to_none=True)
            images = parametrization()
            seen = random_transform(images, settings.jitter, settings.scale, generator)
            objective = objective_values(self.activations(network, seen, channels))
            history.append(objective.detach())
            loss = -objective / scale
            if settings.tv_weight > 0:
                loss = loss + settings.tv_weight * total_variation(images)
            loss.sum().backward()
            optimizer.step()
            parametrization.project()
            if on_step is not None:
                on_step(step, parametrization)
        with torch.no_grad():
            images = parametrization().float()
            final = objective_values(self.activations(network, images, channels))
        return images.cpu(), torch.stack(history).cpu(), final.cpu()

    def run_layer(self, layer_index, channels, n_trial=1, on_chunk=None, on_step=None):
        """Optimize every target of one layer in chunks of --max_batch; returns a LayerResult.

        on_chunk(count) is called after each chunk with its number of images; on_step(step, chunk_start,
        parametrization) after each step.
        """
        settings = self.settings
        network = self.layer_network(layer_index)
        count = self.channel_count(layer_index)
        scale = reference_scale(network, settings.kind, count, settings.im_size, settings.seed, self.device)
        targets = make_targets(settings.kind, channels, n_trial)
        images, histories, finals = [], [], []
        for chunk_start in range(0, len(targets), settings.max_batch):
            chunk = targets[chunk_start:chunk_start + settings.max_batch]
            step_callback = None if on_step is None else (
                lambda step, parametrization, offset=chunk_start: on_step(step, offset, parametrization))
            chunk_images, history, final = self.optimize_chunk(network, chunk, scale, step_callback)
            images.append(chunk_images)
            histories.append(history)
            finals.append(final)
            if on_chunk is not None:
                on_chunk(len(chunk))
        return LayerResult(layer_index, layer_names(self.backbone)[layer_index], count, list(channels), targets,
                           torch.cat(images), torch.cat(histories, dim=1), torch.cat(finals))


# ---------------------------------------------------------------- option checks


def resolve_model(text):
    """The torchvision backbone of --model VGG16|VGG19 (any case)."""
    key = str(text).upper()
    if key not in MODELS:
        raise SargenError(f"--model {text}: choose one of {', '.join(MODELS)}")
    return MODELS[key]


def layer_indices(backbone, text):
    """`features` indices of --layers_ids (indices like 15 or names like relu3_3), in the given order."""
    if not str(text).strip():
        raise SargenError(f"--layers_ids is empty: give {backbone} features indices "
                          f"0-{len(layer_names(backbone)) - 1} or names like relu3_3")
    names = layer_names(backbone)
    return list(dict.fromkeys(names.index(name) for name in parse_layers(backbone, text, "--layers_ids", False)))


def select_channels(text, n_channels, channel_count, layer_label):
    """The channels to visualize: --channels (numbers or 'all') if given, else the first --n_channels."""
    if text is None or not str(text).strip():
        if not 1 <= n_channels <= channel_count:
            raise SargenError(f"--n_channels {n_channels}: {layer_label} has {channel_count} channels: "
                              f"use 1-{channel_count} (or --channels all)")
        return list(range(n_channels))
    if str(text).strip().lower() == "all":
        return list(range(channel_count))
    parts = [part.strip() for part in str(text).split(",") if part.strip()]
    if not all(re.fullmatch(r"\d+", part) for part in parts):
        raise SargenError(f"--channels {text}: give comma-separated channel numbers 0-{channel_count - 1} or 'all'")
    channels = list(dict.fromkeys(int(part) for part in parts))
    outside = [channel for channel in channels if channel >= channel_count]
    if outside:
        raise SargenError(f"--channels {outside[0]}: {layer_label} has {channel_count} channels: "
                          f"use 0-{channel_count - 1}")
    return channels


def check_image_size(backbone, layer_index, im_size, scale):
    """Refuse an --im_size too small to reach the layer through its max-poolings (after downscaling)."""
    names = layer_names(backbone)
    poolings = sum(1 for name in names[:layer_index + 1] if name.startswith("pool"))
    smallest = math.floor(im_size / (1.0 + scale)) if scale > 0 else im_size
    if smallest < 2 ** poolings:
        minimum = math.ceil(2 ** poolings * (1.0 + scale))
        raise SargenError(f"--im_size {im_size} is too small for {names[layer_index]} (layer {layer_index}) "
                          f"after {poolings} poolings: use at least {minimum}")


def layer_label(backbone, layer_index):
    """A layer as shown to users: 'relu3_3 (layer 15)'."""
    return f"{layer_names(backbone)[layer_index]} (layer {layer_index})"


# ---------------------------------------------------------------- grids, logs, pages


def layer_dir(model_dir, layer_index):
    """results/NAME/MODEL/Layer_K."""
    return Path(model_dir) / f"Layer_{layer_index}"


def grid_name(trial):
    """grid.png for the first trial, grid_trial_T.png for the others."""
    return "grid.png" if trial == 0 else f"grid_trial_{trial}.png"


def grid_shape(kind, count):
    """(rows, columns) of a grid of `count` channels: square for content, count x count for style pairs."""
    if kind == "style":
        return count, count
    columns = math.ceil(math.sqrt(count))
    return math.ceil(count / columns), columns


def grid_cells(kind, channels, targets):
    """(row, column) of each target in its grid: reading order for channels, (i, j) positions for pairs."""
    if kind == "content":
        columns = grid_shape(kind, len(channels))[1]
        return [divmod(channels.index(target.channels[0]), columns) for target in targets]
    return [(channels.index(target.channels[0]), channels.index(target.channels[1])) for target in targets]


def grid_description(kind, channels):
    """How a grid is laid out, in words."""
    listed = ",".join(map(str, channels))
    if kind == "content":
        return f"channels {listed} in reading order, {grid_shape(kind, len(channels))[1]} per row"
    return f"row i, column j (upper triangle, i <= j) over channels {listed}; cells below the diagonal are blank"


def make_grid(images, cells, shape, gap=CELL_GAP):
    """A uint8 mosaic of CxHxW [0, 1] `images` at their (row, column) `cells`; empty cells stay white."""
    rows, columns = shape
    channel_count, height, width = images.shape[1:]
    mosaic = np.full(((height + gap) * rows - gap, (width + gap) * columns - gap, channel_count), 255, np.uint8)
    for image, (row, column) in zip(images, cells):
        top, left = row * (height + gap), column * (width + gap)
        mosaic[top:top + height, left:left + width] = tensor_to_uint8(image).reshape(height, width, channel_count)
    return mosaic


def write_layer(result, settings, model_dir, n_trial):
    """Write one layer's images, grids and objective log to Layer_K/."""
    directory = layer_dir(model_dir, result.layer_index)
    for target, image in zip(result.targets, result.images):
        write_image(image, directory / target.file_name)
    shape = grid_shape(settings.kind, len(result.channels))
    for trial in range(n_trial):
        members = [index for index, target in enumerate(result.targets) if target.trial == trial]
        targets = [result.targets[index] for index in members]
        cells = grid_cells(settings.kind, result.channels, targets)
        write_image(make_grid(result.images[members], cells, shape), directory / grid_name(trial))
    write_text_atomic(directory / LOG_NAME, objective_log(result, settings))
    return directory


def objective_log(result, settings):
    """The per-target objectives of one layer, as text."""
    what = OBJECTIVE_TEXT[settings.kind]
    lines = [f"# {result.layer_name} (layer {result.layer_index}), {result.channel_count} channels",
             f"# objective: {what}",
             f"# param {settings.param}, n_iter {settings.n_iter}, lr {settings.lr}, im_size {settings.im_size}, "
             f"jitter {settings.jitter}, scale {settings.scale}, tv_weight {settings.tv_weight}"]
    lines.append(f"# grid: {grid_description(settings.kind, result.channels)}")
    header = "channel\ttrial\tstart\tfinal" + ("\tgram_element" if settings.kind == "style" else "")
    lines.append(header)
    for target, start, final in zip(result.targets, result.start_objective.tolist(),
                                     result.final_objective.tolist()):
        row = [",".join(map(str, target.channels)), str(target.trial), format_value(start), format_value(final)]
        if settings.kind == "style":
            row.append(format_value(final / result.channel_count))
        lines.append("\t".join(row))
    return "\n".join(lines) + "\n"


def layer_grids(model_dir):
    """(layer index, [grid file names]) of every Layer_K folder with a grid, by index."""
    found = []
    for directory in Path(model_dir).glob("Layer_*"):
        match = re.fullmatch(r"Layer_(\d+)", directory.name)
        grids = sorted(path.name for path in directory.glob("grid*.png") if not path.name.startswith("."))
        if match and grids:
            found.append((int(match.group(1)), grids))
    return sorted(found)


def read_objective_log(path):
    """[(Target, final objective)] of a layer's objective log, in its order (an unreadable log: none)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    found = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) >= 4 and re.fullmatch(r"\d+(,\d+)?", parts[0]) and parts[1].isdigit():
            found.append((Target(tuple(int(part) for part in parts[0].split(",")), int(parts[1])), float(parts[3])))
    return found


def labelled_grid(kind, objectives, trial, layer_name):
    """(rows of (image, caption) cells laid out as the grid PNG, column labels, row labels) of one trial: each
    cell names its channel (content) or channel pair (i, j) (style) and its final objective."""
    entries = [(target, final) for target, final in objectives if target.trial == trial]
    channels = list(dict.fromkeys(target.channels[0] for target, _ in entries))
    rows, columns = grid_shape(kind, len(channels))
    cells = [[None] * columns for _ in range(rows)]
    targets = [target for target, _ in entries]
    for (target, final), (row, column) in zip(entries, grid_cells(kind, channels, targets)):
        name = f"channel {target.channels[0]}" if kind == "content" else f"({target.channels[0]}, {target.channels[1]})"
        cells[row][column] = (f"{layer_name}/{target.file_name}", f"{name}\n{format_value(final)}")
    if kind == "content":
        return cells, None, None
    return cells, [f"j = {channel}" for channel in channels], [f"i = {channel}" for channel in channels]


def write_index(model_dir, backbone, title, notes, kind, width=GRID_DISPLAY_WIDTH):
    """index.html in MODEL/ showing every layer folder there (earlier runs' too): each trial's grid as a table
    whose cells name their channel or pair (i, j) and final objective, linking the clean grid PNG and the log."""
    page = HTMLPage(model_dir, title)
    for note in notes:
        page.add_text(note)
    names = layer_names(backbone)
    for layer_index, grids in layer_grids(model_dir):
        name = names[layer_index] if layer_index < len(names) else "?"
        folder = f"Layer_{layer_index}"
        objectives = read_objective_log(model_dir / folder / LOG_NAME)
        page.add_header(f"{folder}: {name}")
        page.add_links([(f"{folder}/{grid}", f"{grid} (unlabelled)") for grid in grids]
                       + [(f"{folder}/{LOG_NAME}", "objective log")])
        for trial in sorted({target.trial for target, _ in objectives}):
            cells, column_labels, row_labels = labelled_grid(kind, objectives, trial, folder)
            if trial or len(grids) > 1:
                page.add_text(f"trial {trial}")
            page.add_image_grid(cells, max(48, min(128, width // max(1, len(cells[0])))), column_labels, row_labels)
    return page.save()


def write_intermediate(directory, targets, parametrization, step):
    """Save the current images of `targets` as channel_..._trial_T_iter_S.png."""
    with torch.no_grad():
        images = parametrization().float().cpu()
    for target, image in zip(targets, images):
        write_image(image, Path(directory) / target.file_name.replace(".png", f"_iter_{step}.png"))


# ---------------------------------------------------------------- options and the run of a script


def add_options(parser, kind):
    """The options of ContentVisualization.py (kind 'content') or StyleVisualization.py ('style')."""
    parser.add_argument("--model", default="VGG16", help="VGG16 or VGG19 (any case)")
    parser.add_argument("--layers_ids", default="3",
                        help="comma-separated indices into torchvision's VGG `features` (e.g. 15,22) "
                             "or layer names (relu3_3)")
    parser.add_argument("--n_channels", type=integer(1, 65536), default=16, help="visualize the first N channels")
    parser.add_argument("--channels", default=None,
                        help="explicit comma-separated channel numbers, or 'all' (overrides --n_channels)")
    parser.add_argument("--n_iter", type=step_count, default=500, help="optimization steps")
    parser.add_argument("--im_size", type=network_side, default=DEFAULT_IM_SIZE[kind], help="image size (px)")
    parser.add_argument("--lr", type=rate, default=None, help=f"Adam step size; default {DEFAULT_LR}")
    parser.add_argument("--n_trial", type=positive_int, default=1,
                        help="independent runs (different starting noise) per channel or pair")
    parser.add_argument("--save_epoch", type=non_negative_int, default=0,
                        help="also save the images every this many steps (0: only the final ones)")
    parser.add_argument("--results_dir", default="./results", help="results go to RESULTS_DIR/NAME/MODEL/Layer_K")
    parser.add_argument("--name", default=f"{kind}_visualization", help="experiment name")
    parser.add_argument("--gpu_ids", default="0", help="GPU ids, e.g. 0; -1 for the CPU")
    add_vgg_weight_options(parser)
    parser.add_argument("--param", default="fourier", choices=PARAMETRIZATIONS,
                        help="fourier: decorrelated 1/f spectrum; pixel: raw pixels, the original method")
    parser.add_argument("--jitter", type=non_negative_int, default=None,
                        help=f"random translation per step, px; default {DEFAULT_JITTER} (0 for --param pixel)")
    parser.add_argument("--scale", type=fraction, default=None,
                        help=f"random rescaling per step, +-fraction; default {DEFAULT_SCALE} (0 for --param pixel)")
    parser.add_argument("--tv_weight", type=weight, default=None,
                        help=f"total-variation penalty; default {DEFAULT_TV_WEIGHT} (0 for --param pixel)")
    parser.add_argument("--input_nc", type=integer(), default=3, choices=(1, 3), help="image channels (1: grey SAR)")
    parser.add_argument("--max_batch", type=batch_count, default=32,
                        help="images optimized together; lower it if memory runs out")
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="VGG arithmetic; auto = bfloat16 where the hardware has it (objectives stay float32)")
    parser.add_argument("--torch_threads", type=integer(0, 1024), default=0,
                        help="CPU threads for torch (0: torch's default); 1 is much faster on a busy machine")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the starting noise and transforms")
    parser.add_argument("--verbose", action="store_true", help="log debugging details")
    return parser


def parse_options(kind, argv=None):
    """Parse and check a script's options; returns (opt, parser). Nothing is written yet."""
    parser = add_options(ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter), kind)
    opt = parser.parse_args(argv)
    opt.kind = kind
    opt.backbone = resolve_model(opt.model)
    opt.model = opt.model.upper()
    opt.layer_indices = layer_indices(opt.backbone, opt.layers_ids)
    original = opt.param == "pixel"
    opt.lr = DEFAULT_LR[opt.param] if opt.lr is None else opt.lr
    opt.jitter = (0 if original else max(1, opt.im_size // 16)) if opt.jitter is None else opt.jitter
    opt.scale = (0.0 if original else DEFAULT_SCALE) if opt.scale is None else opt.scale
    opt.tv_weight = (0.0 if original else DEFAULT_TV_WEIGHT) if opt.tv_weight is None else opt.tv_weight
    if opt.jitter * 2 >= opt.im_size:
        raise SargenError(f"--jitter {opt.jitter} must be less than half of --im_size {opt.im_size}")
    if opt.verbose:
        logger.setLevel(logging.DEBUG)
    opt.gpu_ids = parse_gpu_ids(opt.gpu_ids)
    opt.device = select_device(opt.gpu_ids)
    return opt, parser


def settings_from_options(opt):
    """The optimization settings of parsed options."""
    return Settings(kind=opt.kind, n_iter=opt.n_iter, lr=opt.lr, param=opt.param, im_size=opt.im_size,
                    input_nc=opt.input_nc, jitter=opt.jitter, scale=opt.scale, tv_weight=opt.tv_weight,
                    max_batch=opt.max_batch, seed=opt.seed, save_epoch=opt.save_epoch)


def plan_layers(opt, features):
    """(layer index, channels) of each requested layer, checked against the network before anything runs."""
    plan = []
    for layer_index in opt.layer_indices:
        label = layer_label(opt.backbone, layer_index)
        count = features[last_conv_index(features, layer_index)].out_channels
        check_image_size(opt.backbone, layer_index, opt.im_size, opt.scale)
        plan.append((layer_index, select_channels(opt.channels, opt.n_channels, count, label)))
    return plan


def visualize(opt, parser):
    """Run a script: optimize every layer's images with a progress bar, write the layers, index and options."""
    seed_everything(opt.seed)
    if opt.torch_threads > 0:
        torch.set_num_threads(opt.torch_threads)
    logger.info(format_options(opt, parser))
    settings = settings_from_options(opt)
    visualizer = FeatureVisualizer(opt.backbone, opt.vgg_weights, settings, opt.device, opt.precision, opt.vgg_seed)
    plan = plan_layers(opt, visualizer.features)
    model_dir = Path(opt.results_dir) / opt.name / opt.model
    save_options(opt, parser, model_dir / f"{opt.kind}_opt.txt")
    total = sum(len(make_targets(opt.kind, channels, opt.n_trial)) for _, channels in plan)
    with progress(total=total, desc=f"{opt.kind} visualization", unit="image") as bar:
        for layer_index, channels in plan:
            bar.set_postfix_str(layer_label(opt.backbone, layer_index))
            on_step = None
            if opt.save_epoch > 0:
                targets = make_targets(opt.kind, channels, opt.n_trial)
                directory = layer_dir(model_dir, layer_index)

                def on_step(step, offset, parametrization, targets=targets, directory=directory):
                    if step % opt.save_epoch == 0:
                        count = parametrization.forward().shape[0]
                        write_intermediate(directory, targets[offset:offset + count], parametrization, step)

            result = visualizer.run_layer(layer_index, channels, opt.n_trial, on_chunk=bar.update, on_step=on_step)
            directory = write_layer(result, settings, model_dir, opt.n_trial)
            logger.info("%s: mean objective %.4g -> %.4g, %s", layer_label(opt.backbone, layer_index),
                        result.start_objective.mean().item(), result.final_objective.mean().item(), directory)
    title = f"{opt.kind.capitalize()} visualization: {opt.name}, {opt.model}"
    notes = [f"weights {visualizer.weights_description}; objective: {OBJECTIVE_TEXT[opt.kind]}",
             f"param {opt.param}, n_iter {opt.n_iter}, lr {opt.lr}, im_size {opt.im_size}, jitter {opt.jitter}, "
             f"scale {opt.scale}, tv_weight {opt.tv_weight}, input_nc {opt.input_nc}",
             GRID_TEXT[opt.kind]]
    logger.info("results page: %s", write_index(model_dir, opt.backbone, title, notes, opt.kind))

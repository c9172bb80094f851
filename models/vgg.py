"""The VGG feature extractor shared by every script: backbones, weights policy, layer names, truncation.

Weights (``--vgg_weights``):
- ``imagenet``: torchvision's ImageNet weights through its weights API and cache (TORCH_HOME,
  by default ~/.cache/torch/hub/checkpoints/vgg19-dcbb9e9d.pth or vgg16-397923af.pth).
- ``random``: seeded He initialisation, then each convolution is rescaled so that its ReLU output has
  unit variance on a fixed set of typical (smooth, speckled) inputs. Plain random initialisation makes
  deep features vanish and the style loss barely moves.
- ``PATH``: a local file holding a torchvision VGG state dict (``features.N.weight`` ...) or just the
  ``features`` part (``N.weight`` ...).
"""

import functools
import hashlib
import logging
from pathlib import Path

import torch
import torchvision
from torch import nn

from options.number_types import seed
from util.checkpoint import load_checkpoint
from util.errors import SargenError

logger = logging.getLogger("sargen")

BACKBONES = ("vgg16", "vgg19")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATION = "imagenet mean/std on [0, 1] RGB"
TORCHVISION_CONFIGS = {"vgg16": "D", "vgg19": "E"}


def build_architecture(backbone):
    """torchvision's VGG `features` module for `backbone` (its own layer table), untrained."""
    if backbone not in BACKBONES:
        raise SargenError(f"unknown VGG backbone '{backbone}': choose one of {', '.join(BACKBONES)}")
    # Only `features` is built: the classifier's 120 M parameters would take seconds to initialise.
    configuration = torchvision.models.vgg.cfgs[TORCHVISION_CONFIGS[backbone]]
    return torchvision.models.vgg.make_layers(configuration, batch_norm=False)


@functools.cache
def layer_names(backbone):
    """Names of the modules of `features` in order: conv1_1, relu1_1, ..., pool1, conv2_1, ..."""
    if backbone not in BACKBONES:
        raise SargenError(f"unknown VGG backbone '{backbone}': choose one of {', '.join(BACKBONES)}")
    names, block, position = [], 1, 1
    for entry in torchvision.models.vgg.cfgs[TORCHVISION_CONFIGS[backbone]]:
        if entry == "M":
            names.append(f"pool{block}")
            block, position = block + 1, 1
        else:
            names += [f"conv{block}_{position}", f"relu{block}_{position}"]
            position += 1
    return tuple(names)


def block_layers(backbone):
    """The last ReLU of each of the five blocks (block index 0-4), e.g. relu3_4 for vgg19."""
    names = layer_names(backbone)
    return [names[names.index(f"pool{block}") - 1] for block in range(1, 6)]


def resolve_layer(backbone, spec, block_indices=True):
    """A layer name from a block index 0-4 (or, with block_indices=False, a `features` index) or a name."""
    names = layer_names(backbone)
    spec = str(spec).strip()
    if spec.isdigit():
        index = int(spec)
        valid = block_layers(backbone) if block_indices else names
        if index >= len(valid):
            kind = "block indices 0-4" if block_indices else f"features indices 0-{len(names) - 1}"
            raise SargenError(f"layer {spec} does not exist in {backbone}: use {kind} or a name like relu4_2")
        return valid[index]
    if spec not in names:
        raise SargenError(f"unknown {backbone} layer '{spec}': valid names are {', '.join(names)}")
    return spec


def parse_layers(backbone, text, option, block_indices=True):
    """A list of layer names from a comma-separated option value."""
    parts = [part for part in str(text).split(",") if part.strip()]
    if not parts:
        raise SargenError(f"{option} is empty: give block indices 0-4 or layer names")
    try:
        return [resolve_layer(backbone, part, block_indices) for part in parts]
    except SargenError as error:
        raise SargenError(f"{option}: {error}") from None


FALLBACK_OPTIONS = {"vgg": "vgg19", "vgg_weights": "imagenet", "vgg_seed": 0, "style_layer": "0,1,2,3,4"}


def default_help(value, recorded_in=None):
    """The end of an option's help: its default, or that it defaults to what `recorded_in` recorded, else `value`."""
    return "" if recorded_in is None else f" (default: as recorded in {recorded_in}, else {value})"


def add_vgg_weight_options(parser, recorded_in=None):
    """Add --vgg_weights and --vgg_seed: the weights policy of load_vgg_features.

    With `recorded_in` (e.g. "the Gram file") they default to None: the caller fills them from that record.
    """
    recorded = recorded_in is not None
    parser.add_argument("--vgg_weights", default=None if recorded else FALLBACK_OPTIONS["vgg_weights"],
                        help="imagenet (torchvision's weights), random (seeded, unit-variance) or a file PATH"
                             + default_help(FALLBACK_OPTIONS["vgg_weights"], recorded_in))
    parser.add_argument("--vgg_seed", type=seed, default=None if recorded else FALLBACK_OPTIONS["vgg_seed"],
                        help="seed of --vgg_weights random" + default_help(FALLBACK_OPTIONS["vgg_seed"], recorded_in))
    return parser


def add_vgg_options(parser, purpose, recorded_in=None):
    """Add --vgg, the weight options and --style_layer of the `purpose` Grams (recorded_in: as for the weights)."""
    recorded = recorded_in is not None
    parser.add_argument("--vgg", default=None if recorded else FALLBACK_OPTIONS["vgg"], choices=BACKBONES,
                        help=f"VGG backbone of the {purpose}" + default_help(FALLBACK_OPTIONS["vgg"], recorded_in))
    add_vgg_weight_options(parser, recorded_in)
    parser.add_argument("--style_layer", default=None if recorded else FALLBACK_OPTIONS["style_layer"],
                        help=f"layers of the {purpose}: block indices 0-4 (last ReLU of each block) or names "
                             f"like relu3_1" + default_help(FALLBACK_OPTIONS["style_layer"], recorded_in))
    return parser


def recorded_options(record):
    """The VGG options a Gram record ({backbone, weights, style_layers}) was made with, as option values.

    Weights from a file are recorded by content only (file:DIGEST): --vgg_weights is then left to the user.
    """
    options = {"vgg": record["backbone"], "style_layer": ",".join(record["style_layers"])}
    kind, _, detail = str(record["weights"]).partition(":")
    if kind == "random":
        options["vgg_weights"] = "random"
        options["vgg_seed"] = int(detail.split(",")[0].removeprefix("seed="))
    elif kind == "imagenet":
        options["vgg_weights"] = "imagenet"
    return options


def fill_vgg_options(opt, record, source):
    """Set the VGG options left unset (None) to those `record` (a Gram record, or None) holds, else the fallbacks."""
    recorded = recorded_options(record) if record else {}
    if opt.vgg_weights is None and record and "vgg_weights" not in recorded:
        raise SargenError(f"{source} was made with VGG weights from a file ({record['weights']}): "
                          f"pass that file as --vgg_weights PATH")
    for name, fallback in FALLBACK_OPTIONS.items():
        if getattr(opt, name, None) is None:
            setattr(opt, name, recorded.get(name, fallback))
    return opt


def weights_description(backbone, weights, seed=0):
    """How weights are recorded (Gram files, pages, logs), known before they are loaded:
    imagenet:FILE, random:seed=N,unit-variance or file:DIGEST."""
    if weights == "imagenet":
        return f"imagenet:{imagenet_cache_path(backbone).name}"
    if weights == "random":
        return f"random:seed={seed},unit-variance"
    path = Path(weights)
    if not path.is_file():
        raise SargenError(f"--vgg_weights file not found: {path} (give a path, 'imagenet' or 'random')")
    return f"file:{file_digest(path)}"


def load_imagenet_weights(backbone, features):
    """Load torchvision's ImageNet weights (cache or download) into `features`."""
    weights = torchvision.models.get_model_weights(backbone).IMAGENET1K_V1
    cache_path = imagenet_cache_path(backbone)
    if cache_path.is_file():
        state = load_checkpoint(cache_path, "VGG weights")
    else:
        try:
            state = weights.get_state_dict(progress=True, weights_only=True)
        except Exception as error:  # offline: URLError, socket errors, HTTP errors
            raise SargenError(f"ImageNet {backbone} weights are not in {cache_path} and could not be downloaded "
                              f"({type(error).__name__}): download {weights.url} to that path (or set TORCH_HOME), "
                              f"pass --vgg_weights PATH, or --vgg_weights random") from None
    load_features_state(features, state, cache_path)


def load_weights_file(path, features):
    """Load a local torchvision-format VGG state dict into `features`."""
    load_features_state(features, load_checkpoint(path, "VGG weights"), path)


def load_features_state(features, state, path):
    """Copy the `features` part of a VGG state dict into `features`, naming the file on mismatch."""
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise SargenError(f"{path} does not hold a VGG state dict")
    if any(key.startswith("features.") for key in state):
        state = {key[len("features."):]: value for key, value in state.items() if key.startswith("features.")}
    expected = features.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise SargenError(f"{path} lacks VGG weight '{key}': is it a state dict of this backbone?")
        if not isinstance(state[key], torch.Tensor):
            raise SargenError(f"{path}: VGG weight '{key}' is a {type(state[key]).__name__}, not a tensor")
        if tuple(state[key].shape) != tuple(value.shape):
            raise SargenError(f"{path}: weight '{key}' has shape {tuple(state[key].shape)}, "
                              f"expected {tuple(value.shape)} (another VGG backbone?)")
    features.load_state_dict({key: state[key] for key in expected})


def file_digest(path):
    """The first 16 hex digits of a file's SHA-256, to identify weights in saved metadata."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def calibration_images(seed, count=4, size=64):
    """Fixed typical inputs in [0, 1]: smooth random scenes with speckle-like multiplicative noise."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, size // 8, size // 8, generator=generator)
    smooth = nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    speckle = -torch.log(torch.rand(count, 1, size, size, generator=generator).clamp_min(1e-6))
    return (smooth * speckle * 0.5).clamp(0.0, 1.0)


@torch.no_grad()
def init_random_scaled(features, seed):
    """Seeded He initialisation, each conv rescaled so its ReLU output has unit variance on typical inputs."""
    generator = torch.Generator().manual_seed(seed)
    for module in features:
        if isinstance(module, nn.Conv2d):
            fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
            module.bias.zero_()
    activations = imagenet_normalize(calibration_images(seed))
    for index, module in enumerate(features):
        activations = module(activations)
        if isinstance(module, nn.ReLU) and isinstance(features[index - 1], nn.Conv2d):
            # ReLU is positively homogeneous and the bias is zero, so scaling the weight scales the output.
            scale = activations.std().clamp_min(1e-12)
            features[index - 1].weight.div_(scale)
            activations = activations / scale


def imagenet_normalize(images):
    """Normalize [0, 1] RGB images with ImageNet's mean and standard deviation."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean) / std


def load_vgg_features(backbone, weights, seed=0):
    """torchvision's VGG `features` with the weights policy applied; returns (features, description)."""
    features = build_architecture(backbone)
    description = weights_description(backbone, weights, seed)
    if weights == "imagenet":
        load_imagenet_weights(backbone, features)
    elif weights == "random":
        init_random_scaled(features, seed)
    else:
        load_weights_file(weights, features)
    return features, description


class VGGFeatures(nn.Module):
    """A frozen VGG cut after the deepest requested layer, returning the requested layers' features."""

    def __init__(self, backbone="vgg19", weights="imagenet", layers=("relu4_2",), seed=0):
        """Build the backbone, load the weights and keep only the modules up to the deepest layer."""
        super().__init__()
        names = layer_names(backbone)
        self.backbone = backbone
        self.layers = list(dict.fromkeys(layers))
        self.layer_indices = {names.index(name): name for name in self.layers}
        features, self.weights_description = load_vgg_features(backbone, weights, seed)
        self.features = features[: max(self.layer_indices) + 1]
        self.requires_grad_(False)
        self.eval()
        logger.info("VGG %s, weights %s, cut after %s", backbone, self.weights_description,
                    names[max(self.layer_indices)])

    def train(self, mode=True):
        """Stay in eval mode: the extractor is frozen."""
        return super().train(False)

    def forward(self, images):
        """Features of [0, 1] images (1 or 3 channels) at the requested layers, as a dict by name."""
        activations = vgg_input(images)
        outputs = {}
        for index, module in enumerate(self.features):
            # the first convolution's input gradient (image optimization, generator training) by the fast path
            activations = input_gradient_conv2d(module, activations) if index == 0 else module(activations)
            if index in self.layer_indices:
                outputs[self.layer_indices[index]] = activations
        return outputs


def imagenet_weights_url(backbone):
    """Where torchvision downloads the ImageNet weights of `backbone` from."""
    return torchvision.models.get_model_weights(backbone).IMAGENET1K_V1.url


def imagenet_cache_path(backbone):
    """Where torchvision's cache keeps the ImageNet weights file of `backbone` (TORCH_HOME aware)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(imagenet_weights_url(backbone)).name


def vgg_input(images):
    """[0, 1] images (1 or 3 channels) as VGG's input: grey repeated to RGB, then ImageNet-normalized."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return imagenet_normalize(images)


def selected_conv2d(inputs, conv, channels):
    """Output channels `channels` (B x K indices, per image) of the 3x3, stride-1 `conv` on B images: B x K x H x W.

    Each image gets only its own K output channels. The convolution is done as one batched matrix product of
    the K x 9 kernel taps with the input channels, then a sum of the nine shifted tap maps: cheaper than a
    grouped convolution and far cheaper than computing all output channels.
    """
    batch, in_channels, height, width = inputs.shape
    taps = conv.kernel_size[0] * conv.kernel_size[1]
    count = channels.shape[1]
    kernels = conv.weight[channels].permute(0, 1, 3, 4, 2).reshape(batch, count * taps, in_channels)
    tap_maps = torch.bmm(kernels.to(inputs.dtype), inputs.reshape(batch, in_channels, height * width))
    outputs = _ShiftedSum.apply(tap_maps.reshape(batch, count, taps, height, width))
    return outputs + conv.bias[channels][:, :, None, None].to(outputs.dtype)


class _ShiftedSum(torch.autograd.Function):
    """out[y, x] = sum over the 3x3 taps (r, c) of maps[tap][y + r - 1, x + c - 1], zero outside: the second half
    of a 3x3 convolution done as matrix product then shifts. A hand-written backward (nine slices of the padded
    gradient) avoids autograd's nine zero-filled, padded gradient buffers."""

    @staticmethod
    def forward(ctx, tap_maps):
        """B x K x 9 x H x W tap maps -> B x K x H x W, summed in float32 (few channels: cheap, and exact enough
        under bfloat16 autocast)."""
        ctx.input_dtype = tap_maps.dtype
        height, width = tap_maps.shape[-2:]
        padded = nn.functional.pad(tap_maps.float(), (1, 1, 1, 1))
        outputs = padded[:, :, 0, 0:height, 0:width].clone()
        for tap in range(1, 9):
            row, column = divmod(tap, 3)
            outputs += padded[:, :, tap, row:row + height, column:column + width]
        return outputs

    @staticmethod
    def backward(ctx, grad_output):
        """Each tap map's gradient is the output gradient shifted back."""
        height, width = grad_output.shape[-2:]
        padded = nn.functional.pad(grad_output, (1, 1, 1, 1))
        return torch.stack([padded[:, :, 2 - row:2 - row + height, 2 - column:2 - column + width]
                            for row, column in (divmod(tap, 3) for tap in range(9))], dim=2).to(ctx.input_dtype)


def last_conv_index(features, layer_index):
    """The index of the last Conv2d of `features` at or before `layer_index`."""
    return max(index for index in range(layer_index + 1) if isinstance(features[index], nn.Conv2d))


class ChannelSelectedVGG(nn.Module):
    """A frozen VGG `features` cut after one layer whose last convolution computes only the channels asked for.

    forward(images, channels) gives, for each image, the layer's activations at its own channels (B x K indices):
    the same values as the full layer's, at a fraction of the last convolution's cost. The modules after the
    last convolution (ReLU, max-pooling) act channel by channel, so they apply to the selected channels as is.
    """

    def __init__(self, features, layer_index):
        """Keep the modules of `features` up to `layer_index` (a `features` index)."""
        super().__init__()
        conv_index = last_conv_index(features, layer_index)
        last_conv = features[conv_index]
        if last_conv.kernel_size != (3, 3) or last_conv.stride != (1, 1) or last_conv.padding != (1, 1):
            raise SargenError(f"channel selection needs a 3x3, stride-1, padding-1 convolution, got {last_conv}")
        self.prefix = features[:conv_index]
        # Measured on CPU (oneDNN): channels-last speeds up stacks of wide convolutions by 15-25 % but slows
        # down a lone 3-channel first convolution.
        self.channels_last = sum(isinstance(module, nn.Conv2d) for module in self.prefix) >= 2
        if conv_index > 0:  # the first convolution (3 input channels) gets the fast input gradient
            self.prefix = nn.Sequential(InputGradientConv2d(features[0]), *features[1:conv_index])
        self.last_conv = last_conv
        self.tail = features[conv_index + 1: layer_index + 1]
        self.channel_count = last_conv.out_channels
        self.requires_grad_(False)
        self.eval()

    def train(self, mode=True):
        """Stay in eval mode: the extractor is frozen."""
        return super().train(False)

    def forward(self, images, channels):
        """Activations at `channels` (B x K long tensor) of [0, 1] images (1 or 3 channels): B x K x H x W."""
        inputs = vgg_input(images)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        hidden = self.prefix(inputs).contiguous()
        return self.tail(selected_conv2d(hidden, self.last_conv, channels))


class _InputGradientConv(torch.autograd.Function):
    """A frozen 3x3, stride-1, padding-1 convolution whose backward gives only the input gradient, computed as
    one matrix product followed by nine shifted sums (oneDNN's backward is slow for few input channels)."""

    @staticmethod
    def forward(ctx, inputs, weight, bias):
        """The usual convolution."""
        ctx.save_for_backward(weight)
        ctx.input_dtype = inputs.dtype
        return nn.functional.conv2d(inputs, weight, bias, padding=1)

    @staticmethod
    def backward(ctx, grad_output):
        """d loss / d inputs only (the weights are frozen)."""
        (weight,) = ctx.saved_tensors
        batch, out_channels, height, width = grad_output.shape
        in_channels = weight.shape[1]
        taps = weight.permute(1, 2, 3, 0).reshape(in_channels * 9, out_channels).to(grad_output.dtype)
        tap_maps = torch.matmul(taps, grad_output.reshape(batch, out_channels, height * width)).float()
        tap_maps = nn.functional.pad(tap_maps.reshape(batch, in_channels, 3, 3, height, width), (1, 1, 1, 1))
        grad_input = 0
        for row in range(3):
            for column in range(3):
                grad_input = grad_input + tap_maps[:, :, row, column, 2 - row:2 - row + height,
                                                   2 - column:2 - column + width]
        return grad_input.to(ctx.input_dtype), None, None


class InputGradientConv2d(nn.Module):
    """A frozen 3x3 convolution (VGG's first) with a fast input-gradient backward; same outputs as `conv`."""

    def __init__(self, conv):
        """Wrap `conv` (3x3, stride 1, padding 1)."""
        super().__init__()
        self.conv = conv

    def forward(self, inputs):
        """conv(inputs)."""
        return input_gradient_conv2d(self.conv, inputs)


def input_gradient_conv2d(conv, inputs):
    """conv(inputs) for a frozen 3x3, stride-1, padding-1 `conv`, with the fast input-gradient backward."""
    weight, bias = conv.weight, conv.bias
    if torch.is_autocast_enabled(inputs.device.type):
        dtype = torch.get_autocast_dtype(inputs.device.type)
        inputs, weight, bias = inputs.to(dtype), weight.to(dtype), bias.to(dtype)
    return _InputGradientConv.apply(inputs, weight, bias)

"""U-GAT-IT networks (CAM attention, AdaLIN generator, spectral-normalized CAM discriminators).

The modules reproduce the U-GAT-IT PyTorch reference code (znxlwm/UGATIT-pytorch, networks.py)
key-for-key and output-for-output, so published checkpoints such as the eo2sar model load
unchanged. Attribute names that appear in state-dict keys (DownBlock, gap_fc, gmp_fc, conv1x1,
FC, gamma, beta, UpBlock1_<n>, UpBlock2, model, conv, conv_block, norm1, rho, ...) are therefore
fixed by the checkpoint format; everything else is named for what it is.
"""

import functools
import math
import re

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.spectral_norm import SpectralNorm

from util.checkpoint import CheckpointMismatchError

DOWNSAMPLING_STEPS = 2
BOTTLENECK_SCALE = 2**DOWNSAMPLING_STEPS
NORM_EPS = 1e-5
ADAPTIVE_RHO_INIT = 0.9
GLOBAL_DISCRIMINATOR_LAYERS = 7
LOCAL_DISCRIMINATOR_LAYERS = 5
LEAKY_SLOPE = 0.2

_BOTTLENECK_BLOCK_KEY = re.compile(r"^UpBlock1_(\d+)\.")
_UPSAMPLING_CONV_KEY = re.compile(r"^UpBlock2\.(\d+)\.weight$")
_DISCRIMINATOR_CONV_KEY = re.compile(r"^model\.(\d+)\.weight_orig$")


def _spectral_normalized(layer):
    """Wrap a layer in the legacy spectral norm (weight_orig/weight_u/weight_v state-dict keys)."""
    # The legacy function, not torch.nn.utils.parametrizations.spectral_norm: published
    # checkpoints use its key layout, and the discriminator's CAM relies on weight_orig.
    return nn.utils.spectral_norm(layer)


def _spectral_norm_hook(layer):
    """The legacy spectral-norm hook of `layer`, which holds its power-iteration settings."""
    return next(hook for hook in layer._forward_pre_hooks.values() if isinstance(hook, SpectralNorm))


def spectral_norm_sigmas(layer, calls):
    """The sigma estimate u . (W v) of each of `calls` successive forwards of a legacy spectral-normalized layer.

    In training mode each forward first runs the hook's power iteration on u and v in place, as
    torch.nn.utils.spectral_norm does, so the vectors end where `calls` separate forwards leave them.
    """
    hook = _spectral_norm_hook(layer)
    weight_matrix = hook.reshape_weight_to_matrix(layer.weight_orig)
    u, v = layer.weight_u, layer.weight_v
    sigmas = []
    for _ in range(calls):
        if layer.training and hook.n_power_iterations > 0:
            with torch.no_grad():
                for _ in range(hook.n_power_iterations):
                    F.normalize(torch.mv(weight_matrix.t(), u), dim=0, eps=hook.eps, out=v)
                    F.normalize(torch.mv(weight_matrix, v), dim=0, eps=hook.eps, out=u)
            # clones: the next call's in-place update must not change what this sigma's backward saved
            sigmas.append(torch.dot(u.clone(), torch.mv(weight_matrix, v.clone())))
        else:
            sigmas.append(torch.dot(u, torch.mv(weight_matrix, v)))
    return sigmas


def spectral_normalized_forward(layer, features, call_sizes):
    """A legacy spectral-normalized conv or linear layer applied with the output, not the weight, divided by sigma.

    Equal to the hook's weight_orig / sigma up to float rounding, without building that weight-sized
    tensor and its backward on every call (the global discriminator's 33 M-weight convolution has a 7x7
    output). `features` stacks the batches of successive calls (`call_sizes`), each with its own sigma.
    """
    sigmas = spectral_norm_sigmas(layer, len(call_sizes))
    if isinstance(layer, nn.Conv2d):
        out = layer._conv_forward(features, layer.weight_orig, None)
    else:
        out = F.linear(features, layer.weight_orig)
    inverse = torch.cat([(1 / sigma).expand(size) for sigma, size in zip(sigmas, call_sizes)])
    inverse = inverse.to(out.dtype).view(-1, *[1] * (out.dim() - 1))
    if layer.bias is None:
        return out * inverse
    return torch.addcmul(layer.bias.to(out.dtype).view(1, -1, *[1] * (out.dim() - 2)), out, inverse)


def _mix_instance_and_layer_norm(features, rho, eps):
    """Normalize per instance and per layer, then blend the two with per-channel weight rho."""
    # torch.var is unbiased; the reference uses it, so outputs only match with it.
    instance_mean = torch.mean(features, dim=[2, 3], keepdim=True)
    instance_var = torch.var(features, dim=[2, 3], keepdim=True)
    instance_normalized = (features - instance_mean) / torch.sqrt(instance_var + eps)
    layer_mean = torch.mean(features, dim=[1, 2, 3], keepdim=True)
    layer_var = torch.var(features, dim=[1, 2, 3], keepdim=True)
    layer_normalized = (features - layer_mean) / torch.sqrt(layer_var + eps)
    rho = rho.expand(features.shape[0], -1, -1, -1)
    return rho * instance_normalized + (1 - rho) * layer_normalized


def instance_and_layer_statistics(features):
    """Per-channel means and unbiased variances, and the layer's over channels and pixels (broadcastable)."""
    channels, pixels = features.shape[1], features.shape[2] * features.shape[3]
    # Two passes (mean, then the norm of the deviations): torch.var is many times slower on CPUs.
    instance_mean = features.mean(dim=[2, 3], keepdim=True)
    deviation = torch.linalg.vector_norm(features - instance_mean, dim=[2, 3], keepdim=True)
    instance_var = deviation.square() / (pixels - 1)
    layer_mean = instance_mean.mean(dim=1, keepdim=True)
    # The layer's sum of squares is the channels' own plus that of their means around the layer mean.
    squares = (instance_var.sum(dim=1, keepdim=True) * (pixels - 1)
               + pixels * (instance_mean - layer_mean).square().sum(dim=1, keepdim=True))
    return instance_mean, instance_var, layer_mean, squares / (channels * pixels - 1)


def blended_scale_and_shift(statistics, rho, eps):
    """Per-channel scale and shift that apply _mix_instance_and_layer_norm's blend given its statistics."""
    instance_mean, instance_var, layer_mean, layer_var = statistics
    instance_scale = torch.rsqrt(instance_var + eps)
    layer_scale = torch.rsqrt(layer_var + eps)
    scale = rho * instance_scale + (1 - rho) * layer_scale
    shift = -(rho * instance_mean * instance_scale + (1 - rho) * layer_mean * layer_scale)
    return scale, shift


def scaled_and_shifted(features, scale, shift, gamma, beta):
    """(features * scale + shift) * gamma + beta as one multiply-add per element."""
    return torch.addcmul(shift * gamma + beta, features, scale * gamma)


class AdaptiveInstanceLayerNorm(nn.Module):
    """AdaLIN: instance/layer-norm blend with learned rho, scaled by per-sample gamma and beta.

    With `fused_statistics` set (the fast inference path), the blend and the affine are folded into one
    multiply-add per element; the result equals the reference formula to float rounding, not bit for bit.
    """

    def __init__(self, num_features, eps=NORM_EPS):
        """Create the blend weight rho (one per channel), initialised to 0.9."""
        super().__init__()
        self.eps = eps
        self.fused_statistics = False
        self.rho = nn.Parameter(torch.full((1, num_features, 1, 1), ADAPTIVE_RHO_INIT))

    def forward(self, features, gamma, beta):
        """Normalize features and apply the (batch, channels) gamma and beta."""
        gamma, beta = gamma.unsqueeze(2).unsqueeze(3), beta.unsqueeze(2).unsqueeze(3)
        if self.fused_statistics:
            scale, shift = blended_scale_and_shift(instance_and_layer_statistics(features), self.rho, self.eps)
            return scaled_and_shifted(features, scale, shift, gamma, beta)
        mixed = _mix_instance_and_layer_norm(features, self.rho, self.eps)
        return mixed * gamma + beta


class InstanceLayerNorm(nn.Module):
    """LIN: instance/layer-norm blend with learned rho and a learned per-channel affine."""

    def __init__(self, num_features, eps=NORM_EPS):
        """Create rho (init 0), gamma (init 1) and beta (init 0), one value per channel."""
        super().__init__()
        self.eps = eps
        self.fused_statistics = False
        self.rho = nn.Parameter(torch.zeros(1, num_features, 1, 1))
        self.gamma = nn.Parameter(torch.ones(1, num_features, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, num_features, 1, 1))

    def forward(self, features):
        """Normalize features and apply the learned gamma and beta (fused like AdaLIN's when set)."""
        if self.fused_statistics:
            scale, shift = blended_scale_and_shift(instance_and_layer_statistics(features), self.rho, self.eps)
            return scaled_and_shifted(features, scale, shift, self.gamma, self.beta)
        mixed = _mix_instance_and_layer_norm(features, self.rho, self.eps)
        batch = features.shape[0]
        return mixed * self.gamma.expand(batch, -1, -1, -1) + self.beta.expand(batch, -1, -1, -1)


def set_fused_statistics(network, enabled):
    """Switch every AdaLIN and LIN layer of `network` to the fused formula (True) or the reference one."""
    for module in network.modules():
        if isinstance(module, (AdaptiveInstanceLayerNorm, InstanceLayerNorm)):
            module.fused_statistics = enabled


def _conv3x3_reflect(in_channels, out_channels, stride=1):
    """Reflection pad 1 then a bias-free 3x3 convolution (two Sequential slots)."""
    return [
        nn.ReflectionPad2d(1),
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=0, bias=False),
    ]


class ResnetBlock(nn.Module):
    """Residual block of two reflect-padded 3x3 convolutions with instance norm."""

    def __init__(self, channels):
        """Build conv_block: pad, conv, IN, ReLU, pad, conv, IN."""
        super().__init__()
        self.conv_block = nn.Sequential(
            *_conv3x3_reflect(channels, channels),
            nn.InstanceNorm2d(channels),
            nn.ReLU(True),
            *_conv3x3_reflect(channels, channels),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, features):
        """Add the block's output to its input."""
        return features + self.conv_block(features)


class ResnetAdaILNBlock(nn.Module):
    """Residual block of two reflect-padded 3x3 convolutions normalized by AdaLIN."""

    def __init__(self, channels):
        """Build conv1/norm1 and conv2/norm2 (bias-free convolutions)."""
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=0, bias=False)
        self.norm1 = AdaptiveInstanceLayerNorm(channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=0, bias=False)
        self.norm2 = AdaptiveInstanceLayerNorm(channels)

    def forward(self, features, gamma, beta):
        """Apply both conv/AdaLIN stages (ReLU between them) and add the input."""
        out = self.conv1(F.pad(features, (1, 1, 1, 1), mode="reflect"))
        out = F.relu(self.norm1(out, gamma, beta))
        out = self.conv2(F.pad(out, (1, 1, 1, 1), mode="reflect"))
        return self.norm2(out, gamma, beta) + features


class GridAveragePool(nn.Module):
    """Average pooling to a grid x grid map (grid 1: global average pooling), a module the tiler pools image-wide."""

    def __init__(self, grid=1):
        """Pool to `grid` x `grid` cells."""
        super().__init__()
        self.grid = grid

    def forward(self, features):
        """The B x C x grid x grid cell means (the features themselves when they already have that size)."""
        if tuple(features.shape[-2:]) == (self.grid, self.grid):
            return features
        return F.adaptive_avg_pool2d(features, self.grid)

    def extra_repr(self):
        """The grid, for printing."""
        return f"grid={self.grid}"


class GlobalMaxPool(nn.Module):
    """Global max pooling (B x C x H x W -> B x C x 1 x 1), a module the tiler pools image-wide."""

    def forward(self, features):
        """The per-channel maximum."""
        return F.adaptive_max_pool2d(features, 1)


def _class_activation(features, cam, gap_fc, gmp_fc, gap_weight, gmp_weight):
    """Return CAM-weighted features (avg branch, max branch concatenated) and the CAM logits.

    `cam` is the network holding the global pools (average_pool, max_pool).
    """
    # Same operation order as the reference, so autograd sums gradients identically too.
    batch = features.shape[0]
    gap_logit = gap_fc(cam.average_pool(features).view(batch, -1))
    avg_weighted = features * gap_weight.unsqueeze(2).unsqueeze(3)
    gmp_logit = gmp_fc(cam.max_pool(features).view(batch, -1))
    max_weighted = features * gmp_weight.unsqueeze(2).unsqueeze(3)
    return torch.cat([avg_weighted, max_weighted], 1), torch.cat([gap_logit, gmp_logit], 1)


def _generator_encoder(input_nc, ngf, n_blocks):
    """Layers of DownBlock: 7x7 stem, two stride-2 down-samplings, n_blocks residual blocks."""
    layers = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(input_nc, ngf, kernel_size=7, stride=1, padding=0, bias=False),
        nn.InstanceNorm2d(ngf),
        nn.ReLU(True),
    ]
    for step in range(DOWNSAMPLING_STEPS):
        channels = ngf * 2**step
        layers += [
            *_conv3x3_reflect(channels, channels * 2, stride=2),
            nn.InstanceNorm2d(channels * 2),
            nn.ReLU(True),
        ]
    bottleneck_channels = ngf * BOTTLENECK_SCALE
    layers += [ResnetBlock(bottleneck_channels) for _ in range(n_blocks)]
    return layers


def _generator_decoder(output_nc, ngf):
    """Layers of UpBlock2: two nearest-x2 up-samplings with LIN, then a 7x7 conv and tanh."""
    layers = []
    for step in range(DOWNSAMPLING_STEPS):
        channels = ngf * 2 ** (DOWNSAMPLING_STEPS - step)
        layers += [
            nn.Upsample(scale_factor=2, mode="nearest"),
            *_conv3x3_reflect(channels, channels // 2),
            InstanceLayerNorm(channels // 2),
            nn.ReLU(True),
        ]
    layers += [
        nn.ReflectionPad2d(3),
        nn.Conv2d(ngf, output_nc, kernel_size=7, stride=1, padding=0, bias=False),
        nn.Tanh(),
    ]
    return layers


def _gamma_beta_mlp(channels, img_size, light):
    """Layers of FC: the MLP whose output feeds gamma and beta (pooled input when light)."""
    if light:
        in_features = channels
    else:
        in_features = (img_size // BOTTLENECK_SCALE) ** 2 * channels
    return [
        nn.Linear(in_features, channels, bias=False),
        nn.ReLU(True),
        nn.Linear(channels, channels, bias=False),
        nn.ReLU(True),
    ]


class Generator(nn.Module):
    """U-GAT-IT generator: encoder, CAM attention, AdaLIN residual bottleneck, LIN decoder."""

    def __init__(self, input_nc, output_nc, ngf=64, n_blocks=6, img_size=256, light=False):
        """Build the network; img_size (a multiple of 4) only shapes FC.0 (and its input grid) when not light."""
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        if not light and img_size % BOTTLENECK_SCALE:
            raise ValueError(f"img_size must be a multiple of {BOTTLENECK_SCALE} when light=False, got {img_size}")
        self.input_nc, self.output_nc, self.ngf = input_nc, output_nc, ngf
        self.n_blocks, self.img_size, self.light = n_blocks, img_size, light
        channels = ngf * BOTTLENECK_SCALE
        # Registered in the reference's order so state_dict() lists keys as the checkpoint does.
        self.gap_fc = nn.Linear(channels, 1, bias=False)
        self.gmp_fc = nn.Linear(channels, 1, bias=False)
        self.conv1x1 = nn.Conv2d(channels * 2, channels, kernel_size=1, stride=1, bias=True)
        self.gamma = nn.Linear(channels, channels, bias=False)
        self.beta = nn.Linear(channels, channels, bias=False)
        for index in range(1, n_blocks + 1):
            setattr(self, f"UpBlock1_{index}", ResnetAdaILNBlock(channels))
        self.DownBlock = nn.Sequential(*_generator_encoder(input_nc, ngf, n_blocks))
        self.FC = nn.Sequential(*_gamma_beta_mlp(channels, img_size, light))
        self.UpBlock2 = nn.Sequential(*_generator_decoder(output_nc, ngf))
        # Parameter-free (no state-dict keys): the global pools of the attention and of the MLP's input, modules so
        # that the tiler can pool them over a whole image. A full generator's MLP sees its bottleneck averaged to
        # its training grid (img_size / 4 cells a side): the features themselves at img_size, defined at any size.
        self.average_pool, self.max_pool = GridAveragePool(1), GlobalMaxPool()
        self.mlp_pool = GridAveragePool(1 if light else img_size // BOTTLENECK_SCALE)

    def bottleneck_blocks(self):
        """The AdaLIN residual blocks UpBlock1_1 .. UpBlock1_<n_blocks>, in order."""
        return [getattr(self, f"UpBlock1_{index}") for index in range(1, self.n_blocks + 1)]

    def _gamma_and_beta(self, features):
        """Per-sample AdaLIN gamma and beta computed from the attended features."""
        hidden = self.FC(self.mlp_pool(features).flatten(1))
        return self.gamma(hidden), self.beta(hidden)

    def forward(self, image):
        """Translate image; return (output in [-1, 1], cam_logit (B, 2), heatmap (B, 1, h, w))."""
        features = self.DownBlock(image)
        weighted, cam_logit = _class_activation(
            features, self, self.gap_fc, self.gmp_fc, self.gap_fc.weight, self.gmp_fc.weight
        )
        features = F.relu(self.conv1x1(weighted))
        del weighted  # not kept through the bottleneck: it bounds what a paused tile holds (models/tile_statistics)
        heatmap = torch.sum(features, dim=1, keepdim=True)
        gamma, beta = self._gamma_and_beta(features)
        for block in self.bottleneck_blocks():
            features = block(features, gamma, beta)
        return self.UpBlock2(features), cam_logit, heatmap


def _discriminator_stage(in_channels, out_channels, stride):
    """Reflect pad 1, spectral-normalized 4x4 conv with bias, LeakyReLU(0.2)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=stride, padding=0, bias=True)
    return [nn.ReflectionPad2d(1), _spectral_normalized(conv), nn.LeakyReLU(LEAKY_SLOPE, True)]


def _discriminator_trunk(input_nc, ndf, n_layers):
    """Layers of model: n_layers - 2 stride-2 stages doubling channels, then one stride-1 stage."""
    layers = _discriminator_stage(input_nc, ndf, stride=2)
    for index in range(1, n_layers - 2):
        channels = ndf * 2 ** (index - 1)
        layers += _discriminator_stage(channels, channels * 2, stride=2)
    channels = ndf * 2 ** (n_layers - 3)
    layers += _discriminator_stage(channels, channels * 2, stride=1)
    return layers


class Discriminator(nn.Module):
    """U-GAT-IT PatchGAN discriminator with CAM; n_layers 7 is the global one, 5 the local one."""

    def __init__(self, input_nc, ndf=64, n_layers=LOCAL_DISCRIMINATOR_LAYERS):
        """Build the spectral-normalized trunk, CAM and 1-channel output convolution."""
        super().__init__()
        if n_layers < 3:
            raise ValueError(f"n_layers must be >= 3, got {n_layers}")
        self.input_nc, self.ndf, self.n_layers = input_nc, ndf, n_layers
        channels = ndf * 2 ** (n_layers - 2)
        # Registered in the reference's order so state_dict() lists keys as the checkpoint does.
        self.gap_fc = _spectral_normalized(nn.Linear(channels, 1, bias=False))
        self.gmp_fc = _spectral_normalized(nn.Linear(channels, 1, bias=False))
        self.conv1x1 = nn.Conv2d(channels * 2, channels, kernel_size=1, stride=1, bias=True)
        self.conv = _spectral_normalized(nn.Conv2d(channels, 1, kernel_size=4, stride=1, padding=0, bias=False))
        self.model = nn.Sequential(*_discriminator_trunk(input_nc, ndf, n_layers))
        self.average_pool, self.max_pool = GridAveragePool(1), GlobalMaxPool()  # parameter-free: no state-dict keys

    def forward(self, image, call_sizes=None):
        """Score image patches; return (out (B, 1, h, w), cam_logit (B, 2), heatmap (B, 1, h', w')).

        `image` may stack the batches of successive calls (`call_sizes`, e.g. real then fake): each part
        is scored with the spectral norm of its own call, as separate calls would score it, in one pass.
        """
        call_sizes = tuple(call_sizes or (image.shape[0],))
        if sum(call_sizes) != image.shape[0]:
            raise ValueError(f"call_sizes {call_sizes} do not add up to the batch of {image.shape[0]} images")
        return self.score(image, lambda layer, features: spectral_normalized_forward(layer, features, call_sizes))

    def score(self, image, spectral):
        """The discriminator's layers, with `spectral(layer, features)` applying the spectral-normalized ones."""
        features = image
        for layer in self.model:
            features = spectral(layer, features) if hasattr(layer, "weight_orig") else layer(features)
        # The reference weights the CAM branches with the module's first parameter, which under
        # legacy spectral norm is weight_orig (un-normalized); the logits use the normalized weight.
        weighted, cam_logit = _class_activation(
            features, self, functools.partial(spectral, self.gap_fc), functools.partial(spectral, self.gmp_fc),
            self.gap_fc.weight_orig, self.gmp_fc.weight_orig,
        )
        features = F.leaky_relu(self.conv1x1(weighted), LEAKY_SLOPE)
        heatmap = torch.sum(features, dim=1, keepdim=True)
        out = spectral(self.conv, F.pad(features, (1, 1, 1, 1), mode="reflect"))
        return out, cam_logit, heatmap


class RhoClipper:
    """Clamps every AdaLIN/LIN rho parameter of a module to [clip_min, clip_max]."""

    def __init__(self, clip_min, clip_max):
        """Remember the clamp range; clip_min must be below clip_max."""
        if not clip_min < clip_max:
            raise ValueError(f"RhoClipper needs min < max, got {clip_min} and {clip_max}")
        self.clip_min, self.clip_max = clip_min, clip_max

    def __call__(self, module):
        """Clamp in place all parameters named rho in module and its submodules."""
        with torch.no_grad():
            for name, parameter in module.named_parameters():
                if name.rsplit(".", 1)[-1] == "rho":
                    parameter.clamp_(self.clip_min, self.clip_max)


def _require_key(state_dict, key, network):
    """Return state_dict[key], or raise CheckpointMismatchError saying which network lacks it."""
    if key not in state_dict:
        raise CheckpointMismatchError(f"not a U-GAT-IT {network} state dict: key '{key}' is missing")
    return state_dict[key]


def generator_config_from_state_dict(state_dict):
    """Read Generator keyword arguments from a state dict's shapes.

    img_size is None for light generators: their shapes do not depend on it. For full ones it is
    the smallest multiple of 4 that gives FC.0's input size.
    """
    stem = _require_key(state_dict, "DownBlock.1.weight", "generator")
    ngf, input_nc = stem.shape[0], stem.shape[1]
    channels = ngf * BOTTLENECK_SCALE
    mlp_in_features = _require_key(state_dict, "FC.0.weight", "generator").shape[1]
    decoder_convs = {
        int(match.group(1)): tensor
        for key, tensor in state_dict.items()
        if (match := _UPSAMPLING_CONV_KEY.match(key)) and tensor.dim() == 4
    }
    if not decoder_convs:
        raise CheckpointMismatchError("not a U-GAT-IT generator state dict: no UpBlock2 convolution weights")
    output_nc = decoder_convs[max(decoder_convs)].shape[0]
    n_blocks = len({match.group(1) for key in state_dict if (match := _BOTTLENECK_BLOCK_KEY.match(key))})
    light = mlp_in_features == channels
    img_size = None if light else _img_size_from_mlp_input(mlp_in_features, channels)
    return {
        "input_nc": input_nc,
        "output_nc": output_nc,
        "ngf": ngf,
        "n_blocks": n_blocks,
        "img_size": img_size,
        "light": light,
    }


def _img_size_from_mlp_input(mlp_in_features, channels):
    """Invert FC.0's input size (img_size // 4) ** 2 * channels of a full generator."""
    side = math.isqrt(mlp_in_features // channels)
    if side * side * channels != mlp_in_features:
        raise CheckpointMismatchError(
            f"generator FC.0.weight has {mlp_in_features} inputs, not (img_size // 4) ** 2 * {channels}"
        )
    return side * BOTTLENECK_SCALE


def discriminator_config_from_state_dict(state_dict):
    """Read Discriminator keyword arguments (input_nc, ndf, n_layers) from a state dict's shapes."""
    trunk_convs = {
        int(match.group(1)): tensor
        for key, tensor in state_dict.items()
        if (match := _DISCRIMINATOR_CONV_KEY.match(key))
    }
    if len(trunk_convs) < 2:
        raise CheckpointMismatchError(
            "not a U-GAT-IT discriminator state dict: expected legacy spectral-norm keys 'model.<i>.weight_orig'"
        )
    first_conv = trunk_convs[min(trunk_convs)]
    # The trunk has one convolution per layer except the final 1-channel conv (stored as 'conv').
    return {"input_nc": first_conv.shape[1], "ndf": first_conv.shape[0], "n_layers": len(trunk_convs) + 1}

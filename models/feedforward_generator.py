"""The feed-forward generator of --model gatys_feedforward, its checkpoints and its translator.

The target band differs from the source mostly in each channel's mean and spread and in its speckle grain, and
the Gatys style loss measures exactly those (it is dominated by the first VGG block's Gram matrix). The network
is built so these are learned first and fast, by a few explicit parameters, and everything else by a small
convolutional body at full resolution:

- output head: ``w_source * source + w_normalized * normalized(source) + offset`` per channel, where
  ``normalized`` is the source standardized over the whole image (instance normalization). It sets each
  channel's mean and spread as a blend of the source's own and a learned band-wide value: what every image
  needs to reach the band's mean Gram.
- grain: ``(amplitude + modulation * source) * filtered(noise)`` per channel: new speckle, independent between
  channels, shaped by a learned 3x3 filter, stronger or weaker with the brightness. The noise is hashed from the
  source values at the pixel and its right and lower neighbours (grain_noise), so it needs no position and no
  random state: a pixel gets the same noise in a whole image and in any tile that holds it.
- body: ``n_layers`` reflect-padded 3x3 convolutions with LeakyReLU on the source and the noise; after the first
  half, the features are joined by their own image-wide standardization (one instance-normalization layer), so
  the change adapts to each image's statistics; a last 3x3 convolution, starting at zero, gives the change.

The untrained generator is the identity (output = source). Both instance-normalization layers read the source
only through local layers, so the tiler's collecting pass gathers their whole-image statistics exactly: with two
passes (--tile_passes 2) a tiled translation equals the whole-image one away from tile borders. The network has
no down-sampling: any image size works; the tiler still pads to multiples of 4.

FeedForwardTranslator satisfies the translator protocol of models/tiling.py, so tiled translation of large
scenes goes through the one blended tiler (translate_tiled), with instance statistics pooled over the image.
"""

import torch
import torch.nn.functional as F
from torch import nn

from data.radiometry import to_channels
from models.tiling import translate_tiled, translate_whole
from util.checkpoint import check_version, load_checkpoint, load_state_dict_strict
from util.device import autocast_dtype
from util.errors import SargenError

CHECKPOINT_SUFFIX = "_net_gatys_feedforward.pth"
STATE_KEY = "sargen_gatys_feedforward"
NETWORK_NAME = "generator"
ARCHITECTURE = "normalized-head-grain"  # recorded in checkpoints; generators of the first design have none
LEAKY_SLOPE = 0.2
HEAD_LR_SCALE = 10.0  # the head's and grain's few parameters learn at this multiple of --lr
NOISE_LEVELS = 65535  # source values are quantized to this many steps before hashing
HASH_MULTIPLIER = 0x45D9F3B  # a 32-bit integer mixing constant (< 2**27: products stay within int64)
HASH_MASK = 0xFFFFFFFF
NOISE_SEED = 0x9E3779B1
CONTEXT_SCALE = 4  # the context branch's down-sampling: the tiler's 4 px grid keeps it aligned across tiles


def _mix32(values):
    """An integer hash of int64 tensors holding 32-bit values (two multiply-xorshift rounds)."""
    values = ((values >> 16) ^ values) * HASH_MULTIPLIER & HASH_MASK
    values = ((values >> 16) ^ values) * HASH_MULTIPLIER & HASH_MASK
    return (values >> 16) ^ values


def grain_noise(images, channels):
    """`channels` maps of unit-variance uniform noise, hashed from each pixel's values and its right and lower
    neighbours' (edges repeated): a deterministic function of the source around the pixel, so equal in a whole
    image and in any tile holding the pixel and its neighbours."""
    levels = ((images.float().clamp(-1.0, 1.0) + 1.0) * (NOISE_LEVELS / 2.0)).round().to(torch.int64)
    padded = F.pad(levels, (0, 1, 0, 1), mode="replicate")
    height, width = images.shape[-2:]
    neighbourhood = [padded[:, :, :height, :width], padded[:, :, :height, 1:], padded[:, :, 1:, :width]]
    maps = []
    for channel in range(channels):
        hashed = torch.full_like(levels[:, 0], (NOISE_SEED * (channel + 1)) & HASH_MASK)
        for values in neighbourhood:
            for band in range(values.shape[1]):
                hashed = _mix32(hashed ^ values[:, band])
        uniform = (hashed & 0xFFFFFF).to(images.dtype if images.is_floating_point() else torch.float32) / 0x1000000
        maps.append((uniform * 2.0 - 1.0) * 3.0**0.5)
    return torch.stack(maps, dim=1).to(torch.float32)


def conv3x3(in_channels, out_channels):
    """A reflect-padded 3x3 convolution."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, padding_mode="reflect")


def conv_stack(in_channels, channels, count):
    """`count` 3x3 convolutions, each followed by LeakyReLU."""
    layers = []
    for _ in range(count):
        layers += [conv3x3(in_channels, channels), nn.LeakyReLU(LEAKY_SLOPE)]
        in_channels = channels
    return nn.Sequential(*layers)


class FeedForwardGenerator(nn.Module):
    """Source image in [-1, 1] -> generated target-band image in [-1, 1], in one pass (see the module docstring)."""

    def __init__(self, input_nc=3, output_nc=3, ngf=16, n_layers=3):
        """Build the network: `ngf` channels; `n_layers` convolutions at full resolution (the first half before the
        image-wide normalization) and as many in the quarter-resolution context branch."""
        super().__init__()
        if ngf < 1 or n_layers < 1:
            raise ValueError(f"ngf and n_layers must be >= 1, got {ngf} and {n_layers}")
        self.input_nc, self.output_nc, self.ngf, self.n_layers = input_nc, output_nc, ngf, n_layers
        before = (n_layers + 1) // 2
        self.encode = conv_stack(input_nc + output_nc, ngf, before)
        self.normalize = nn.InstanceNorm2d(ngf)
        self.context = conv_stack(input_nc, ngf, n_layers)
        self.context_normalize = nn.InstanceNorm2d(ngf)
        self.context_merge = conv_stack(2 * ngf, ngf, 1)
        self.decode = conv_stack(3 * ngf, ngf, n_layers - before)
        self.change = conv3x3(ngf if n_layers > before else 3 * ngf, output_nc)
        nn.init.zeros_(self.change.weight)  # start as the identity: the change is zero
        nn.init.zeros_(self.change.bias)
        channel_shape = (1, output_nc, 1, 1)
        self.source_norm = nn.InstanceNorm2d(output_nc)
        self.source_weight = nn.Parameter(torch.ones(channel_shape))
        self.normalized_weight = nn.Parameter(torch.zeros(channel_shape))
        self.offset = nn.Parameter(torch.zeros(channel_shape))
        self.grain_amplitude = nn.Parameter(torch.zeros(channel_shape))
        self.grain_modulation = nn.Parameter(torch.zeros(channel_shape))
        identity = torch.zeros(output_nc, 1, 3, 3)
        identity[:, 0, 1, 1] = 1.0
        self.grain_filter = nn.Parameter(identity)

    def head_parameters(self):
        """The output head's and the grain's parameters (a few per channel: trained at a higher rate)."""
        return [self.source_weight, self.normalized_weight, self.offset, self.grain_amplitude,
                self.grain_modulation, self.grain_filter]

    def body_change(self, images, noise):
        """The body's change: full-resolution features and their image-wide standardization, joined by the
        quarter-resolution context (regions' brightness and texture, which speckle hides from single pixels)."""
        features = self.encode(torch.cat([images, noise.to(images.dtype)], dim=1))
        context = self.context(F.avg_pool2d(images, CONTEXT_SCALE, ceil_mode=True))
        context = self.context_merge(torch.cat([context, self.context_normalize(context)], dim=1))
        context = F.interpolate(context, scale_factor=CONTEXT_SCALE, mode="bilinear", align_corners=False)
        height, width = images.shape[-2:]
        joined = torch.cat([features, self.normalize(features), context[..., :height, :width]], dim=1)
        return self.change(self.decode(joined))

    def forward(self, images):
        """Translate a B x input_nc x H x W batch in [-1, 1]."""
        noise = grain_noise(images, self.output_nc)
        change = self.body_change(images, noise)
        source = to_channels(images, self.output_nc).float()
        filtered = F.conv2d(F.pad(noise, (1, 1, 1, 1), mode="reflect"), self.grain_filter.float(),
                            groups=self.output_nc)
        grain = (self.grain_amplitude + self.grain_modulation * source) * filtered
        # the head in float32 whatever the body's arithmetic: 8-bit outputs need more than bfloat16's 8 bits
        head = self.source_weight * source + self.normalized_weight * self.source_norm(source) + self.offset
        return (head + grain + change.float()).clamp(-1.0, 1.0)

    def description(self):
        """The architecture in words."""
        return (f"feed-forward generator ({ARCHITECTURE}) ngf {self.ngf}, {self.n_layers} layers, "
                f"{self.input_nc}->{self.output_nc} channels")


def generator_config(state_dict, path):
    """FeedForwardGenerator's keyword arguments read from a state dict's shapes; a one-line error for generators of
    the first design (encoder, residual blocks, decoder), which this sargen no longer builds."""
    if "stem.1.weight" in state_dict:
        raise SargenError(f"{path} holds a feed-forward generator of sargen's first design (down-sampling encoder, "
                          f"residual blocks): this sargen builds another network; retrain it with train.py --model "
                          f"gatys_feedforward (minutes on a CPU)")
    try:
        first, change = state_dict["encode.0.weight"], state_dict["change.weight"]
    except KeyError as error:
        raise SargenError(f"{path} '{NETWORK_NAME}' is not a feed-forward generator state dict: "
                          f"{error.args[0]} is missing") from None
    output_nc = change.shape[0]
    layers = sum(1 for key in state_dict if key.endswith(".weight") and key.startswith("context."))
    return {"input_nc": first.shape[1] - output_nc, "output_nc": output_nc, "ngf": first.shape[0],
            "n_layers": layers}


def holds_feedforward(payload):
    """Whether a loaded checkpoint payload holds a --model gatys_feedforward generator."""
    return isinstance(payload, dict) and NETWORK_NAME in payload and STATE_KEY in payload


def check_feedforward_checkpoint(payload, path):
    """Check that a loaded payload holds a feed-forward generator in this sargen's format version; return it."""
    if not isinstance(payload, dict) or NETWORK_NAME not in payload:
        found = ", ".join(sorted(map(str, payload))[:6]) if isinstance(payload, dict) else type(payload).__name__
        raise SargenError(f"{path} is not a --model gatys_feedforward checkpoint: expected a '{NETWORK_NAME}' "
                          f"state dict, found {found or 'nothing'}")
    return check_version(payload, path)


def read_feedforward_checkpoint(path):
    """Load a --model gatys_feedforward checkpoint (weights_only) and check it (check_feedforward_checkpoint)."""
    return check_feedforward_checkpoint(load_checkpoint(path, "feed-forward generator checkpoint"), path)


def generator_from_checkpoint(payload, path):
    """The generator of a checkpoint payload, built with the shapes its state dict has."""
    state = payload[NETWORK_NAME]
    generator = FeedForwardGenerator(**generator_config(state, path))
    return load_state_dict_strict(generator, state, f"{path} '{NETWORK_NAME}'")


class FeedForwardTranslator:
    """A generator in eval mode on a device: the translator protocol of models/tiling.py.

    Called on a B x C x H x W batch in [-1, 1] it returns (output, None, None) as float32 on the CPU: the
    generator has no attention logit or heatmap.
    """

    def __init__(self, generator, device, precision="auto"):
        """Move `generator` to `device`; `precision` as --precision (auto: bfloat16 where the hardware has it)."""
        self.device = torch.device(device)
        self.dtype = autocast_dtype(self.device, precision)
        self.generator = generator.eval().requires_grad_(False).to(self.device)

    has_heatmap = False  # no attention: the tiler's heatmap is None

    @property
    def input_nc(self):
        """Channels the generator expects."""
        return self.generator.input_nc

    @property
    def description(self):
        """The network and arithmetic, for logs and results pages."""
        return f"{self.generator.description()}, {self.dtype or torch.float32} on {self.device}"

    def __call__(self, images):
        """Translate a batch whose sides are multiples of 4; return (output, None, None) on the CPU."""
        dtype = self.dtype
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype or torch.float32,
                                                    enabled=dtype is not None):
            return self.generator(images.to(self.device)).float().cpu(), None, None


def feedforward_translator(payload, path, device, precision="auto"):
    """The translator of a loaded --model gatys_feedforward checkpoint, with the radiometry record it was trained on."""
    translator = FeedForwardTranslator(generator_from_checkpoint(payload, path), device, precision)
    state = payload.get(STATE_KEY)
    translator.radiometry_record = state.get("radiometry") if isinstance(state, dict) else None
    return translator


def load_feedforward_translator(path, device, precision="auto"):
    """The translator of a --model gatys_feedforward checkpoint file (feedforward_translator)."""
    return feedforward_translator(read_feedforward_checkpoint(path), path, device, precision)


def translate_image(translator, image, tile=0, overlap=32, **tiling):
    """Translate one C x H x W image of any size: whole (padded to multiples of 4), or tiled with `tile` px tiles
    (`tiling`: translate_tiled's keyword arguments)."""
    if tile:
        return translate_tiled(translator, image, tile, overlap, **tiling)[0]
    return translate_whole(translator, image)[0]


def translate_batch(translator, images, **tiling):
    """translate_image for each image of a batch (a B x C x H x W tensor or a list); a tensor or list back."""
    outputs = [translate_image(translator, image, **tiling) for image in images]
    return torch.stack(outputs) if isinstance(images, torch.Tensor) else outputs

"""The feed-forward generator of --model gatys_feedforward, its checkpoints and its translator.

The network follows Johnson et al. (2016) with Ulyanov et al.'s (2016) instance normalization: a 9x9 stem,
two stride-2 3x3 convolutions, --n_res residual blocks (models.ugatit_networks.ResnetBlock: reflect-padded 3x3
convolutions with instance normalization), two nearest-neighbour x2 up-samplings each followed by a 3x3
convolution (no transposed convolutions, so no checkerboard artefacts), and a 9x9 output convolution. Every inner
convolution is followed by instance normalization and ReLU. The output convolution gives the change to the source
image, in tanh's domain: output = tanh(atanh(source) + change), with the convolution starting at zero. The bands
of one scene share its structure, so the untrained network is the identity (zero content loss, the source's style
loss) and training only has to learn the band's change, radiometry and speckle grain. It is fully convolutional:
any image whose sides are multiples of 4 (others are padded), so it trains on crops and translates whole scenes.

FeedForwardTranslator satisfies the translator protocol of models/tiling.py, so tiled translation of large
scenes goes through the one blended tiler (translate_tiled), with instance statistics pooled over the image.
"""

import re

import torch
from torch import nn

from data.radiometry import to_channels
from models.tiling import translate_tiled, translate_whole
from models.ugatit_networks import DOWNSAMPLING_STEPS, ResnetBlock
from util.checkpoint import check_version, load_checkpoint, load_state_dict_strict
from util.device import autocast_dtype
from util.errors import SargenError

CHECKPOINT_SUFFIX = "_net_gatys_feedforward.pth"
STATE_KEY = "sargen_gatys_feedforward"
NETWORK_NAME = "generator"
OUTER_KERNEL = 9
# Stride-2 down-samplings and x2 up-samplings: U-GAT-IT's count, whose 4 px multiples the tiler's splits assume.
SAMPLING_STEPS = DOWNSAMPLING_STEPS
SOURCE_LIMIT = 0.999  # sources are clamped to +-this before atanh (atanh(1) is infinite): +-3.8
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")


def conv_norm_relu(in_channels, out_channels, kernel_size, stride=1):
    """Reflection padding, a bias-free convolution, instance normalization and ReLU."""
    return [nn.ReflectionPad2d(kernel_size // 2),
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, bias=False),
            nn.InstanceNorm2d(out_channels), nn.ReLU(True)]


class FeedForwardGenerator(nn.Module):
    """Source image in [-1, 1] -> generated target-band image in [-1, 1], in one pass."""

    def __init__(self, input_nc=3, output_nc=3, ngf=32, n_res=5):
        """Build the network: ngf channels at full resolution, 4 ngf at the residual blocks."""
        super().__init__()
        if ngf < 1 or n_res < 0:
            raise ValueError(f"ngf must be >= 1 and n_res >= 0, got {ngf} and {n_res}")
        self.input_nc, self.output_nc, self.ngf, self.n_res = input_nc, output_nc, ngf, n_res
        self.stem = nn.Sequential(*conv_norm_relu(input_nc, ngf, OUTER_KERNEL))
        down, channels = [], ngf
        for _ in range(SAMPLING_STEPS):
            down += conv_norm_relu(channels, channels * 2, 3, stride=2)
            channels *= 2
        self.down = nn.Sequential(*down)
        self.blocks = nn.Sequential(*[ResnetBlock(channels) for _ in range(n_res)])
        up = []
        for _ in range(SAMPLING_STEPS):
            up += [nn.Upsample(scale_factor=2, mode="nearest"), *conv_norm_relu(channels, channels // 2, 3)]
            channels //= 2
        self.up = nn.Sequential(*up)
        self.output = nn.Sequential(nn.ReflectionPad2d(OUTER_KERNEL // 2),
                                    nn.Conv2d(channels, output_nc, OUTER_KERNEL))
        nn.init.zeros_(self.output[1].weight)  # start as the identity: the change is zero
        nn.init.zeros_(self.output[1].bias)

    def forward(self, images):
        """Translate a B x input_nc x H x W batch (H, W multiples of 4): tanh(atanh(source) + change)."""
        change = self.output(self.up(self.blocks(self.down(self.stem(images)))))
        source = to_channels(images, self.output_nc).clamp(-SOURCE_LIMIT, SOURCE_LIMIT)
        return torch.tanh(torch.atanh(source) + change)

    def description(self):
        """The architecture in words."""
        return (f"feed-forward generator ngf {self.ngf}, {self.n_res} residual blocks, "
                f"{self.input_nc}->{self.output_nc} channels")


def generator_config(state_dict, path):
    """FeedForwardGenerator's keyword arguments read from a state dict's shapes."""
    try:
        stem, output = state_dict["stem.1.weight"], state_dict["output.1.weight"]
    except KeyError as error:
        raise SargenError(f"{path} '{NETWORK_NAME}' is not a feed-forward generator state dict: "
                          f"{error.args[0]} is missing") from None
    blocks = {match.group(1) for key in state_dict if (match := _BLOCK_KEY.match(key))}
    return {"input_nc": stem.shape[1], "output_nc": output.shape[0], "ngf": stem.shape[0], "n_res": len(blocks)}


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

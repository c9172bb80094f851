"""The --model pix2pix checkpoint and the translator test.py and app.py run its generator with.

A checkpoint is one torch file holding the state dicts ``G`` (generator) and ``D`` (discriminator) and, under
``sargen_pix2pix``, plain values only (loadable with weights_only=True): the step, the options (which say the
architecture: --netG, --ngf, --norm, --no_dropout, the channels), the optimizer and random states, the image
pool and the radiometry record of both domains.

Inference runs the generator in eval mode: batch normalization with its running statistics, which is one
per-channel multiply-add, folded here into the convolution before it (fewer passes over the features; equal to
the unfolded network up to float rounding). Every pixel is then normalized alike wherever it lies, so a tile is
normalized as the whole image is (the original's test.py normalizes each test image with its own statistics
unless given --eval). Instance normalization (--norm instance) is pooled over the image by the tiler's hooks.
"""

import copy

import torch
from torch import nn

from models.feedforward_generator import FeedForwardTranslator
from models.pix2pix_networks import build_generator
from util.checkpoint import check_version, load_checkpoint, load_state_dict_strict
from util.errors import SargenError

CHECKPOINT_SUFFIX = "_net_pix2pix.pth"
STATE_KEY = "sargen_pix2pix"
GENERATOR, DISCRIMINATOR = "G", "D"
GENERATOR_OPTIONS = ("netG", "ngf", "norm", "no_dropout", "input_nc", "output_nc", "direction")


def holds_pix2pix(payload):
    """Whether a loaded checkpoint payload holds a --model pix2pix generator."""
    return isinstance(payload, dict) and GENERATOR in payload and STATE_KEY in payload


def read_pix2pix_checkpoint(path):
    """Load a --model pix2pix checkpoint (weights_only), check it and its format version; return the payload."""
    payload = load_checkpoint(path, "pix2pix checkpoint")
    if not holds_pix2pix(payload):
        found = ", ".join(sorted(map(str, payload))[:6]) if isinstance(payload, dict) else type(payload).__name__
        raise SargenError(f"{path} is not a --model pix2pix checkpoint: expected the '{GENERATOR}' state dict and "
                          f"'{STATE_KEY}', found {found or 'nothing'}")
    return check_version(payload, path)


def generator_options(payload, path):
    """{netG, ngf, norm, no_dropout, input_nc, output_nc, direction} the checkpoint's generator was trained with."""
    state = payload[STATE_KEY]
    options = state.get("options") if isinstance(state, dict) else None
    missing = [name for name in GENERATOR_OPTIONS if not isinstance(options, dict) or name not in options]
    if missing:
        raise SargenError(f"{path}: its pix2pix state records no {', '.join(missing)}: it was not written by "
                          f"train.py --model pix2pix")
    return {name: options[name] for name in GENERATOR_OPTIONS}


def generator_channels(options):
    """(source, target) channel counts of the generator for options with input_nc (domain A), output_nc (domain B)
    and direction (a dict or a namespace): B's channels in and A's out for BtoA."""
    get = options.get if isinstance(options, dict) else lambda name: getattr(options, name)
    channels = (get("input_nc"), get("output_nc"))
    return channels[::-1] if get("direction") == "BtoA" else channels


def generator_from_checkpoint(payload, path):
    """The checkpoint's generator, built as its options say and loaded (strict)."""
    options = generator_options(payload, path)
    generator = build_generator(options["netG"], *generator_channels(options), options["ngf"], options["norm"],
                                not options["no_dropout"])
    return load_state_dict_strict(generator, payload[GENERATOR], f"{path} '{GENERATOR}'")


def fold_batch_norm(generator):
    """An eval-only copy of `generator` with every batch normalization folded into the convolution before it."""
    folded = copy.deepcopy(generator).eval()
    for sequence in folded.modules():
        if not isinstance(sequence, nn.Sequential):
            continue
        for index in range(1, len(sequence)):
            norm, convolution = sequence[index], sequence[index - 1]
            if not (isinstance(norm, nn.BatchNorm2d) and isinstance(convolution, (nn.Conv2d, nn.ConvTranspose2d))):
                continue
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            shift = norm.bias - norm.running_mean * scale
            # a convolution's output channels are weight dim 0, a transposed convolution's dim 1
            shape = (1, -1, 1, 1) if isinstance(convolution, nn.ConvTranspose2d) else (-1, 1, 1, 1)
            with torch.no_grad():
                convolution.weight.mul_(scale.view(shape))
                bias = shift if convolution.bias is None else convolution.bias * scale + shift
                convolution.bias = nn.Parameter(bias.detach().clone())
            sequence[index] = nn.Identity()
    return folded


def generator_translator(generator, device, precision="auto"):
    """The translator (models/tiling.py's protocol) of a trained generator: eval mode, batch norm folded, float32
    on the CPU unless --precision bfloat16 (auto: bfloat16 on CUDA GPUs that have it, as app.py documents)."""
    device = torch.device(device)
    if precision == "auto" and device.type == "cpu":
        precision = "float32"
    return FeedForwardTranslator(fold_batch_norm(generator), device, precision)


def pix2pix_translator(payload, path, direction="AtoB", device="cpu", precision="auto", img_size=None):
    """A translator of a loaded --model pix2pix checkpoint for app.py, with the radiometry record it was trained on
    (a pix2pix generator translates the direction it was trained for only)."""
    trained = generator_options(payload, path)["direction"]
    if direction != trained:
        raise SargenError(f"{path} is a --model pix2pix generator trained for --direction {trained}, which it only "
                          f"translates: pass --direction {trained}")
    translator = generator_translator(generator_from_checkpoint(payload, path), device, precision)
    translator.radiometry_record = payload[STATE_KEY].get("radiometry")
    return translator

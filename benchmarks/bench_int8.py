"""int8 on the CPU for app.py: speed and grey-level difference against float32, and whether --precision int8 pays.

The published-shape light U-GAT-IT generator (ngf 64, 4 residual blocks, 256 px, 3 channels in and out) with
every weight perturbed by 0.02 x randn (tests/ugatit_helpers.perturbed_generators) translates 256 px optical
tiles of synthetic land cover (datasets/make_dataset.render_optical) in three ways:

- float32: app.py's CPU path (models.ugatit_inference.Translator, --precision float32);
- int8, every hidden convolution: each convolution but the first (the image's) and the last (the output's)
  runs in oneDNN's int8 kernels (VNNI where the CPU has it): weights int8 per output channel, the input uint8
  with its scale measured at every call (the best a per-tensor scale can do), the result float32;
- int8, the decoder's residual blocks only: the largest set of convolutions found within 2 grey levels at
  the 99th percentile; the difference with each other group of convolutions (an encoder residual block, the
  downsampling or the upsampling convolutions, the attention's 1x1) added to it is printed as well.

Speed is measured interleaved (float32, then each int8 variant, repeated) in one process, so that a shared
machine slows all alike; the per-repeat ratios and their median are printed. The criterion of the issue:
offer --precision int8 only if it is >= 1.5x faster than float32 AND within 2 grey levels at p99.

    python benchmarks/bench_int8.py                       # about 2 minutes on 2 quiet cores
    python benchmarks/bench_int8.py --repeats 9 --threads 2
"""

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

# Run as a script, Python puts benchmarks/ on sys.path, not the repository root.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np
import torch
from torch import nn
from ugatit_helpers import perturbed_generators

from data.image_io import tensor_to_uint8
from datasets.make_dataset import CATEGORIES, render_optical
from models.ugatit_inference import Translator
from models.ugatit_networks import Generator

MAX_GREY_LEVELS, MIN_SPEEDUP = 2, 1.5
VNNI_PEAK_GAIN = 4  # int8 multiply-adds per 32-bit lane (VNNI) against one float32 FMA


class Int8Convolution(nn.Module):
    """A convolution run by oneDNN in int8: per-channel int8 weights, the input quantized per call, float32 out."""

    def __init__(self, conv):
        """Quantize and prepack `conv`'s weights (symmetric, one scale per output channel)."""
        super().__init__()
        weight = conv.weight.detach().float()
        self.weight_scale = (weight.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12) / 127).float()
        quantized = torch.round(weight / self.weight_scale[:, None, None, None]).clamp(-128, 127).to(torch.int8)
        self.weight_zero_point = torch.zeros(weight.shape[0], dtype=torch.int32)
        self.geometry = (list(conv.stride), list(conv.padding), list(conv.dilation), conv.groups)
        self.packed = torch.ops.onednn.qconv_prepack(quantized, self.weight_scale, 1.0, 0, *self.geometry, None)
        self.bias = None if conv.bias is None else conv.bias.detach().float()

    def forward(self, features):
        """The convolution of float32 `features`, computed in int8."""
        low, high = (value.item() for value in torch.aminmax(features))
        low, high = min(low, 0.0), max(high, 0.0)
        scale = max(high - low, 1e-8) / 255
        zero_point = int(round(-low / scale))
        quantized = torch.round(features * (1.0 / scale)).add_(zero_point).clamp_(0, 255).to(torch.uint8)
        return torch.ops.onednn.qconv2d_pointwise(quantized, scale, zero_point, self.packed, self.weight_scale,
                                                 self.weight_zero_point, self.bias, *self.geometry, 1.0, 0,
                                                 torch.float32, "none", [], "")


def convolution_names(generator):
    """The names of the generator's convolutions, in module order."""
    return [name for name, module in generator.named_modules() if isinstance(module, nn.Conv2d)]


def with_int8(generator, selected):
    """A copy of `generator` whose convolutions named in `selected` run in int8."""
    generator = copy.deepcopy(generator)
    for name in selected:
        parent_name, _, child = name.rpartition(".")
        parent = generator.get_submodule(parent_name) if parent_name else generator
        setattr(parent, child, Int8Convolution(getattr(parent, child)))
    return generator


def convolution_groups(hidden):
    """{label: names} of the hidden convolutions outside the decoder's residual blocks, in groups."""
    encoder_blocks = sorted({int(name.split(".")[1]) for name in hidden if ".conv_block." in name})
    groups = {"downsampling convolutions": [name for name in hidden
                                            if name.startswith("DownBlock.") and ".conv_block." not in name],
              "upsampling convolutions": [name for name in hidden if name.startswith("UpBlock2.")],
              "attention 1x1": [name for name in hidden if name == "conv1x1"]}
    for index, layer in enumerate(encoder_blocks, start=1):
        groups[f"encoder residual block {index}"] = [name for name in hidden if name.startswith(f"DownBlock.{layer}.")]
    return groups


def multiply_adds(generator, size):
    """{convolution name: multiply-adds} of one forward pass at `size` px, measured with forward hooks."""
    counts, hooks = {}, []
    for name, module in generator.named_modules():
        if isinstance(module, nn.Conv2d):
            def count(module, inputs, output, name=name):
                counts[name] = output.numel() * module.in_channels // module.groups * module.kernel_size[0] * \
                    module.kernel_size[1]
            hooks.append(module.register_forward_hook(count))
    with torch.inference_mode():
        generator(torch.zeros(1, generator.input_nc, size, size))
    for hook in hooks:
        hook.remove()
    return counts


def optical_tiles(count, size):
    """`count` synthetic optical 256 px tiles (one land-cover category each) in [-1, 1], 1x3xHxW."""
    rng = np.random.default_rng(0)
    tiles = []
    for index in range(count):
        image = render_optical(rng, size, CATEGORIES[index % len(CATEGORIES)])
        tiles.append(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1.0)
    return tiles


def grey_levels(output):
    """A 1xCxHxW output in [-1, 1] as app.py's 8-bit levels (int array)."""
    return tensor_to_uint8(output[0], (-1.0, 1.0)).astype(np.int64)


def build_parser():
    """Benchmark settings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ngf", type=int, default=64, help="base channels of the light generator (published: 64)")
    parser.add_argument("--n_blocks", type=int, default=4, help="residual blocks (published: 4)")
    parser.add_argument("--tile", type=int, default=256, help="tile side in pixels")
    parser.add_argument("--tiles", type=int, default=5, help="tiles compared with float32 (accuracy)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    return parser


def main():
    """Measure accuracy and interleaved speed of each variant; print the ratios and the verdict."""
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    states = perturbed_generators(ngf=args.ngf, n_blocks=args.n_blocks, img_size=args.tile, input_nc=3, output_nc=3)
    generator = Generator(3, 3, ngf=args.ngf, n_blocks=args.n_blocks, img_size=args.tile, light=True)
    generator.load_state_dict(states["genA2B"])
    names = convolution_names(generator)
    first, last = names[names.index("DownBlock.1")], names[-1]
    hidden = [name for name in names if name not in (first, last)]
    decoder = [name for name in names if name.startswith("UpBlock1_")]
    work = multiply_adds(generator, args.tile)
    variants = {"float32": Translator(copy.deepcopy(generator), "cpu", "float32"),
                "int8 every hidden convolution": Translator(with_int8(generator, hidden), "cpu", "float32"),
                "int8 decoder residual blocks": Translator(with_int8(generator, decoder), "cpu", "float32")}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; light generator ngf {args.ngf}, {args.n_blocks} residual "
          f"blocks, {args.tile} px tiles, weights perturbed by 0.02 x randn", flush=True)
    tiles = optical_tiles(args.tiles, args.tile)
    reference = [grey_levels(variants["float32"](tile)[0]) for tile in tiles]
    accuracy = {}
    for label, translator in list(variants.items())[1:]:
        difference = np.concatenate([np.abs(grey_levels(translator(tile)[0]) - ref).ravel()
                                     for tile, ref in zip(tiles, reference)])
        accuracy[label] = (np.percentile(difference, 99), difference.mean(), difference.max())
    groups = convolution_groups(hidden)
    added = []
    for label, group in groups.items():
        translator = Translator(with_int8(generator, decoder + group), "cpu", "float32")
        difference = np.concatenate([np.abs(grey_levels(translator(tile)[0]) - ref).ravel()
                                     for tile, ref in zip(tiles, reference)])
        added.append(f"{label} {np.percentile(difference, 99):.0f}")
    print(f"p99 grey levels from float32 with the decoder's residual blocks and one more group in int8: "
          f"{'; '.join(added)}", flush=True)
    seconds = {label: [] for label in variants}
    for _ in range(args.repeats):
        for label, translator in variants.items():
            started = time.perf_counter()
            translator(tiles[0])
            seconds[label].append(time.perf_counter() - started)
    print(f"float32: {statistics.median(seconds['float32']):.3f} s a tile (median of {args.repeats})")
    offered = []
    for label in list(variants)[1:]:
        ratios = [plain / fast for plain, fast in zip(seconds["float32"], seconds[label])]
        speedup = statistics.median(ratios)
        p99, mean, largest = accuracy[label]
        share = sum(work[name] for name in (hidden if "every" in label else decoder)) / sum(work.values())
        bound = 1 / (1 - share + share / VNNI_PEAK_GAIN)
        passes = speedup >= MIN_SPEEDUP and p99 <= MAX_GREY_LEVELS
        offered += [label] if passes else []
        print(f"{label}: {statistics.median(seconds[label]):.3f} s a tile, {speedup:.2f}x float32 (per repeat: "
              f"{', '.join(f'{ratio:.2f}' for ratio in ratios)}); difference from float32 p99 {p99:.0f}, mean "
              f"{mean:.2f}, max {largest:.0f} grey levels; {share:.0%} of the multiply-adds in int8 (at most "
              f"{bound:.2f}x with VNNI's {VNNI_PEAK_GAIN}x peak) -> {'meets' if passes else 'fails'} the criterion "
              f"(>= {MIN_SPEEDUP}x and p99 <= {MAX_GREY_LEVELS})", flush=True)
    print(f"verdict: {'offer --precision int8 (' + offered[0] + ')' if offered else 'leave --precision int8 out'}")


if __name__ == "__main__":
    main()

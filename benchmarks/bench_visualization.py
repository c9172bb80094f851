"""Feature visualization: the original method against sargen's engine, same settings, same run.

The original method optimizes one image at a time in pixel space with plain Adam (pixels clamped to [0, 1]) and
runs the VGG cut at the layer, all channels, twice per step: once for the gradient, once more for the objective
it logs. sargen's engine optimizes a chunk of images as one batch, runs the network once per step and computes
only the selected channels of the last convolution (bfloat16 where the CPU has it).

Both start from the same noise with the same optimizer settings, so their objectives follow the same curve.
The printed ratio is the original's time over sargen's time to reach the original's final mean objective.
Style: every pair is run by both. Content (all channels of each layer would take hours with the original):
each layer's first --baseline_images channels run the original method and the first --sample_images channels
run sargen's engine, in chunks of --max_batch; the per-image times are extrapolated to all the layer's channels
(every image of a layer costs the same) and the objectives compared over the common channels.

    python benchmarks/bench_visualization.py            # small settings, a few minutes on 2 CPU cores
    python benchmarks/bench_visualization.py --full     # the issue's settings (500 steps): about 15 minutes
"""

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

# Run as a script, Python puts benchmarks/ and not the repository root on sys.path: add the root.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch

from models.vgg import layer_names, load_vgg_features, vgg_input
from util.cli import run_main
from visualization.feature_optimization import (
    FeatureVisualizer,
    PixelImages,
    Settings,
    make_targets,
    objective_values,
)

EXTRA_STEPS = 0.1  # sargen runs this fraction more steps, in case bfloat16 rounding leaves it a hair behind


def layer_output(network, images, layer_index):
    """The output of module `layer_index` of `network` (all modules still run)."""
    captured = None
    for index, module in enumerate(network):
        images = module(images)
        if index == layer_index:
            captured = images
    return captured


def run_original(features, layer_index, targets, settings, all_layers=False):
    """The original method, one image at a time; returns (seconds, final objective per image).

    The network is cut after the layer (the issue's timing of the original matches this), or with `all_layers`
    runs every module of `features` as the original's description says.
    """
    network = features if all_layers else features[:layer_index + 1]
    finals = []
    started = time.perf_counter()
    for target in targets:
        generator = torch.Generator().manual_seed(target.seed(settings.seed))
        image = PixelImages.initial_noise(generator, settings.input_nc, settings.im_size)[None].requires_grad_()
        optimizer = torch.optim.Adam([image], lr=settings.lr)
        channels = list(target.channels) if len(target.channels) == 2 else [target.channels[0]]
        for _ in range(settings.n_iter):
            optimizer.zero_grad()
            objective = objective_values(layer_output(network, vgg_input(image), layer_index)[:, channels])
            (-objective.sum()).backward()
            optimizer.step()
            with torch.no_grad():
                image.clamp_(0.0, 1.0)
                logged = objective_values(layer_output(network, vgg_input(image), layer_index)[:, channels])
        finals.append(logged.item())
    return time.perf_counter() - started, torch.tensor(finals)


def run_sargen(visualizer, layer_index, channels, settings):
    """sargen's engine on one layer, 10 % more steps than the original (bfloat16 rounding can leave it a hair
    behind); returns (seconds per step, objective curve: one row per step count from 0)."""
    visualizer.settings = replace(settings, n_iter=math.ceil(settings.n_iter * (1 + EXTRA_STEPS)))
    started = time.perf_counter()
    result = visualizer.run_layer(layer_index, channels)
    seconds = time.perf_counter() - started
    return seconds / visualizer.settings.n_iter, torch.cat([result.history, result.final_objective[None]])


def steps_to_reach(curve, target_value):
    """The first step count after which the mean objective reaches `target_value` (None if never)."""
    reached = (curve.mean(dim=1) >= target_value).nonzero()
    return int(reached[0]) if len(reached) else None


def compare(label, original_seconds, original_final, sargen_step_seconds, sargen_curve, n_iter):
    """Print one comparison line; returns sargen's seconds to reach the original's final mean objective.

    If the original did not raise the objective (a dead channel) or sargen never reaches it, sargen's time for
    the original's number of steps is used and said.
    """
    target_value = original_final.mean().item()
    steps = steps_to_reach(sargen_curve, target_value)
    same_steps = original_seconds / (sargen_step_seconds * n_iter)
    if steps is None or target_value <= sargen_curve[0].mean().item():
        why = "never reached" if steps is None else "not raised by the original"
        print(f"{label}: original {original_seconds:.1f} s, sargen {sargen_step_seconds * n_iter:.1f} s for {n_iter} "
              f"steps: {same_steps:.1f}x (the original's mean objective {target_value:.4g} {why}; "
              f"sargen: {sargen_curve[n_iter].mean():.4g})")
        return sargen_step_seconds * n_iter
    seconds = sargen_step_seconds * steps
    print(f"{label}: original {original_seconds:.1f} s for {n_iter} steps -> mean objective {target_value:.4g}; "
          f"sargen reaches it {reached_text(steps, n_iter, sargen_curve[n_iter].mean().item())} in {seconds:.1f} s: "
          f"{original_seconds / seconds:.1f}x (same steps: {same_steps:.1f}x)")
    return seconds


def reached_text(steps, n_iter, value_at_n_iter):
    """When sargen reached the original's objective, said against the original's step count."""
    if steps <= n_iter:
        return f"after {steps} of the original's {n_iter} steps ({value_at_n_iter:.4g} after all {n_iter})"
    return f"after {steps} steps, {steps - n_iter} more than the original ({value_at_n_iter:.4g} after {n_iter})"


def bench_style(args, features, visualizer):
    """The default StyleVisualization run: every pair of the first --n_channels channels of layer 3."""
    settings = original_settings(args, "style", 32)
    channels = list(range(args.n_channels))
    targets = make_targets("style", channels, 1)
    print(f"style: {args.model} layer {args.style_layer} ({layer_names(args.model)[args.style_layer]}), "
          f"{len(targets)} pairs, {settings.n_iter} steps, {settings.im_size} px")
    original_seconds, original_final = run_original(features, args.style_layer, targets, settings,
                                                    args.original_all_layers)
    sargen_step_seconds, sargen_curve = run_sargen(visualizer, args.style_layer, channels, settings)
    compare("style", original_seconds, original_final, sargen_step_seconds, sargen_curve, settings.n_iter)


def bench_content(args, features, visualizer):
    """ContentVisualization over --content_layers, all channels, extrapolated from samples per layer."""
    settings = original_settings(args, "content", 64)
    total_original = total_sargen = 0.0
    print(f"content: {args.model} layers {args.content_layers}, all channels, {settings.n_iter} steps, "
          f"{settings.im_size} px (original: {args.baseline_images} images per layer, sargen: "
          f"{args.sample_images}; times extrapolated to all channels)")
    for layer_index in args.content_layers:
        count = visualizer.channel_count(layer_index)
        sample = list(range(min(args.sample_images, count)))
        common = min(args.baseline_images, len(sample))
        original_seconds, original_final = run_original(
            features, layer_index, make_targets("content", sample[:common], 1), settings, args.original_all_layers)
        sargen_step_seconds, sargen_curve = run_sargen(visualizer, layer_index, sample, settings)
        layer_original = original_seconds / common * count
        total_original += layer_original
        total_sargen += compare(f"  layer {layer_index} ({layer_names(args.model)[layer_index]}, {count} channels)",
                                layer_original, original_final, sargen_step_seconds / len(sample) * count,
                                sargen_curve[:, :common], settings.n_iter)
    print(f"content total: original {total_original:.0f} s, sargen {total_sargen:.0f} s to the same objectives: "
          f"{total_original / total_sargen:.1f}x")


def original_settings(args, kind, im_size):
    """The original method's settings (pixel space, plain Adam, no transforms or penalty)."""
    return Settings(kind=kind, n_iter=args.n_iter, lr=args.lr, param="pixel", im_size=im_size, jitter=0, scale=0.0,
                    tv_weight=0.0, max_batch=args.max_batch, seed=0)


def parse_args(argv=None):
    """Benchmark options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the issue's settings: 500 steps, 16 channels")
    parser.add_argument("--which", default="style,content", help="style, content or both")
    parser.add_argument("--n_iter", type=int, default=None, help="steps (default 100, 500 with --full)")
    parser.add_argument("--n_channels", type=int, default=16, help="style: pairs over the first N channels")
    parser.add_argument("--style_layer", type=int, default=3, help="style: features index")
    parser.add_argument("--content_layers", default="3,8,15,22", help="content: features indices")
    parser.add_argument("--baseline_images", type=int, default=2, help="content: original-method images per layer")
    parser.add_argument("--sample_images", type=int, default=16, help="content: sargen images per layer")
    parser.add_argument("--max_batch", type=int, default=32, help="sargen's chunk size")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam step size (both methods)")
    parser.add_argument("--original_all_layers", action="store_true",
                        help="the original runs all of VGG's `features` twice per step, not only up to the layer")
    parser.add_argument("--model", default="vgg16", choices=("vgg16", "vgg19"))
    parser.add_argument("--vgg_weights", default="random", help="imagenet, random or PATH")
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="sargen's VGG arithmetic (the original runs float32)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both methods (1: steady timings on a shared machine)")
    args = parser.parse_args(argv)
    args.n_iter = args.n_iter or (500 if args.full else 100)
    args.content_layers = [int(part) for part in args.content_layers.split(",")]
    return args


def main():
    """Run the chosen comparisons and print their ratios."""
    args = parse_args()
    torch.set_num_threads(args.threads)
    features, description = load_vgg_features(args.model, args.vgg_weights, 0)
    features.requires_grad_(False).eval()
    visualizer = FeatureVisualizer(args.model, args.vgg_weights, Settings(), "cpu", args.precision)
    print(f"VGG weights {description}, sargen arithmetic {visualizer.autocast_dtype or torch.float32}, "
          f"{args.threads} thread(s)")
    if "style" in args.which:
        bench_style(args, features, visualizer)
    if "content" in args.which:
        bench_content(args, features, visualizer)


if __name__ == "__main__":
    run_main(main)

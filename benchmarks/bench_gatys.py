"""Time to reach the original algorithm's final loss: sargen's default Gatys path against the plain baseline.

The baseline is the original research code's algorithm: Adam (lr 0.01) on the image, the full VGG
`features` forward in float32, one image at a time. sargen runs its default test path (GatysModel.test
with its default optimizer, step count and precision). Both minimise the same float32 loss on the same
content and style images; the ratio is baseline wall time / sargen's wall time to reach the baseline's
final loss (checked in float32 on saved snapshots, outside the timed loop).

    python benchmarks/bench_gatys.py                       # 128 px, 300 baseline steps: a few minutes
    python benchmarks/bench_gatys.py --size 256 --baseline_steps 1000   # the issue's setting (~8 min)
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, Python puts benchmarks/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from data import create_dataloader, create_dataset
from datasets.make_dataset import main as make_dataset
from models.gatys_model import GatysModel
from models.losses import content_loss, gram_matrix, style_loss
from models.vgg import imagenet_normalize, load_vgg_features
from options.test_options import TestOptions


def build_parser():
    """Benchmark settings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="image size in pixels")
    parser.add_argument("--baseline_steps", type=int, default=300, help="Adam steps of the baseline")
    parser.add_argument("--vgg", default="vgg19", choices=("vgg16", "vgg19"))
    parser.add_argument("--vgg_weights", default="random", help="imagenet, random or a file")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--extra", default="", help="extra sargen test options, e.g. '--precision float32'")
    return parser


def sargen_options(data_root, args, extra):
    """Parsed test options for sargen's default path on one image."""
    argv = ["--dataroot", str(data_root), "--name", "bench", "--gpu_ids", "-1", "--vgg", args.vgg,
            "--vgg_weights", args.vgg_weights, "--load_size", str(args.size), "--crop_size", str(args.size),
            "--style_source", "real", "--content_layer", "1,3", "--style_layer", "0,1,2,3,4",
            "--num_threads", "0", "--save_midResult", "--save_epoch", "5", "--log_freq", "5",
            "--checkpoints_dir", str(data_root / "checkpoints"), *extra]
    return TestOptions().parse(argv, save=False)


def run_baseline(model, content, style_targets, content_targets, steps):
    """The original algorithm; returns the final float32 loss and the wall time."""
    features, _ = load_vgg_features(model.opt.vgg, model.opt.vgg_weights, model.opt.vgg_seed)
    features.requires_grad_(False).eval()
    index_of = model.vgg.layer_indices
    image = content.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=0.01)
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad()
        activations, outputs = imagenet_normalize((image + 1) / 2), {}
        for index, module in enumerate(features):
            activations = module(activations)
            if index in index_of:
                outputs[index_of[index]] = activations
        style = style_loss({name: gram_matrix(outputs[name]) for name in model.style_layers}, style_targets)
        content_term = content_loss({name: outputs[name] for name in model.content_layers}, content_targets)
        (model.opt.lambda_style * style + model.opt.lambda_content * content_term).sum().backward()
        optimizer.step()
        with torch.no_grad():
            image.clamp_(-1, 1)
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        final = model.losses(image, content_targets, style_targets, precision=False)[0]
    return float(final[0]), elapsed


def time_to_reach(model, target_loss, content_targets, style_targets):
    """Seconds sargen's run needed to reach `target_loss` (float32 check on snapshots), or None."""
    seconds_at_step = {point["step"] + 1: point["seconds"] for point in model.curves[0]}
    snapshots = [(int(label.rsplit("_", 1)[1]), images) for label, images in model.intermediate.items()]
    snapshots.append((model.opt.n_iter, model.fake_B))
    with torch.no_grad():
        for step, images in snapshots:
            loss = float(model.losses(images, content_targets, style_targets, precision=False)[0][0])
            if loss <= target_loss:
                return seconds_at_step.get(step, seconds_at_step[max(seconds_at_step)]), step, loss
    return None, model.opt.n_iter, loss


def main():
    """Run both paths on the same images and print times and the ratio."""
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        make_dataset(["x2ka", "--out", str(root), "--size", str(args.size), "--n_train", "5", "--n_test", "1"])
        opt = sargen_options(root, args, args.extra.split())
        model = GatysModel(opt)
        model.setup()
        batch = next(iter(create_dataloader(create_dataset(opt), opt, shuffle=False)))
        model.set_input(batch)
        style_targets, _ = model.style_targets()
        with torch.no_grad():
            content_features = model.features(model.real_A, precision=False)
        content_targets = {name: content_features[name] for name in model.content_layers}
        baseline_loss, baseline_seconds = run_baseline(model, model.real_A, style_targets, content_targets,
                                                       args.baseline_steps)
        print(f"baseline: Adam lr 0.01, full {args.vgg} forward, float32, {args.baseline_steps} steps at "
              f"{args.size} px: {baseline_seconds:.1f} s ({baseline_seconds / args.baseline_steps:.3f} s/step), "
              f"final loss {baseline_loss:.5g}")
        model.test()
        sargen_seconds = model.curves[0][-1]["seconds"]
        reached_seconds, step, loss = time_to_reach(model, baseline_loss, content_targets, style_targets)
        final = float(model.final_losses[0][0])
        print(f"sargen:   {opt.optimizer}, {opt.n_iter} steps, precision {model.autocast_dtype or 'float32'}: "
              f"{sargen_seconds:.1f} s ({sargen_seconds / opt.n_iter:.3f} s/step), final loss {final:.5g}")
        if reached_seconds is None:
            print(f"sargen did not reach the baseline's loss {baseline_loss:.5g} (best checked {loss:.5g})")
            return
        print(f"sargen reached the baseline's final loss at step {step} after {reached_seconds:.1f} s "
              f"(loss {loss:.5g})")
        print(f"speed-up to the same loss: {baseline_seconds / reached_seconds:.1f}x; "
              f"full default run: {baseline_seconds / sargen_seconds:.1f}x, final loss ratio "
              f"{final / baseline_loss:.2f}")


if __name__ == "__main__":
    main()

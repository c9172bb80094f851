"""Gatys cross-band generation: sargen's paths against the original algorithm on the same images and loss, one run.

Baseline: the original research code's algorithm, one image at a time: Adam (lr 0.01) on the image, the full VGG
`features` forward in float32, --baseline_steps steps from the source image. Its final float32 loss is each
image's target loss. The style target is the target band's mean Gram (train.py --model gatys; --same_category
for the category's), the content layers 1,3; every path minimises this same float32 loss.

Compared with it:
1. sargen's default per-image optimization (GatysModel.test: L-BFGS, 300 steps): time to reach the target loss,
   and the whole default run.
2. The feed-forward generator (--model gatys_feedforward), trained once here on the training images (its wall time
   is reported on its own): inference time per image, and its loss relative to the baseline's and to sargen's.
3. Warm-started optimization (--model gatys --init feedforward): time to reach the target loss, the generator's
   pass included; and after how many images the generator's training has paid for itself.
4. Quality on every test image: is the generated target band closer to the real target than the source is, in
   per-channel mean and spread (standard deviation) and in the share of high-frequency energy (speckle grain)?
5. A whole scene (--scene, e.g. 1024 x 900) translated by the generator at once and tiled (test.py --tile):
   times, and how far the tiled output is from the whole-image one for each --tile_passes.

    python benchmarks/bench_gatys.py                                       # 128 px: about 35 min on 2 cores
    python benchmarks/bench_gatys.py --train_steps 200                     # 128 px, a weaker generator: about 15 min
    python benchmarks/bench_gatys.py --size 256 --baseline_steps 1000 --train_steps 1500   # the issue's setting
    python benchmarks/bench_gatys.py --device cuda --size 256 --baseline_steps 1000        # on a GPU
"""

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, Python puts benchmarks/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

import train as train_script
from data import create_dataloader, create_dataset
from datasets.make_dataset import main as make_dataset
from models.feedforward_generator import CHECKPOINT_SUFFIX, load_feedforward_translator, translate_image
from models.gatys_model import GatysModel
from models.losses import content_loss, gram_matrix, style_loss
from models.vgg import imagenet_normalize, load_vgg_features
from options.test_options import TestOptions

CONTENT_LAYERS = "1,3"
HIGH_FREQUENCY = 0.25  # cycles per pixel: above it lies the speckle grain (half the Nyquist frequency)


def build_parser():
    """Benchmark settings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="image size in pixels")
    parser.add_argument("--baseline_steps", type=int, default=300, help="Adam steps of the baseline")
    parser.add_argument("--images", type=int, default=2, help="test images timed against the baseline")
    parser.add_argument("--n_train", type=int, default=24, help="training images (x2ka example data)")
    parser.add_argument("--n_test", type=int, default=6, help="test images of the quality comparison")
    parser.add_argument("--vgg", default="vgg19", choices=("vgg16", "vgg19"))
    parser.add_argument("--vgg_weights", default="random", help="imagenet, random or a file")
    parser.add_argument("--same_category", action="store_true", help="style target: the image's category Gram")
    parser.add_argument("--train_steps", type=int, default=600, help="generator training steps")
    parser.add_argument("--train_size", type=int, default=128, help="side of the generator's training crops")
    parser.add_argument("--train_batch", type=int, default=4, help="generator training batch")
    parser.add_argument("--ngf", type=int, default=32, help="generator channels (--ngf)")
    parser.add_argument("--n_res", type=int, default=5, help="generator residual blocks (--n_res)")
    parser.add_argument("--lr", type=float, default=1e-3, help="generator learning rate")
    parser.add_argument("--warm_steps", type=int, default=300, help="steps of the warm-started optimization")
    parser.add_argument("--warm_optimizer", default="lbfgs", choices=("lbfgs", "adam"),
                        help="optimizer of the warm-started optimization")
    parser.add_argument("--warm_lr", type=float, default=None, help="its step size (default: sargen's)")
    parser.add_argument("--repeats", type=int, default=10, help="timed generator passes per image (after one)")
    parser.add_argument("--scene", default="1024,900", help="HEIGHT,WIDTH of the scene translated whole and tiled")
    parser.add_argument("--tile", type=int, default=256, help="tile side for the scene")
    parser.add_argument("--overlap", type=int, default=32, help="tile overlap for the scene")
    parser.add_argument("--tile_passes", default="1,2,4", help="--tile_passes values compared on the scene")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--extra", default="", help="extra sargen test options, e.g. '--precision float32'")
    return parser


def ratio(numerator, denominator):
    """A ratio printed with three significant digits, whatever its size (0.0123x, 4.56x, 1230x)."""
    value = numerator / denominator
    return f"{value:.3g}x" if value < 1000 else f"{value:.0f}x"


def synchronize(device):
    """Wait for the device's queued work (CUDA), so wall times are the work's."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def common_options(root, args):
    """Data, VGG and device options shared by every sargen run of the benchmark."""
    gpu = "-1" if torch.device(args.device).type == "cpu" else str(torch.device(args.device).index or 0)
    return ["--dataroot", str(root), "--name", "bench", "--gpu_ids", gpu, "--vgg", args.vgg,
            "--vgg_weights", args.vgg_weights, "--style_layer", "0,1,2,3,4", "--load_size", str(args.size),
            "--crop_size", str(args.size), "--num_threads", "0", "--checkpoints_dir", str(root / "checkpoints")]


def style_options(args):
    """The style target options of the generator and the optimizations: the mean Gram, or the category's."""
    return ["--same_category"] if args.same_category else []


def train_generator(root, args):
    """The Gram file (train.py --model gatys), then the generator (train.py --model gatys_feedforward); seconds."""
    common = common_options(root, args)
    train_script.main(["--model", "gatys", *common])
    start = time.perf_counter()
    train_script.main(["--model", "gatys_feedforward", *common, *style_options(args), "--content_layer", CONTENT_LAYERS,
                       "--crop_size", str(args.train_size), "--iteration", str(args.train_steps),
                       "--batch_size", str(args.train_batch), "--ngf", str(args.ngf), "--n_res", str(args.n_res),
                       "--lr", str(args.lr), "--display_id", "0", "--no_html", "--save_freq", str(args.train_steps),
                       "--print_freq", str(max(1, args.train_steps // 10))])
    return time.perf_counter() - start


def gatys_model(root, args, *extra):
    """A set-up test-time GatysModel (mean-Gram style target, content layers 1,3, snapshots every 5 steps)."""
    argv = ["--model", "gatys", *common_options(root, args), *style_options(args), "--content_layer", CONTENT_LAYERS,
            "--style_source", "total", "--save_midResult", "--save_epoch", "5", "--log_freq", "5",
            "--results_dir", str(root / "results"), *args.extra.split(), *extra]
    model = GatysModel(TestOptions().parse(argv, save=False))
    model.setup()
    return model


def run_baseline(model, content, style_targets, content_targets, steps):
    """The original algorithm on one image; returns the final float32 loss and the wall time."""
    opt = model.opt
    features, _ = load_vgg_features(opt.vgg, opt.vgg_weights, opt.vgg_seed)
    features = features.requires_grad_(False).eval().to(model.device)
    objective = model.objective
    index_of = objective.vgg.layer_indices
    image = content.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=0.01)
    synchronize(model.device)
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad()
        activations, outputs = imagenet_normalize((image + 1) / 2), {}
        for index, module in enumerate(features):
            activations = module(activations)
            if index in index_of:
                outputs[index_of[index]] = activations
        style = style_loss({name: gram_matrix(outputs[name]) for name in objective.style_layers}, style_targets)
        content_term = content_loss({name: outputs[name] for name in objective.content_layers}, content_targets)
        (opt.lambda_style * style + opt.lambda_content * content_term).sum().backward()
        optimizer.step()
        with torch.no_grad():
            image.clamp_(-1, 1)
    synchronize(model.device)
    elapsed = time.perf_counter() - start
    return float(float32_loss(model, image, content_targets, style_targets)), elapsed


def float32_loss(model, images, content_targets, style_targets):
    """The total loss of the first image of `images`, in float32."""
    with torch.no_grad():
        return model.objective.losses(images, content_targets, style_targets, precision=False)[0][0]


def time_to_reach(model, target_loss, content_targets, style_targets):
    """(seconds, step, loss) at which a test() run first reached `target_loss` (float32 check on its snapshots);
    seconds is None when it did not."""
    seconds_at_step = {point["step"] + 1: point["seconds"] for point in model.curves[0]}
    snapshots = [(int(label.rsplit("_", 1)[1]), images) for label, images in model.intermediate.items()]
    snapshots.append((model.opt.n_iter, model.fake_B))
    for step, images in snapshots:
        loss = float(float32_loss(model, images, content_targets, style_targets))
        if loss <= target_loss:
            return seconds_at_step.get(step, seconds_at_step[max(seconds_at_step)]), step, loss
    return None, model.opt.n_iter, loss


def timed_generator(translator, image, repeats, **tiling):
    """Median seconds of one translation of `image` (after a warm-up one), and the output."""
    output = translate_image(translator, image, **tiling)
    seconds = []
    for _ in range(repeats):
        synchronize(translator.device)
        start = time.perf_counter()
        output = translate_image(translator, image, **tiling)
        synchronize(translator.device)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), output


def image_statistics(image):
    """Per-channel mean, standard deviation and share of spectral energy above HIGH_FREQUENCY of a [-1, 1] image."""
    values = (image.double().cpu() + 1) / 2
    mean = values.mean(dim=(1, 2))
    spread = values.std(dim=(1, 2))
    power = torch.fft.fft2(values - mean[:, None, None]).abs().square()
    height, width = values.shape[-2:]
    radius = torch.hypot(torch.fft.fftfreq(height)[:, None], torch.fft.fftfreq(width)[None, :])
    share = power[:, radius > HIGH_FREQUENCY].sum(1) / power.sum(dim=(1, 2)).clamp_min(1e-30)
    return {"mean": mean, "spread": spread, "high-frequency share": share}


def compare_one_image(root, args, position, checkpoint):
    """Baseline, sargen's default, the generator and the warm start on test image `position`: the figures."""
    model = gatys_model(root, args)
    batch = next(batch for index, batch in enumerate(create_dataloader(create_dataset(model.opt), model.opt,
                                                                       shuffle=False)) if index == position)
    model.set_input(batch)
    style_targets, _ = model.style_targets()
    content_targets = model.objective.content_targets(model.real_A)
    name = Path(batch["A_paths"][0]).stem
    target_loss, baseline_seconds = run_baseline(model, model.real_A, style_targets, content_targets,
                                                 args.baseline_steps)
    print(f"[{name}] baseline: Adam lr 0.01, full {args.vgg} forward, float32, {args.baseline_steps} steps at "
          f"{args.size} px: {baseline_seconds:.1f} s ({baseline_seconds / args.baseline_steps:.3f} s/step), final "
          f"loss {target_loss:.5g}")
    figures = {"baseline_seconds": baseline_seconds, "target_loss": target_loss}

    model.test()
    default_seconds = model.curves[0][-1]["seconds"]
    reached, step, loss = time_to_reach(model, target_loss, content_targets, style_targets)
    default_loss = float(model.final_losses[0][0])
    print(f"[{name}] sargen default: {model.opt.optimizer}, {model.opt.n_iter} steps, precision "
          f"{model.objective.autocast_dtype or 'float32'}: {default_seconds:.1f} s, final loss {default_loss:.5g}; "
          + (f"reached the baseline's loss at step {step} after {reached:.1f} s: {ratio(baseline_seconds, reached)}"
             if reached else f"did not reach the baseline's loss (best checked {loss:.5g})")
          + f"; whole default run ({model.opt.n_iter} steps) vs baseline ({args.baseline_steps} steps): "
            f"{ratio(baseline_seconds, default_seconds)}")
    figures.update(default_seconds=default_seconds, default_loss=default_loss, default_reached=reached)

    translator = load_feedforward_translator(checkpoint, model.device, model.opt.precision)
    generator_seconds, generated = timed_generator(translator, model.real_A[0], args.repeats)
    generated_loss = float(float32_loss(model, generated[None].to(model.device), content_targets, style_targets))
    print(f"[{name}] feed-forward generator: {generator_seconds * 1000:.1f} ms per {args.size} px image "
          f"({translator.description}): {ratio(baseline_seconds, generator_seconds)} faster than the baseline; "
          f"loss {generated_loss:.5g} = {ratio(generated_loss, target_loss)} the baseline's, "
          f"{ratio(generated_loss, default_loss)} sargen's optimized loss")
    figures.update(generator_seconds=generator_seconds, generated_loss=generated_loss)

    warm_options = ["--init", "feedforward", "--feedforward_checkpoint", str(checkpoint), "--optimizer",
                    args.warm_optimizer, "--n_iter", str(args.warm_steps)]
    warm = gatys_model(root, args, *warm_options, *(["--lr", str(args.warm_lr)] if args.warm_lr else []))
    warm.set_input(batch)
    warm.test()
    reached, step, loss = time_to_reach(warm, target_loss, content_targets, style_targets)
    warm_final = float(warm.final_losses[0][0])
    if reached is None:
        print(f"[{name}] warm start ({args.warm_optimizer}, {args.warm_steps} steps from the generator's output): "
              f"did not reach the baseline's loss {target_loss:.5g}; final {warm_final:.5g} = "
              f"{ratio(warm_final, target_loss)} the baseline's after {warm.curves[0][-1]['seconds']:.1f} s")
    else:
        reached += generator_seconds
        print(f"[{name}] warm start ({args.warm_optimizer} from the generator's output): reached the baseline's "
              f"loss at step {step} after {reached:.1f} s (generator pass included): "
              f"{ratio(baseline_seconds, reached)} faster than the baseline")
    figures.update(warm_reached=reached, warm_final=warm_final)
    return figures


def quality(root, args, checkpoint):
    """Statistics of source, generated and real target on every test image; how often generated is closer."""
    opt = TestOptions().parse(["--model", "gatys", *common_options(root, args)], save=False)
    translator = load_feedforward_translator(checkpoint, opt.device, "float32")
    closer = {}
    totals = {}
    count = 0
    for item in create_dataset(opt):
        statistics_of = {label: image_statistics(image) for label, image in (
            ("source", item["A"]), ("generated", translate_image(translator, item["A"])), ("target", item["B"]))}
        for key in statistics_of["target"]:
            target = statistics_of["target"][key]
            distance = {label: float((statistics_of[label][key] - target).abs().mean())
                        for label in ("source", "generated")}
            closer[key] = closer.get(key, 0) + (distance["generated"] < distance["source"])
            for label in statistics_of:
                totals[(key, label)] = totals.get((key, label), 0.0) + float(statistics_of[label][key].mean())
        count += 1
    print(f"quality on {count} test images (channels averaged; generated closer to the real target than the "
          f"source is, in how many images):")
    for key in closer:
        print(f"  {key}: closer in {closer[key]} of {count}; source {totals[(key, 'source')] / count:.4f}, "
              f"generated {totals[(key, 'generated')] / count:.4f}, real target {totals[(key, 'target')] / count:.4f}")


def tiled_scene(root, args, checkpoint):
    """A --scene sized x2ka scene translated whole and tiled: seconds and the tiled outputs' distance to the whole."""
    height, width = (int(side) for side in args.scene.split(","))
    folder = root / "scene"
    make_dataset(["x2ka", "--out", str(folder), "--size", str(max(height, width)), "--n_train", "1", "--n_test", "1"])
    opt = TestOptions().parse(["--model", "gatys", *common_options(folder, args), "--preprocess", "none"],
                              save=False)
    source = create_dataset(opt)[0]["A"][:, :height, :width]
    translator = load_feedforward_translator(checkpoint, opt.device, "float32")
    whole_seconds, whole = timed_generator(translator, source, 1)
    print(f"scene {height} x {width}: whole image at once {whole_seconds:.2f} s "
          f"({height * width / 1e6 / whole_seconds:.2f} MP/s)")
    for passes in (int(value) for value in args.tile_passes.split(",")):
        seconds, tiled = timed_generator(
            translator, source, 1, tile=args.tile, overlap=args.overlap, passes=passes)
        difference = (tiled - whole).abs()
        print(f"  --tile {args.tile} --overlap {args.overlap} --tile_passes {passes}: {seconds:.2f} s "
              f"({height * width / 1e6 / seconds:.2f} MP/s); |tiled - whole| on [-1, 1]: mean {difference.mean():.4f}, "
              f"99th percentile {difference.flatten().quantile(0.99):.4f}, size {tuple(tiled.shape[-2:])}")


def main():
    """Train the generator, run every path on the same images and print times, losses and ratios."""
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here")
    print(f"device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}, VGG {args.vgg} "
          f"weights {args.vgg_weights}, {args.size} px")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        make_dataset(["x2ka", "--out", str(root), "--size", str(args.size), "--n_train", str(args.n_train),
                      "--n_test", str(args.n_test)])
        training_seconds = train_generator(root, args)
        checkpoint = root / "checkpoints" / "bench" / f"latest{CHECKPOINT_SUFFIX}"
        print(f"generator training (one time): {training_seconds:.1f} s, {args.train_steps} steps of "
              f"{args.train_batch} x {args.train_size} px crops of {args.n_train} images, ngf {args.ngf}, "
              f"{args.n_res} residual blocks")
        figures = [compare_one_image(root, args, position, checkpoint) for position in range(args.images)]
        summarize(figures, training_seconds)
        quality(root, args, checkpoint)
        tiled_scene(root, args, checkpoint)


def summarize(figures, training_seconds):
    """Print the ratios over the timed images and when the generator's training has paid for itself."""
    def mean(key):
        return statistics.mean(figure[key] for figure in figures)

    print(f"summary over {len(figures)} image(s):")
    print(f"  feed-forward inference vs the baseline: {ratio(mean('baseline_seconds'), mean('generator_seconds'))}; "
          f"its loss / the baseline's: {ratio(mean('generated_loss'), mean('target_loss'))}, / sargen's optimized: "
          f"{ratio(mean('generated_loss'), mean('default_loss'))}")
    saved_by_generator = mean("baseline_seconds") - mean("generator_seconds")
    print(f"  generator training {training_seconds:.1f} s = the baseline's time for "
          f"{training_seconds / mean('baseline_seconds'):.2f} images: feed-forward translation has paid for it after "
          f"{math.ceil(training_seconds / saved_by_generator)} images")
    if all(figure["warm_reached"] for figure in figures):
        saved_by_warm_start = mean("baseline_seconds") - mean("warm_reached")
        speedup = ratio(mean("baseline_seconds"), mean("warm_reached"))
        print(f"  warm-started optimization to the baseline's loss: {speedup} faster; it has paid for the training "
              f"after {math.ceil(training_seconds / saved_by_warm_start)} images")
    else:
        reached = sum(figure["warm_reached"] is not None for figure in figures)
        print(f"  warm-started optimization reached the baseline's loss on {reached} of {len(figures)} images; final "
              f"loss / the baseline's: {ratio(mean('warm_final'), mean('target_loss'))}")


if __name__ == "__main__":
    main()

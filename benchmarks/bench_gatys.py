"""Gatys cross-band generation: sargen's paths against the original algorithm on the same images and loss, one run.

Baseline: the original research code's algorithm, one image at a time: Adam (lr 0.01) on the image, the full VGG
`features` forward in float32, --baseline_steps steps from the source image. Its final float32 loss is each
image's target loss. The style target is the target band's mean Gram (train.py --model gatys; --same_category
for the category's), the content layers 1,3; every path minimises this same float32 loss.

What one run prints, then sums up at the end:
1. The feed-forward generator (--model gatys_feedforward), trained once here on the training images: its training
   wall time, then on every test image its mean Gatys loss against sargen's per-image optimization at its default
   settings (L-BFGS, 300 steps), and whether the generated band is closer to the real target band than the source
   is, in per-channel mean, spread and high-frequency share (speckle grain).
2. On the first --images test images, against the baseline: feed-forward inference time; sargen's default
   optimization (cold start from the source) and the warm start (--init feedforward, the generator's pass
   included): time to reach the baseline's final loss. Measured in a separate process, in sargen's default
   precision, and again without bfloat16 (float32, with oneDNN held to AVX512_CORE_VNNI: a CPU without bfloat16
   instructions) when this CPU has it.
3. A whole scene (--scene, e.g. 1024 x 900) translated by the generator at once and tiled (test.py --tile):
   times, and how far the tiled output is from the whole-image one for each --tile_passes.

    python benchmarks/bench_gatys.py                  # 128 px on the CPU, everything the figures need
    python benchmarks/bench_gatys.py --device cuda --size 256 --baseline_steps 1000   # make gpu-check
"""

import argparse
import json
import os
import statistics
import subprocess
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
from evaluation.band_character import closer_counts
from models.feedforward_generator import CHECKPOINT_SUFFIX, load_feedforward_translator, translate_image
from models.gatys_model import GatysModel
from models.losses import content_loss, gram_matrix, style_loss
from models.vgg import imagenet_normalize, load_vgg_features
from options.test_options import TestOptions
from util.device import autocast_dtype

CONTENT_LAYERS = "1,3"
NO_BF16_ISA = "AVX512_CORE_VNNI"  # oneDNN's newest x86 ISA level without bfloat16 instructions
TARGETS = {"loss ratio": 2.0, "closer": 5, "speed-up": 10.0, "inference": 1000.0}


def build_parser():
    """Benchmark settings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="image size in pixels")
    parser.add_argument("--baseline_steps", type=int, default=300, help="Adam steps of the baseline")
    parser.add_argument("--images", type=int, default=2, help="test images timed against the baseline")
    parser.add_argument("--n_train", type=int, default=24, help="training images (x2ka example data)")
    parser.add_argument("--n_test", type=int, default=6, help="test images of the loss and quality comparison")
    parser.add_argument("--vgg", default="vgg19", choices=("vgg16", "vgg19"))
    parser.add_argument("--vgg_weights", default="random", help="imagenet, random or a file")
    parser.add_argument("--same_category", action="store_true", help="style target: the image's category Gram")
    parser.add_argument("--train_steps", type=int, default=None,
                        help="generator training steps (default: train.py's --iteration default)")
    parser.add_argument("--train_size", type=int, default=128, help="side of the generator's training crops")
    parser.add_argument("--train_batch", type=int, default=4, help="generator training batch")
    parser.add_argument("--train_extra", default="", help="extra train.py options of the generator, e.g. '--ngf 32'")
    parser.add_argument("--reach_steps", type=int, default=120,
                        help="steps of the timed cold and warm optimizations (enough to reach the baseline's loss)")
    parser.add_argument("--repeats", type=int, default=10, help="timed generator passes per image (after one)")
    parser.add_argument("--scene", default="1024,900", help="HEIGHT,WIDTH of the scene translated whole and tiled")
    parser.add_argument("--tile", type=int, default=256, help="tile side for the scene")
    parser.add_argument("--overlap", type=int, default=32, help="tile overlap for the scene")
    parser.add_argument("--tile_passes", default="1,2,3", help="--tile_passes values compared on the scene")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--extra", default="", help="extra sargen test options, e.g. '--precision float32'")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: the timed comparison of part 2
    parser.add_argument("--case_root", default=None, help=argparse.SUPPRESS)
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
    """The Gram file (train.py --model gatys), then the generator (train.py --model gatys_feedforward): its wall
    seconds and this process's CPU seconds (on a busy machine, CPU seconds / threads bounds the quiet wall time)."""
    common = common_options(root, args)
    train_script.main(["--model", "gatys", *common])
    steps = ["--iteration", str(args.train_steps)] if args.train_steps else []
    start, cpu_start = time.perf_counter(), time.process_time()
    train_script.main(["--model", "gatys_feedforward", *common, *style_options(args), "--content_layer", CONTENT_LAYERS,
                       "--crop_size", str(args.train_size), "--batch_size", str(args.train_batch), *steps,
                       "--display_id", "0", "--no_html", "--save_freq", "100000", "--print_freq", "50",
                       *args.train_extra.split()])
    return time.perf_counter() - start, time.process_time() - cpu_start


def gatys_model(root, args, *extra):
    """A set-up test-time GatysModel (mean-Gram style target, content layers 1,3)."""
    argv = ["--model", "gatys", *common_options(root, args), *style_options(args), "--content_layer", CONTENT_LAYERS,
            "--style_source", "total", "--results_dir", str(root / "results"), *args.extra.split(), *extra]
    model = GatysModel(TestOptions().parse(argv, save=False))
    model.setup()
    return model


def test_batch(model, position=0):
    """Batch `position` of the test images, read as `model` reads them (its --batch_size)."""
    loader = create_dataloader(create_dataset(model.opt), model.opt, shuffle=False)
    return next(batch for index, batch in enumerate(loader) if index == position)


# ---- part 1: the generator against sargen's optimization, and the quality of its band ------------------------


def generator_against_optimization(root, args, checkpoint):
    """The generator's and sargen's default optimization's mean loss on every test image; the quality counts."""
    model = gatys_model(root, args, "--log_freq", "50", "--batch_size", str(args.n_test))
    batch = test_batch(model)
    model.set_input(batch)
    translator = load_feedforward_translator(checkpoint, model.device, model.opt.precision)
    generated = torch.stack([translate_image(translator, image) for image in model.real_A.cpu()]).to(model.device)
    style_targets, _ = model.style_targets()
    content_targets = model.objective.content_targets(model.real_A)
    with torch.no_grad():
        generated_losses = model.objective.losses(generated, content_targets, style_targets, precision=False)[0]
    started = time.perf_counter()
    model.test()
    seconds = time.perf_counter() - started
    optimized_losses = model.final_losses[0]
    count = len(generated_losses)
    print(f"sargen's default optimization ({model.opt.optimizer}, {model.opt.n_iter} steps, precision "
          f"{model.objective.autocast_dtype or 'float32'}) of the {count} test images as one batch: {seconds:.1f} s; "
          f"mean final loss {float(optimized_losses.mean()):.5g}")
    print(f"feed-forward generator on the {count} test images: mean loss {float(generated_losses.mean()):.5g} = "
          f"{ratio(float(generated_losses.mean()), float(optimized_losses.mean()))} the optimization's (per image: "
          + ", ".join(f"{float(g) / float(o):.2f}x" for g, o in zip(generated_losses, optimized_losses)) + ")")
    counts, averages = closer_counts(model.real_A.cpu(), generated.cpu(), [image.cpu() for image in model.real_B])
    optimized_counts, _ = closer_counts(model.real_A.cpu(), model.fake_B.cpu(), [image.cpu() for image in model.real_B])
    print(f"quality on {count} test images (channels averaged; closer to the real target band than the source is, "
          f"in how many images; the optimized images for comparison):")
    for key, closer in counts.items():
        print(f"  {key}: generated closer in {closer} of {count} (optimized: {optimized_counts[key]}); source "
              f"{averages[(key, 'source')]:.4f}, generated {averages[(key, 'generated')]:.4f}, real target "
              f"{averages[(key, 'target')]:.4f}")
    return {"loss_ratio": float(generated_losses.mean()) / float(optimized_losses.mean()), "counts": counts,
            "optimized_counts": optimized_counts, "test_images": count}


# ---- part 2: time to the baseline's loss (run in its own process, see speed_figures) ---------------------------


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
    """(seconds, step, loss) at which a test() run first reached `target_loss` (float32 check of its image after
    every step); seconds is None when it did not."""
    seconds_at_step = {point["step"] + 1: point["seconds"] for point in model.curves[0]}
    snapshots = [(int(label.rsplit("_", 1)[1]), images) for label, images in model.intermediate.items()]
    snapshots.append((model.opt.n_iter, model.fake_B))
    for step, images in snapshots:
        loss = float(float32_loss(model, images, content_targets, style_targets))
        if loss <= target_loss:
            return seconds_at_step[step], step, loss
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


def reach(model, batch, target_loss, content_targets, style_targets, offset=0.0):
    """Run a timed optimization of one image; print and return its time to `target_loss` (+ offset) or None."""
    model.set_input(batch)
    model.test()
    seconds, step, loss = time_to_reach(model, target_loss, content_targets, style_targets)
    return (None, step, loss) if seconds is None else (seconds + offset, step, loss)


def compare_one_image(root, args, position, checkpoint):
    """Baseline, the cold and the warm start on test image `position`: times to the baseline's loss."""
    tracked = ["--save_midResult", "--save_epoch", "1", "--log_freq", "1", "--n_iter", str(args.reach_steps)]
    model = gatys_model(root, args, *tracked)
    batch = test_batch(model, position)
    model.set_input(batch)
    style_targets, _ = model.style_targets()
    content_targets = model.objective.content_targets(model.real_A, precision=False)
    name = Path(batch["A_paths"][0]).stem
    target_loss, baseline_seconds = run_baseline(model, model.real_A, style_targets, content_targets,
                                                 args.baseline_steps)
    figures = {"baseline_seconds": baseline_seconds}
    print(f"[{name}] baseline: Adam lr 0.01, full {args.vgg} forward, float32, {args.baseline_steps} steps at "
          f"{args.size} px: {baseline_seconds:.1f} s ({baseline_seconds / args.baseline_steps:.3f} s/step), final "
          f"loss {target_loss:.5g}")
    translator = load_feedforward_translator(checkpoint, model.device, model.opt.precision)
    generator_seconds, _ = timed_generator(translator, model.real_A[0].cpu(), args.repeats)
    figures["generator_seconds"] = generator_seconds
    print(f"[{name}] feed-forward generator: {generator_seconds * 1000:.1f} ms per {args.size} px image "
          f"({translator.description}): {ratio(baseline_seconds, generator_seconds)} faster than the baseline")
    warm = gatys_model(root, args, *tracked, "--init", "feedforward", "--feedforward_checkpoint", str(checkpoint))
    for label, runner, offset in (("cold", model, 0.0), ("warm", warm, generator_seconds)):
        seconds, step, loss = reach(runner, batch, target_loss, content_targets, style_targets, offset)
        figures[f"{label}_seconds"] = seconds
        start = "from the source" if label == "cold" else "from the generator's output, its pass included"
        per_step = runner.curves[0][-1]["seconds"] / runner.opt.n_iter
        print(f"[{name}] {label} start ({runner.opt.optimizer} {start}, precision "
              f"{runner.objective.autocast_dtype or 'float32'}, {per_step:.3f} s/step): "
              + (f"reached the baseline's loss at step {step} after {seconds:.2f} s: "
                 f"{ratio(baseline_seconds, seconds)} faster" if seconds else
                 f"did not reach the baseline's loss in {step} steps (best {loss:.5g})"))
    return figures


def speed_case(args):
    """Part 2 in this process (run by speed_figures): the figures of every timed image, as one JSON line."""
    torch.set_num_threads(args.threads)
    root = Path(args.case_root)
    checkpoint = root / "checkpoints" / "bench" / f"latest{CHECKPOINT_SUFFIX}"
    figures = [compare_one_image(root, args, position, checkpoint) for position in range(args.images)]
    print(json.dumps(figures))


def without_option(argv, option):
    """`argv` without `option` and its value (given as 'OPTION VALUE' or 'OPTION=VALUE')."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(f"{option}="):
            kept.append(arg)
    return kept


def speed_figures(root, args, label, environment, extra):
    """Run part 2 in a new process (oneDNN reads its ISA limit once per process) with `environment` and sargen
    test options `extra`; echo what it prints and return its figures."""
    argv = without_option(sys.argv[1:], "--extra")
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--case", "speed", "--case_root", str(root),
               "--extra", f"{args.extra} {extra}".strip()]
    print(f"--- time to the baseline's loss, {label} ---", flush=True)
    completed = subprocess.run(command, env={**os.environ, **environment}, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"the timed comparison ({label}) failed:\n{completed.stderr[-3000:]}")
    lines = completed.stdout.strip().splitlines()
    print("\n".join(line for line in lines[:-1] if line.startswith("[")), flush=True)
    return json.loads(lines[-1])


# ---- part 3: a scene, whole and tiled --------------------------------------------------------------------------


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
              f"({height * width / 1e6 / seconds:.2f} MP/s); |tiled - whole| on [-1, 1]: mean {difference.mean():.5f}, "
              f"99th percentile {difference.flatten().quantile(0.99):.5f}, size {tuple(tiled.shape[-2:])}")


# ---- the run ---------------------------------------------------------------------------------------------------


def main():
    """Train the generator, run every path on the same images and print times, losses, counts and ratios."""
    args = build_parser().parse_args()
    if args.case == "speed":
        speed_case(args)
        return
    torch.set_num_threads(args.threads)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here")
    print(f"device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}, VGG {args.vgg} "
          f"weights {args.vgg_weights}, {args.size} px")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        make_dataset(["x2ka", "--out", str(root), "--size", str(args.size), "--n_train", str(args.n_train),
                      "--n_test", str(args.n_test)])
        training_seconds, training_cpu = train_generator(root, args)
        checkpoint = root / "checkpoints" / "bench" / f"latest{CHECKPOINT_SUFFIX}"
        steps = torch.load(checkpoint, weights_only=True)["sargen_gatys_feedforward"]["iteration"]
        print(f"generator training (one time): {training_seconds:.1f} s wall, {training_cpu:.1f} s CPU on "
              f"{torch.get_num_threads()} threads, {steps} steps ({training_seconds / steps:.2f} s/step) of "
              f"{args.train_batch} x {args.train_size} px crops of {args.n_train} images")
        quality = generator_against_optimization(root, args, checkpoint)
        cpu = torch.device(args.device).type == "cpu"
        has_bfloat16 = autocast_dtype(torch.device(args.device), "auto") is not None
        default_label = "default precision" if has_bfloat16 or not cpu else "default precision = no bfloat16 (float32)"
        speed = {default_label: speed_figures(root, args, f"sargen's {default_label}", {}, "")}
        if cpu and has_bfloat16:
            speed["no bfloat16"] = speed_figures(root, args, f"without bfloat16 (float32, ONEDNN_MAX_CPU_ISA="
                                                 f"{NO_BF16_ISA})", {"ONEDNN_MAX_CPU_ISA": NO_BF16_ISA},
                                                 "--precision float32")
        tiled_scene(root, args, checkpoint)
        summarize((training_seconds, training_cpu), quality, speed)


def summarize(training_times, quality, speed):
    """Every figure the issue asks for, with its target."""
    def mean_ratio(figures, key):
        if any(figure[key] is None for figure in figures):
            return f"not reached on {sum(figure[key] is None for figure in figures)} of {len(figures)} images"
        return ratio(statistics.mean(figure["baseline_seconds"] for figure in figures),
                     statistics.mean(figure[key] for figure in figures))

    training_seconds, training_cpu = training_times
    count = quality["test_images"]
    counts = ", ".join(f"{key} {closer}/{count}" for key, closer in quality["counts"].items())
    optimized = ", ".join(f"{key} {closer}/{count}" for key, closer in quality["optimized_counts"].items())
    print("summary:")
    print(f"  generator training: {training_seconds:.1f} s wall, {training_cpu:.1f} s CPU (target: within 10 minutes "
          f"on 2 CPU cores)")
    print(f"  generator loss / sargen's optimized loss, mean over the test images: {quality['loss_ratio']:.2f}x "
          f"(target: at most {TARGETS['loss ratio']:g}x)")
    print(f"  generated band closer to the real target than the source: {counts} (target: at least "
          f"{TARGETS['closer']} of 6 each; sargen's optimization: {optimized})")
    figures = next(iter(speed.values()))
    print(f"  feed-forward inference vs the baseline: {mean_ratio(figures, 'generator_seconds')} faster "
          f"(target: {TARGETS['inference']:g}x)")
    for label, figures in speed.items():
        print(f"  {label}: sargen's optimization to the baseline's loss {mean_ratio(figures, 'cold_seconds')} "
              f"faster, warm start (--init feedforward) {mean_ratio(figures, 'warm_seconds')} faster "
              f"(target: {TARGETS['speed-up']:g}x)")
    baseline = statistics.mean(figure["baseline_seconds"] for figure in next(iter(speed.values())))
    print(f"  generator training = the baseline's time for {training_seconds / baseline:.1f} images")


if __name__ == "__main__":
    main()

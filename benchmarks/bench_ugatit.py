"""U-GAT-IT speed: sargen's paths against plain baselines measured in the same run.

- inference: app.py's per-image path (read a 256 px PNG, translate with the default precision, write;
  freed memory reused on the CPU) against the plain float32 forward of the same generator (torch.no_grad,
  contiguous memory, the C allocator's defaults), with the grey-level difference of the two outputs;
- tiled: megapixels per second of app.py's tiled translation (--tile 256 --overlap 32, its default 32 px of
  context and statistics pass) against the plain float32 forward run tile by tile (256 px tiles, 32 overlap, no
  context, tiles normalized on their own);
- training: steps per second of sargen's step (detached translations, batched generator passes, real and
  fake batched through each discriminator with spectral norm applied to the outputs, no discriminator
  weight gradients in the generator step, fused Adam, freed memory reused on the CPU; and with --amp)
  against the original code's step (benchmarks/ugatit_reference.py: plain Adam, the
  spectral-norm hooks, the C allocator's defaults) and against that step with sargen's memory reuse
  (the gain of the step alone), at a small and at the standard size. Peak memory is the peak resident
  set of a separate process per case (CPU) or torch's peak allocation (CUDA).

    python benchmarks/bench_ugatit.py                                  # defaults: a few minutes on 2 cores
    python benchmarks/bench_ugatit.py --train_sizes 64 --no_amp        # quicker
    python benchmarks/bench_ugatit.py --ch 64 --tiled_size 1024 --repeats 5
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, Python puts benchmarks/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import case_runner
import numpy as np
import torch

from benchmarks.ugatit_reference import original_training_step
from data.image_io import tensor_to_uint8, write_image
from models import create_model
from models.file_translation import translate_file
from models.tiling import translate_tiled
from models.ugatit_inference import Translator
from models.ugatit_model import ADAM_BETAS
from models.ugatit_networks import Generator
from options.train_options import TrainOptions
from util.device import reuse_memory_on_cpu


def build_parser():
    """Benchmark settings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ch", type=int, default=64, help="base channels (the published model: 64)")
    parser.add_argument("--n_res", type=int, default=4, help="residual blocks (the published model: 4)")
    parser.add_argument("--img_size", type=int, default=256, help="inference image side")
    parser.add_argument("--tiled_size", type=int, default=512, help="side of the tiled test scene")
    parser.add_argument("--train_sizes", default="64,256", help="training image sizes (small,standard)")
    parser.add_argument("--small_ch", type=int, default=16, help="base channels of the small training case")
    parser.add_argument("--repeats", type=int, default=10, help="timed app.py repetitions (after one warm-up)")
    parser.add_argument("--tiled_repeats", type=int, default=3, help="timed tiled repetitions (after one)")
    parser.add_argument("--train_steps", type=int, default=3, help="timed training steps per case (after one)")
    parser.add_argument("--no_amp", action="store_true", help="skip the --amp (bfloat16) training cases")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--cases", default="inference,tiled,train", help="which cases to run")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case, print JSON
    parser.add_argument("--case_args", default="{}", help=argparse.SUPPRESS)
    return parser


def seeded_generator(args, size):
    """A light generator of the published shape with seeded weights (rho moved off its initial values)."""
    torch.manual_seed(0)
    generator = Generator(3, 3, ngf=args.ch, n_blocks=args.n_res, img_size=size, light=True)
    with torch.no_grad():
        for name, parameter in generator.named_parameters():
            if name.endswith("rho"):
                parameter.uniform_(0.2, 0.8)
    return generator.eval()


def scene(height, width, seed=0):
    """A smooth random RGB scene in [-1, 1] (1x3xHxW)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 16 + 2, width // 16 + 2, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    return smooth.clamp(0, 1) * 2 - 1


def timed(function, repeats):
    """Median seconds of `repeats` calls after one warm-up call, and the last result."""
    result = function()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def case_inference(args, variant):
    """Per-image latency: the plain forward, or app.py's read-translate-write path."""
    generator = seeded_generator(args, args.img_size)
    image = scene(args.img_size, args.img_size)
    if variant == "plain":
        generator = generator.to(args.device)

        def forward():
            with torch.no_grad():
                return generator(image.to(args.device))[0].cpu()

        seconds, output = timed(forward, args.repeats)
        return {"seconds": seconds, "output": tensor_to_uint8(output[0], (-1, 1)).tolist()}
    reuse_memory_on_cpu(args.device, system_allocator=False)  # as app.py does
    translator = Translator(generator, args.device, "auto" if variant == "app" else variant)
    with tempfile.TemporaryDirectory() as folder:
        source = write_image(image[0], Path(folder) / "scene.png", value_range=(-1, 1))
        app_args = argparse.Namespace(tile=0, out_img_size=args.img_size, heatmap=False)
        seconds, (output, _) = timed(lambda: translate_app(translator, source, app_args, folder), args.repeats)
        # the same input as the plain case (not the PNG round trip), for the grey-level comparison
        same_input = translator(image)[0]
    return {"seconds": seconds, "output": tensor_to_uint8(same_input[0], (-1, 1)).tolist(),
            "precision": str(translator.dtype or torch.float32)}


def translate_app(translator, source, app_args, folder):
    """app.py's per-image work: read, translate, write gen_sar_NAME.png."""
    output, heatmap = translate_file(translator, source, app_args)
    write_image(output, Path(folder) / "gen_sar_scene.png", value_range=(-1, 1))
    return output, heatmap


def case_tiled(args, variant):
    """Megapixels per second translating a tiled_size scene in 256 px tiles (32 px overlap)."""
    generator = seeded_generator(args, 256)
    image = scene(args.tiled_size, args.tiled_size)[0]
    if variant == "plain":
        plain = Translator(generator, args.device, "float32")
        seconds, _ = timed(lambda: translate_tiled(plain, image, 256, 32, tile_batch=1, passes=1, context=0),
                           args.tiled_repeats)
    else:
        passes = int(variant.rsplit("_", 1)[1])
        reuse_memory_on_cpu(args.device, system_allocator=False)  # as app.py does
        translator = Translator(generator, args.device, "auto")
        seconds, _ = timed(lambda: translate_tiled(translator, image, 256, 32, passes=passes), args.tiled_repeats)
    return {"seconds": seconds, "megapixels_per_s": args.tiled_size**2 / 1e6 / seconds}


def training_model(args, size, ch, amp, system_allocator):
    """A U-GAT-IT training model of the published layout (light, 7/5-layer discriminators where size allows)."""
    n_dis = 7 if size >= 96 else 6 if size >= 48 else 5
    argv = ["--model", "ugatit", "--gpu_ids", "0" if args.device.startswith("cuda") else "-1",
            "--checkpoints_dir", tempfile.mkdtemp(), "--ch", str(ch), "--n_res", str(args.n_res), "--light",
            "--img_size", str(size), "--n_dis", str(n_dis), "--display_id", "0", "--iteration", "1000"]
    argv += (["--amp"] if amp else []) + (["--system_allocator"] if system_allocator else [])
    model = create_model(TrainOptions().parse(argv, save=False))
    generator = torch.Generator().manual_seed(1)
    model.set_input({"A": torch.rand(1, 3, size, size, generator=generator) * 2 - 1,
                     "B": torch.rand(1, 3, size, size, generator=generator) * 2 - 1})
    return model, n_dis


def case_train(args, variant, size, ch):
    """Seconds per training step: 'original' (reference step, plain Adam, the C allocator's defaults),
    'original_reused_memory' (the same with sargen's allocator setting), 'sargen' or 'sargen_amp'."""
    model, n_dis = training_model(args, size, ch, amp=variant == "sargen_amp", system_allocator=variant == "original")
    if variant.startswith("original"):
        adam = {"lr": model.opt.lr, "betas": ADAM_BETAS, "weight_decay": model.opt.weight_decay}
        model.optimizer_G = torch.optim.Adam([p for g in model.generators for p in g.parameters()], **adam)
        model.optimizer_D = torch.optim.Adam([p for d in model.discriminators for p in d.parameters()], **adam)
        step = lambda: original_training_step(model)  # noqa: E731
    else:
        step = model.optimize_parameters
    seconds, _ = timed(step, args.train_steps)
    return {"seconds": seconds, "steps_per_s": 1 / seconds, "n_dis": n_dis}


def run_case(name, **case_args):
    """Run one case in a fresh process (for its own peak memory) and return its JSON result."""
    return case_runner.run_case(__file__, name, case_args)


def grey_level_difference(first, second):
    """Max, mean and share within 2 levels of the absolute difference of two 8-bit images."""
    difference = np.abs(np.asarray(first, dtype=int) - np.asarray(second, dtype=int))
    return difference.max(), difference.mean(), (difference <= 2).mean()


def main():
    """Run every case and print the table of ratios."""
    args = build_parser().parse_args()
    case_runner.start(args)
    if case_runner.answer_case(args, {"inference": case_inference, "tiled": case_tiled, "train": case_train}):
        return
    print(f"device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}; generator: light, "
          f"ngf {args.ch}, {args.n_res} residual blocks")
    cases = args.cases.split(",")
    if "inference" in cases:
        report_inference(args)
    if "tiled" in cases:
        report_tiled(args)
    if "train" in cases:
        report_training(args)


def report_inference(args):
    """Print app.py's per-image latency and accuracy against the plain forward."""
    plain, app = run_case("inference", variant="plain"), run_case("inference", variant="app")
    levels = grey_level_difference(plain["output"], app["output"])
    print(f"app.py per {args.img_size} px image ({app['precision']}): {app['seconds']:.3f} s "
          f"vs plain float32 forward {plain['seconds']:.3f} s -> {plain['seconds'] / app['seconds']:.2f}x; "
          f"peak {app['peak_mb']:.0f} vs {plain['peak_mb']:.0f} MB")
    print(f"  output vs float32: max {levels[0]} grey levels, mean {levels[1]:.3f}, {100 * levels[2]:.2f}% within 2")


def report_tiled(args):
    """Print the tiled throughput against the plain tile-by-tile forward."""
    plain = run_case("tiled", variant="plain")
    for passes in (2, 1):
        fast = run_case("tiled", variant=f"passes_{passes}")
        print(f"tiled {args.tiled_size}x{args.tiled_size} (256 px tiles, 32 overlap, --tile_passes {passes}): "
              f"{fast['megapixels_per_s']:.3f} MP/s vs plain tile-by-tile float32 {plain['megapixels_per_s']:.3f} "
              f"MP/s -> {fast['megapixels_per_s'] / plain['megapixels_per_s']:.2f}x; peak {fast['peak_mb']:.0f} "
              f"vs {plain['peak_mb']:.0f} MB")


def report_training(args):
    """Print training steps per second against the original step at each size."""
    sizes = [int(size) for size in args.train_sizes.split(",")]
    for size in sizes:
        ch = args.small_ch if size < 256 and len(sizes) > 1 and size == min(sizes) else args.ch
        original = run_case("train", variant="original", size=size, ch=ch)
        reused = run_case("train", variant="original_reused_memory", size=size, ch=ch)
        variants = ["sargen"] + ([] if args.no_amp else ["sargen_amp"])
        for variant in variants:
            result = run_case("train", variant=variant, size=size, ch=ch)
            print(f"training {size} px, ch {ch}, n_dis {result['n_dis']}, batch 1, {variant}: "
                  f"{result['steps_per_s']:.3f} steps/s ({result['seconds']:.2f} s/step) vs original "
                  f"{original['steps_per_s']:.3f} ({original['seconds']:.2f} s/step) -> "
                  f"{original['seconds'] / result['seconds']:.2f}x; peak {result['peak_mb']:.0f} vs "
                  f"{original['peak_mb']:.0f} MB")
            print(f"  vs the original step with sargen's memory reuse ({reused['seconds']:.2f} s/step, peak "
                  f"{reused['peak_mb']:.0f} MB): {reused['seconds'] / result['seconds']:.2f}x")


if __name__ == "__main__":
    main()

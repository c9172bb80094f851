"""pix2pix speed and learning: sargen's paths against plain baselines measured in the same run.

- training: seconds per step of sargen's step (models/pix2pix_model.py: the discriminator's fake and real passes
  in one batched call with per-pass batch norm, fused Adam, the U-Net's inner transposed convolutions as matrix
  products, freed memory reused on the CPU) against a plain reimplementation of the original pix2pix step
  (benchmarks/pix2pix_reference.py: separate discriminator calls, plain Adam, torch's transposed convolutions, the
  C allocator's defaults) and against that step with sargen's memory reuse (the gain of the step
  alone): U-Net 256, basic PatchGAN, batch norm, batch 1, 256 px, the original's defaults. Each case runs in its
  own process (its own allocator setting and peak memory); --rounds repeats the cases and reports the medians.
- inference: megapixels per second of the pix2pix U-Net 256 generator as test.py and app.py run it (eval mode,
  batch norm folded into the convolutions, float32 on the CPU) and of its plain eval-mode forward (torch's
  transposed convolutions, the C allocator's defaults), against the
  U-GAT-IT generator of the published eo2sar shape (light, ngf 64, 4 residual blocks) through its translator,
  on 256 px tiles.
- learning: on a SEN12MS tree whose Sentinel-1 is a known function of Sentinel-2 plus speckle
  (make_dataset.py sen12ms --known_mapping), pix2pix and U-GAT-IT each train for the same wall time (--budget),
  then their mean absolute dB error on the held-back scenes' co-registered pairs, against the mean training SAR
  image as a constant prediction.

    python benchmarks/bench_pix2pix.py                          # all cases: about 5 min on 2 quiet cores
    python benchmarks/bench_pix2pix.py --cases train --rounds 3
    python benchmarks/bench_pix2pix.py --device cuda            # on a GPU
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

from benchmarks.bench_ugatit import scene, seeded_generator, timed
from benchmarks.pix2pix_reference import original_training_step, with_torch_transposed_convolutions
from data import create_dataset
from datasets.make_dataset import main as make_dataset
from models import create_model
from models.pix2pix_checkpoint import generator_translator
from models.pix2pix_networks import build_generator, init_weights
from models.tiling import translate_whole
from models.ugatit_inference import Translator
from options.train_options import TrainOptions
from util.device import reuse_memory_on_cpu

DB_WINDOW = 25.0  # the sen12ms layout's Sentinel-1 window, -25..0 dB


def build_parser():
    """Benchmark settings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="train,inference,learning", help="which cases to run")
    parser.add_argument("--size", type=int, default=256, help="training and inference image side (a multiple of 256)")
    parser.add_argument("--train_steps", type=int, default=3, help="timed training steps per case (after one)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every training case (medians reported)")
    parser.add_argument("--repeats", type=int, default=5, help="timed inference repetitions (after one)")
    parser.add_argument("--budget", type=float, default=60.0, help="training seconds of each model (learning)")
    parser.add_argument("--patch", type=int, default=32, help="patch side of the learning task")
    parser.add_argument("--scenes", type=int, default=6, help="scenes of the learning task (9 patches each)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case, print JSON
    parser.add_argument("--case_args", default="{}", help=argparse.SUPPRESS)
    return parser


def gpu_ids(args):
    """--gpu_ids of the benchmark's device."""
    return "0" if args.device.startswith("cuda") else "-1"


def training_model(args, system_allocator):
    """A pix2pix training model with the original's defaults (U-Net 256, basic D, batch norm, batch 1) on a batch."""
    argv = ["--model", "pix2pix", "--gpu_ids", gpu_ids(args), "--checkpoints_dir", tempfile.mkdtemp(),
            "--display_id", "0", "--load_size", str(args.size), "--crop_size", str(args.size)]
    argv += ["--system_allocator"] if system_allocator else []
    model = create_model(TrainOptions().parse(argv, save=False))
    generator = torch.Generator().manual_seed(1)
    model.set_input({"A": torch.rand(1, 3, args.size, args.size, generator=generator) * 2 - 1,
                     "B": torch.rand(1, 3, args.size, args.size, generator=generator) * 2 - 1})
    return model


def case_train(args, variant):
    """Seconds per step: 'original' (plain step, plain Adam, the C allocator's defaults), 'original_reused_memory'
    (the same with sargen's allocator setting) or 'sargen'."""
    model = training_model(args, system_allocator=variant == "original")
    if variant.startswith("original"):
        with_torch_transposed_convolutions(model.generator)
        adam = {"lr": model.opt.lr, "betas": (model.opt.beta1, 0.999)}  # torch's default Adam, as the original's
        model.optimizer_G = torch.optim.Adam(model.generator.parameters(), **adam)
        model.optimizer_D = torch.optim.Adam(model.discriminator.parameters(), **adam)
        step = lambda: original_training_step(model)  # noqa: E731
    else:
        step = model.optimize_parameters
    seconds, _ = timed(step, args.train_steps)
    return {"seconds": seconds}


def pix2pix_generator():
    """A U-Net 256 generator (ngf 64, batch norm) with seeded weights and running statistics, in eval mode."""
    torch.manual_seed(0)
    generator = init_weights(build_generator("unet_256", 3, 2))
    for module in generator.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    return generator.eval()


def case_inference(args, variant):
    """Megapixels per second translating one `size` px tile: 'pix2pix' (test.py/app.py's translator), 'pix2pix_plain'
    (the eval-mode forward, no_grad) or 'ugatit' (U-GAT-IT's translator, the published light shape)."""
    reuse_memory_on_cpu(args.device, system_allocator=variant == "pix2pix_plain")
    image = scene(args.size, args.size)[0]
    if variant == "pix2pix_plain":
        generator = with_torch_transposed_convolutions(pix2pix_generator()).to(args.device)

        def translate():
            with torch.no_grad():
                return generator(image[None].to(args.device)).cpu()
    else:
        translator = (generator_translator(pix2pix_generator(), args.device) if variant == "pix2pix"
                      else Translator(seeded_generator(argparse.Namespace(ch=64, n_res=4), args.size), args.device))

        def translate():
            return translate_whole(translator, image)[0]
    seconds, _ = timed(translate, args.repeats)
    return {"seconds": seconds, "megapixels_per_s": args.size**2 / 1e6 / seconds}


def learning_options(args, root, model):
    """Training options of `model` (pix2pix or ugatit) on the learning task: small networks, the layout's defaults."""
    argv = ["--model", model, "--dataset_mode", "sen12ms", "--dataroot", str(root), "--name", model,
            "--checkpoints_dir", str(root / "checkpoints"), "--gpu_ids", gpu_ids(args), "--num_threads", "0",
            "--display_id", "0", "--iteration", "100000", "--load_size", str(args.patch), "--crop_size",
            str(args.patch), "--no_html", "--print_freq", "100000", "--save_freq", "100000"]
    if model == "pix2pix":
        argv += ["--netG", "resnet_6blocks", "--ngf", "16", "--ndf", "16"]
    else:
        argv += ["--light", "--ch", "16", "--n_res", "4", "--img_size", str(args.patch), "--n_dis", "5"]
    return TrainOptions().parse(argv, save=False)


def train_for(opt, budget):
    """Train the model of `opt` for `budget` seconds; (the model, steps done)."""
    dataset = create_dataset(opt)
    model = create_model(opt)
    model.setup()
    started = time.perf_counter()
    for batch in model.training_batches(dataset):
        model.set_input(batch)
        model.optimize_parameters()
        if time.perf_counter() - started >= budget:
            break
    return model, model.step


def test_pairs(opt):
    """(source, real target) images of the held-back scenes' co-registered pairs, as test.py reads them."""
    test_opt = argparse.Namespace(**{**vars(opt), "is_train": False, "phase": "test", "max_dataset_size": None})
    dataset = create_dataset(test_opt)
    items = [dataset[index] for index in range(len(dataset))]
    return [(item["A"], item["B"]) for item in items]


def mean_db_error(translate, pairs):
    """Mean absolute dB error of translations against the real targets (in [-1, 1] through a 25 dB window)."""
    errors = [float((translate(source).clamp(-1, 1) - target).abs().mean()) * DB_WINDOW / 2 for source, target in pairs]
    return float(np.mean(errors))


def case_learning(args, model, root):
    """Train `model` for --budget seconds on the known-mapping task in `root`; its steps and dB error on the
    held-back pairs, and the mean training SAR image's."""
    opt = learning_options(args, Path(root), model)
    trained, steps = train_for(opt, args.budget)
    pairs = test_pairs(opt)
    if model == "pix2pix":
        translator = generator_translator(trained.generator, args.device)
    else:
        translator = Translator(trained.networks["genA2B"], args.device, "float32")
    error = mean_db_error(lambda source: translate_whole(translator, source)[0], pairs)
    training = create_dataset(opt)
    mean_image = torch.stack([training.read(path, "B") for path in training.paths["B"]]).mean(0) * 2 - 1
    constant = mean_db_error(lambda source: mean_image, pairs)
    return {"steps": steps, "error_db": error, "constant_db": constant, "pairs": len(pairs)}


def run_case(name, **case_args):
    """Run one case in a fresh process (its own allocator setting and peak memory) and return its JSON result."""
    return case_runner.run_case(__file__, name, case_args)


def report_training(args):
    """Print sargen's step against the original's."""
    results = {variant: [] for variant in ("original", "original_reused_memory", "sargen")}
    for _ in range(args.rounds):
        for variant in results:
            results[variant].append(run_case("train", variant=variant))
    seconds = {variant: statistics.median(r["seconds"] for r in runs) for variant, runs in results.items()}
    peaks = {variant: max(r["peak_mb"] for r in runs) for variant, runs in results.items()}
    print(f"training {args.size} px, U-Net 256, basic D, batch norm, batch 1 (median of {args.rounds} run(s) of "
          f"{args.train_steps} steps): sargen {seconds['sargen']:.2f} s/step vs original {seconds['original']:.2f} "
          f"s/step -> {seconds['original'] / seconds['sargen']:.2f}x; peak {peaks['sargen']:.0f} vs "
          f"{peaks['original']:.0f} MB")
    print(f"  vs the original step with sargen's memory reuse ({seconds['original_reused_memory']:.2f} s/step): "
          f"{seconds['original_reused_memory'] / seconds['sargen']:.2f}x")


def report_inference(args):
    """Print the generators' throughput."""
    results = {variant: run_case("inference", variant=variant) for variant in ("pix2pix", "pix2pix_plain", "ugatit")}
    pix2pix, plain, ugatit = (results[variant]["megapixels_per_s"] for variant in results)
    print(f"inference, {args.size} px tiles: pix2pix U-Net 256 (batch norm folded, float32) {pix2pix:.3f} MP/s vs its "
          f"plain eval forward {plain:.3f} MP/s -> {pix2pix / plain:.2f}x; U-GAT-IT (light, ngf 64, 4 blocks) "
          f"{ugatit:.3f} MP/s -> pix2pix / U-GAT-IT {pix2pix / ugatit:.2f}x")


def report_learning(args):
    """Print pix2pix's and U-GAT-IT's dB errors after the same training time on the known-mapping task."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "sen12ms_known_mapping"
        make_dataset(["sen12ms", "--out", str(root), "--size", str(args.patch), "--n_scenes", str(args.scenes),
                      "--known_mapping"])
        results = {model: run_case("learning", model=model, root=str(root)) for model in ("pix2pix", "ugatit")}
    pix2pix, ugatit = results["pix2pix"], results["ugatit"]
    print(f"learning, {args.budget:g} s of training each on the known-mapping task ({args.patch} px patches, "
          f"{pix2pix['pairs']} held-back pairs): mean absolute error pix2pix {pix2pix['error_db']:.2f} dB "
          f"({pix2pix['steps']} steps), U-GAT-IT {ugatit['error_db']:.2f} dB ({ugatit['steps']} steps); the mean "
          f"training SAR image {pix2pix['constant_db']:.2f} dB")


def main():
    """Run the chosen cases and print the figures."""
    args = build_parser().parse_args()
    if args.size % 256:
        raise SystemExit(f"--size {args.size}: the U-Net 256 takes sides that are multiples of 256")
    case_runner.start(args)
    if case_runner.answer_case(args, {"train": case_train, "inference": case_inference, "learning": case_learning}):
        return
    print(f"device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    cases = args.cases.split(",")
    if "train" in cases:
        report_training(args)
    if "inference" in cases:
        report_inference(args)
    if "learning" in cases:
        report_learning(args)


if __name__ == "__main__":
    main()

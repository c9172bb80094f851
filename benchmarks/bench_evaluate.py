"""evaluate.py speed: its paths against plain baselines measured in the same run.

- Inception features: pytorch-fid's network on batches of --batch_size images against one image at a time
  (the weights of the hub cache, else seeded random values with pytorch-fid's keys; speed is the same);
- Frechet distance: sargen's (evaluation.metrics.frechet_distance: tr((S_a S_b)^1/2) from the eigenvalues of a
  symmetric matrix of at most D x D) against pytorch-fid's calculate_frechet_distance (scipy's sqrtm of the D x D
  covariance product, the computation published FIDs come from) on the same means and covariances, with
  fewer images than dimensions (--images) and more (--many_images), and their relative difference;
- ENL: the censored estimate on a clipped dB-rendered band against the plain estimate on the same pixels.

    python benchmarks/bench_evaluate.py                                           # a few minutes on 2 cores (sqrtm)
    python benchmarks/bench_evaluate.py --dims 768 --many_images 1000 --size 128   # quicker
"""

import argparse
import contextlib
import io
import sys
import tempfile
import time
import warnings
from pathlib import Path
from unittest import mock

# Run as a script, Python puts benchmarks/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pytorch_fid.inception
import torch
import torchvision
from pytorch_fid.fid_score import calculate_frechet_distance

from evaluation import speckle
from evaluation.inception import FIDFeatures, fid_input, fid_weights_path
from evaluation.metrics import frechet_distance
from evaluation.physical import PhysicalScale, clipped_masks


def build_parser():
    """Benchmark settings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16, help="images per set")
    parser.add_argument("--size", type=int, default=256, help="image side")
    parser.add_argument("--batch_size", type=int, default=16, help="Inception batch (evaluate.py: 50)")
    parser.add_argument("--dims", type=int, default=2048, help="feature dimensions for the Frechet distance")
    parser.add_argument("--many_images", type=int, default=2560,
                        help="images per set of the Frechet case with more images than dimensions")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    return parser


def fid_weights(folder):
    """The hub cache's pytorch-fid weights, else a file of seeded random values with its keys."""
    if fid_weights_path().is_file():
        return fid_weights_path(), "pytorch-fid's weights"
    torch.manual_seed(0)
    with mock.patch.object(pytorch_fid.inception, "load_state_dict_from_url", lambda *args, **kwargs: {}), \
            mock.patch.object(torchvision.models.Inception3, "load_state_dict", lambda self, state: None):
        network = pytorch_fid.inception.fid_inception_v3()
    path = Path(folder) / "fid_random.pth"
    torch.save(network.state_dict(), path)
    return path, "seeded random weights"


def timed(function, *args):
    """(result, seconds) of one call of function(*args)."""
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def pytorch_fid_frechet(features_a, features_b):
    """pytorch-fid's calculate_frechet_distance on the features' means and np.cov covariances (the baseline)."""
    statistics = [(features.mean(axis=0), np.cov(features, rowvar=False)) for features in (features_a, features_b)]
    # Its notes on a singular covariance product (a print, scipy's warning): usual with fewer images than dims.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(calculate_frechet_distance(*statistics[0], *statistics[1]))


def bench_inception(args, folder):
    """Seconds per image batched and one at a time."""
    path, description = fid_weights(folder)
    extractor = FIDFeatures(path, 2048, torch.device("cpu"), args.batch_size)
    images = [fid_input(torch.rand(3, args.size, args.size)) for _ in range(args.images)]
    extractor(images[:1])  # warm-up
    batched, batched_seconds = timed(lambda: extractor(images))
    single = FIDFeatures(path, 2048, torch.device("cpu"), 1)
    one_by_one, single_seconds = timed(lambda: single(images))
    print(f"Inception ({description}), {args.images} images of {args.size} px: batches of {args.batch_size} "
          f"{batched_seconds / args.images:.3f} s/image, one at a time {single_seconds / args.images:.3f} s/image: "
          f"{single_seconds / batched_seconds:.2f}x (features differ by "
          f"{np.abs(batched - one_by_one).max():.2g})")


def bench_frechet(args):
    """sargen's Frechet distance against pytorch-fid's on random features, with fewer and more images than dims."""
    rng = np.random.default_rng(0)
    for images in (args.images, args.many_images):
        features_a = rng.normal(size=(images, args.dims)) ** 2  # non-negative, skewed: like pooled activations
        features_b = rng.normal(0.3, 1.2, size=(images, args.dims)) ** 2
        fast, fast_seconds = timed(frechet_distance, features_a, features_b)
        package, package_seconds = timed(pytorch_fid_frechet, features_a, features_b)
        print(f"Frechet distance, {images} x {args.dims} features per set: sargen {fast_seconds:.3f} s, pytorch-fid "
              f"(sqrtm) {package_seconds:.2f} s: {package_seconds / fast_seconds:.1f}x faster; values {fast:.8g} and "
              f"{package:.8g} (relative difference {abs(package - fast) / package:.2g})")


def bench_enl(args):
    """The censored ENL against the plain one on a clipped 1-look rendering."""
    intensity = np.random.default_rng(1).gamma(1.0, 10 ** -0.5, (args.size, args.size))
    levels = np.clip(np.round((10 * np.log10(intensity) + 25) / 25 * 255), 0, 255) / 255
    scale = PhysicalScale("db", -25.0, 25.0, 1 / 255)
    linear = scale.linear(levels)
    low, high = clipped_masks(levels)
    clipped = speckle.ClippedPixels(low, high, scale.censoring())
    plain, plain_seconds = timed(lambda: speckle.equivalent_number_of_looks(linear))
    censored, censored_seconds = timed(lambda: speckle.equivalent_number_of_looks(linear, clipped=clipped))
    print(f"ENL of 1-look speckle at -5 dB, {args.size} px, {(low | high).mean():.1%} clipped: censored "
          f"{censored:.3f} in {censored_seconds:.2f} s, plain {plain:.3f} in {plain_seconds:.2f} s: "
          f"{censored_seconds / plain_seconds:.1f}x the time")


def main():
    """Run the three comparisons."""
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        bench_inception(args, folder)
    bench_frechet(args)
    bench_enl(args)


if __name__ == "__main__":
    main()

"""Data-loader images per second on a GeoTIFF tree: sargen's reading path against a plain reader, and against the
code of another git revision (by default main, i.e. the reading path before per-domain radiometry).

The tree holds Sentinel-2 patches (13-band int16, like SEN12MS) and Sentinel-1 patches (VV/VH float32 dB) in the
SEN12MS layout, and the same files flattened into testA/testB for --dataset_mode unaligned. Each measurement runs
in its own process (so the other revision's code can be imported), reads every patch through a DataLoader
(batch 8, no workers) `--rounds` times and keeps the best round; the plain reader (tifffile, numpy, torch resize:
the reading rule written out with nothing else) is measured in the same process, and every rate is also given
as a ratio to it. What is compared:
- S2 RGB: bands 4,3,2 with the percentile rule, test items (U-GAT-IT resize to --img_size);
- S1 VV: band 1 with the db rule on dB values (the old code could not read two bands into two channels);
- with this revision only: S1 VV+VH into 2 channels, and training items (S2 and S1 each) of --dataset_mode sen12ms.

    python benchmarks/bench_data.py                      # 48 patches of 256 px per sensor, main as baseline
    python benchmarks/bench_data.py --baseline_ref HEAD~3 --patches 96
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

S2_A = ["--bands_A", "4,3,2", "--intensity_scaling_A", "percentile"]
S1_B = ["--intensity_scaling_B", "db", "--input_unit_B", "db", "--db_window_B=-25,0"]
# name: (dataset mode, direction, options in the old (plain) form, options in the per-domain form, plain reader's
# bands and whether it applies the dB window)
CASES = {
    "S2 RGB (bands 4,3,2, percentile)": ("unaligned", "AtoB", ["--bands", "4,3,2", "--intensity_scaling",
                                                               "percentile"], S2_A, (4, 3, 2), False),
    "S1 VV (band 1, dB window)": ("unaligned", "BtoA", ["--bands", "1", "--intensity_scaling", "db",
                                                        "--input_unit", "db", "--output_nc", "1"],
                                  ["--bands_B", "1", *S1_B, "--output_nc", "1"], (1,), True),
    "S1 VV+VH (2 channels, dB window)": ("unaligned", "BtoA", None, [*S1_B, "--output_nc", "2"], (1, 2), True),
    "sen12ms training items (S2 + S1)": ("sen12ms", "AtoB", None, [], (4, 3, 2), False),
}


def build_parser():
    """Benchmark settings (and the worker mode the driver runs)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patches", type=int, default=48, help="patches per sensor")
    parser.add_argument("--size", type=int, default=256, help="patch side in pixels")
    parser.add_argument("--img_size", type=int, default=256, help="U-GAT-IT image size of the items")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the data per process; the fastest counts")
    parser.add_argument("--repeats", type=int, default=2,
                        help="processes per case and code, alternating between the codes; the fastest counts")
    parser.add_argument("--baseline_ref", default="main", help="git revision of the code to compare with ('' to skip)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser


def make_tree(root, patches, size):
    """The SEN12MS-layout tree (4 scenes) and its flattened copy (hard links) in testA/testB; returns both roots."""
    import numpy as np
    import rasterio
    from affine import Affine

    tree, flat = root / "sen12ms", root / "flat"
    rng = np.random.default_rng(0)
    for index in range(patches):
        scene = index % 4 + 1
        for sensor in ("s2", "s1"):
            name = f"ROIs1158_spring_{sensor}_{scene}_p{index}.tif"
            path = tree / "ROIs1158_spring" / f"{sensor}_{scene}" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if sensor == "s2":
                bands = rng.integers(0, 6000, (13, size, size)).astype(np.int16)
            else:
                bands = (10 * np.log10(rng.gamma(4.0, 0.025, (2, size, size)))).astype(np.float32)
            with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=bands.shape[0],
                               dtype=bands.dtype.name, crs="EPSG:32633",  # pixel-interleaved, uncompressed
                               transform=Affine(10.0, 0.0, 300000.0 + 2560.0 * index, 0.0, -10.0, 5000000.0)) \
                    as dataset:
                dataset.write(bands)
            for phase in ("test", "train"):
                link = flat / f"{phase}{'A' if sensor == 's2' else 'B'}" / name
                link.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, link)
    return tree, flat


def plain_rate(paths, bands, db, img_size, rounds):
    """Images per second of the reading rule written out plainly: rasterio, band pick, scale, resize, to [-1, 1]."""
    import numpy as np
    import rasterio
    import torch
    import torchvision.transforms.functional as TF

    def read(path):
        with rasterio.open(path) as dataset:
            values = dataset.read(list(bands)).astype(np.float32)
        low, high = (-25.0, 0.0) if db else np.percentile(values, (2.0, 98.0))
        image = torch.from_numpy(np.clip((values - low) / (high - low), 0, 1))
        return TF.resize(image, [img_size, img_size], antialias=True) * 2 - 1

    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for path in paths:
            read(path)
        best = max(best, len(paths) / (time.perf_counter() - start))
    return best


def worker(spec):
    """Measure one case with the code of spec['code'] (imported from there); print {rate, plain} as JSON."""
    sys.path.insert(0, spec["code"])
    import torch

    from data import create_dataloader, create_dataset
    from options.test_options import TestOptions
    from options.train_options import TrainOptions

    torch.set_num_threads(1)
    mode, direction, options = spec["mode"], spec["direction"], spec["options"]
    train = mode == "sen12ms"
    argv = ["--model", "ugatit", "--dataset_mode", mode, "--dataroot", spec["root"], "--name", "bench",
            "--checkpoints_dir", spec["work"], "--gpu_ids", "-1", "--num_threads", "0", "--img_size",
            str(spec["img_size"]), "--direction", direction, "--batch_size", "8", "--serial_batches", *options]
    if train:
        argv += ["--display_id", "0"]
    opt = (TrainOptions() if train else TestOptions()).parse(argv, save=False)
    dataset = create_dataset(opt)
    loader = create_dataloader(dataset, opt, shuffle=False)
    images_per_item = 2 if train else 1
    best = 0.0
    for _ in range(spec["rounds"]):
        start = time.perf_counter()
        count = sum(len(batch[f"{'A' if direction == 'AtoB' else 'B'}_paths"]) for batch in loader)
        best = max(best, count * images_per_item / (time.perf_counter() - start))
    source = "testA" if direction == "AtoB" else "testB"
    paths = sorted((Path(spec["flat"]) / source).iterdir())
    plain = plain_rate(paths, spec["plain_bands"], spec["plain_db"], spec["img_size"], spec["rounds"])
    print(json.dumps({"rate": best, "plain": plain}))


def measure(code, case, options, tree, flat, work, args):
    """Run one case in a fresh process with the code in `code`; return {rate, plain} (images per second)."""
    mode, direction, _, _, plain_bands, plain_db = CASES[case]
    spec = {"code": str(code), "mode": mode, "direction": direction, "options": options,
            "plain_bands": plain_bands, "plain_db": plain_db,
            "root": str(tree if mode == "sen12ms" else flat), "flat": str(flat), "work": str(work),
            "img_size": args.img_size, "rounds": args.rounds}
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], cwd=code, env=environment,
                               capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"{case} with {code} failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def export_revision(ref, target):
    """The code of git revision `ref` exported to `target` (git archive), or None when git cannot."""
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", ref], capture_output=True)
    if archive.returncode != 0:
        print(f"cannot export {ref}: {archive.stderr.decode().strip()}; no baseline revision")
        return None
    target.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def main(argv=None):
    """Build the tree, measure every case with this code and the baseline revision, print the table."""
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker))
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        tree, flat = make_tree(folder / "data", args.patches, args.size)
        baseline = export_revision(args.baseline_ref, folder / "baseline") if args.baseline_ref else None
        print(f"{args.patches} patches per sensor, {args.size} px, items of {args.img_size} px, batch 8, "
              f"best of {args.rounds} rounds; images per second (x the plain reader in the same process)")
        for case, (_, _, old_options, new_options, _, _) in CASES.items():
            codes = {"this code": (REPO_ROOT, new_options)}
            if baseline is not None and old_options is not None:
                codes[args.baseline_ref] = (baseline, old_options)
            best = {}
            for _ in range(args.repeats):  # alternate the codes, so that both see the same machine load
                for label, (code, options) in codes.items():
                    result = measure(code, case, options, tree, flat, folder / "work", args)
                    if label not in best or result["rate"] > best[label]["rate"]:
                        best[label] = result
            line = f"{case:36s}" + "".join(f"  {label} {result['rate']:7.1f} (x{result['rate'] / result['plain']:.2f})"
                                           for label, result in best.items())
            if len(best) == 2:
                ratio = best["this code"]["rate"] / best[args.baseline_ref]["rate"]
                line += f"  this / {args.baseline_ref} {ratio:.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()

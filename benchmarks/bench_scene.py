"""Whole scenes through app.py --tile: peak memory and megapixels per second, streamed against the old whole-scene path.

Each size gets a 3-band uint8 GeoTIFF scene (tiled, deflate, UTM grid) with a no-data (0) strip of a tenth of
its width on the left, as a Sentinel-2 tile cut by its swath. A small light U-GAT-IT checkpoint (seeded) turns
it into SAR with --tile 256 --overlap 32 and the default two passes, in float32 on the CPU:

- streamed: app.py itself (window-by-window reading, a band of tile rows in memory, Cloud-Optimized GeoTIFF
  written from the finished rows);
- whole-scene (baseline): sargen's former path, reimplemented compactly below: the scene read whole as
  float32, every tile blended into a scene-sized canvas, the float32 result written at once as an
  uncompressed GeoTIFF (no no-data: the strip is translated as data).

Every case runs in its own process, so its peak resident set is its own (VmHWM, which starts afresh in a new
program, where ru_maxrss would keep the forking parent's); the resident set once the modules are imported
(torch, GDAL: the same for every case) is given beside it. The machine may be
shared: the ratios, measured in the same run, are the figures to compare.

    python benchmarks/bench_scene.py                       # 8,000 and 4,000 px: several minutes on 2 cores
    python benchmarks/bench_scene.py --sizes 2000,1000     # quicker
"""

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, Python puts benchmarks/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import case_runner
import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from affine import Affine
from rasterio.windows import Window

from models.file_translation import app_main
from models.tiling import SharedNormStatistics, blend_window, tile_cores, tile_starts
from models.translators import load_translator
from models.ugatit_networks import Generator
from util.device import reuse_memory_on_cpu

TILE, OVERLAP = 256, 32


def build_parser():
    """Benchmark settings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="8000,4000", help="scene sides in pixels")
    parser.add_argument("--ch", type=int, default=8, help="base channels of the light generator")
    parser.add_argument("--n_res", type=int, default=2, help="residual blocks")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--work", default=None, help="folder for scenes and outputs (default: a temporary one)")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case, print JSON
    parser.add_argument("--case_args", default="{}", help=argparse.SUPPRESS)
    return parser


def write_checkpoint(path, args):
    """A seeded light EO (3) -> SAR (1) checkpoint in the eo2sar format."""
    torch.manual_seed(0)
    networks = {"genA2B": Generator(3, 1, ngf=args.ch, n_blocks=args.n_res, img_size=256, light=True),
                "genB2A": Generator(1, 3, ngf=args.ch, n_blocks=args.n_res, img_size=256, light=True)}
    torch.save({name: network.state_dict() for name, network in networks.items()}, path)
    return path


def write_scene(path, size, strip):
    """A size x size 3-band uint8 GeoTIFF (smooth texture plus noise, values 1..255) with a no-data strip."""
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8", "nodata": 0,
               "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate", "crs": "EPSG:32633",
               "transform": Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4600000.0)}
    generator = torch.Generator().manual_seed(size)
    rows = 512
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(path, "w", **profile) as dataset:
        for top in range(0, size, rows):
            height = min(rows, size - top)
            coarse = torch.rand(1, 3, height // 32 + 2, size // 32 + 2, generator=generator)
            smooth = F.interpolate(coarse, size=(height, size), mode="bilinear", align_corners=False)[0]
            noise = torch.rand(3, height, size, generator=generator)
            band = (1 + 254 * (0.85 * smooth + 0.15 * noise)).round().clamp(1, 255).to(torch.uint8).numpy()
            band[:, :, :strip] = 0
            dataset.write(band, window=Window(0, top, size, height))
    return path


def case_streamed(args, scene, checkpoint, out):
    """app.py --tile on the scene: the streamed path."""
    app_main(["--model_path", checkpoint, "--img", scene, "--out", out, "--tile", str(TILE), "--overlap",
              str(OVERLAP), "--precision", "float32", "--device", "cpu",
              "--intensity_scaling", "auto"])  # 8-bit levels / 255; the benchmark's checkpoint records no radiometry


def case_whole_scene(args, scene, checkpoint, out):
    """sargen's former whole-scene path (a compact reimplementation: whole read, scene-sized canvas, whole write)."""
    reuse_memory_on_cpu(torch.device("cpu"), system_allocator=False)  # as app.py did
    translator = load_translator(checkpoint, precision="float32")
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(scene) as dataset:
        image = torch.from_numpy(dataset.read().astype(np.float32) / 255.0) * 2 - 1
        profile = {"crs": dataset.crs, "transform": dataset.transform}
    height, width = image.shape[-2:]
    row_starts, column_starts = tile_starts(height, TILE, TILE - OVERLAP), tile_starts(width, TILE, TILE - OVERLAP)
    tiles = [((top, left), row_core + column_core)
             for top, row_core in zip(row_starts, tile_cores(row_starts, TILE, height))
             for left, column_core in zip(column_starts, tile_cores(column_starts, TILE, width))]
    statistics = SharedNormStatistics(translator.generator, TILE)
    with statistics:
        for (top, left), core in tiles:  # first pass: pooled normalization statistics
            statistics.cores, statistics.masks = [core], [None]
            translator(image[None, :, top: top + TILE, left: left + TILE])
        statistics.finish_pass()
        statistics.collecting = False
        window = blend_window(TILE, OVERLAP)
        output, weights = torch.zeros(1, height, width), torch.zeros(1, height, width)
        for (top, left), core in tiles:
            statistics.cores, statistics.masks = [core], [None]
            tile_output = translator(image[None, :, top: top + TILE, left: left + TILE])[0][0]
            output[:, top: top + TILE, left: left + TILE] += tile_output * window
            weights[:, top: top + TILE, left: left + TILE] += window
    db = -25.0 + (output / weights + 1) / 2 * 25.0
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(out, "w", driver="GTiff", width=width, height=height,
                                                            count=1, dtype="float32", **profile) as dataset:
        dataset.write(db.numpy())


def peak_resident_mb():
    """This program's peak resident set in MB: Linux's VmHWM, else ru_maxrss (which may include the parent's)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(name, **case_args):
    """Run one case in a fresh process (for its own peak memory) and return its JSON result."""
    return case_runner.run_case(__file__, name, case_args)


def main():
    """Build the scenes, run every case and print peak memory and throughput against the baseline."""
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    if args.case:
        case_args = json.loads(args.case_args)
        imported_mb = peak_resident_mb()
        started = time.perf_counter()
        {"streamed": case_streamed, "whole_scene": case_whole_scene}[args.case](args, **case_args)
        seconds = time.perf_counter() - started
        peak_mb = peak_resident_mb()
        print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "imported_mb": imported_mb}))
        return
    with tempfile.TemporaryDirectory(dir=args.work) as folder:
        folder = Path(folder)
        checkpoint = str(write_checkpoint(folder / "scene_params_latest.pt", args))
        print(f"{torch.get_num_threads()} threads, torch {torch.__version__}; light generator ngf {args.ch}, "
              f"{args.n_res} residual blocks; --tile {TILE} --overlap {OVERLAP}, 2 passes, float32 on the CPU")
        for size in (int(side) for side in args.sizes.split(",")):
            scene = str(write_scene(folder / f"scene_{size}.tif", size, strip=size // 10))
            megapixels = size * size / 1e6
            results = {}
            for name in ("streamed", "whole_scene"):
                out = str(folder / f"{name}_{size}.tif")
                results[name] = run_case(name, scene=scene, checkpoint=checkpoint, out=out)
                Path(out).unlink(missing_ok=True)
            streamed, whole = results["streamed"], results["whole_scene"]
            print(f"{size} x {size} px ({megapixels:.0f} MP, no-data strip {size // 10} px): streamed "
                  f"{megapixels / streamed['seconds']:.3f} MP/s, peak {streamed['peak_mb']:.0f} MB; whole-scene "
                  f"{megapixels / whole['seconds']:.3f} MP/s, peak {whole['peak_mb']:.0f} MB -> "
                  f"{whole['seconds'] / streamed['seconds']:.2f}x the throughput, "
                  f"{streamed['peak_mb'] / whole['peak_mb']:.2f}x the memory (after imports: "
                  f"{streamed['imported_mb']:.0f} and {whole['imported_mb']:.0f} MB)", flush=True)


if __name__ == "__main__":
    main()

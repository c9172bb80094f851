"""Whole scenes through the tiler: how close tiles come to the whole image, at what cost, with what memory.

The generator has the published eo2sar shape (light U-GAT-IT, ngf 64, 4 residual blocks, 3 -> 3 channels) with
every weight seeded and perturbed by 0.02 x randn (a stand-in for trained weights: pretrained checkpoints cannot
be downloaded here), run in float32 on the CPU. One run prints:

- accuracy: on an example optical scene small enough to translate whole (--accuracy_size), the 8-bit difference
  (mean, 99th percentile, max) between the tiled and the whole-image output for each tile size and pass count,
  the seconds each took, against one pass and against the plain tile-by-tile forward (tiles of the same size,
  no context, each normalized on its own: the baseline bench_ugatit.py calls plain);
- the same scene with a statistics sample smaller than its tiles (a scene too large for one group): 2 and 3
  passes;
- the border effect: with the whole image's statistics, the difference as the overlap and the context grow;
- seams: the mean absolute step across the lines where tiles hand over (their cores' borders) against the same
  step one pixel inside the tiles, with 1 pass and the default (1.0: nothing marks the tile borders);
- scenes: app.py --tile on 3-band uint8 GeoTIFF scenes (tiled, deflate, UTM grid, a no-data strip of a tenth of
  the width on the left) at two sizes, each in its own process: peak resident memory (VmHWM, imports
  included; the resident set once torch and GDAL are imported is given beside it), seconds and megapixels per
  second, and the second size's peak against the first's.

The machine may be shared: the ratios, measured in the same run, are the figures to compare.

    python benchmarks/bench_scene.py                                     # the full run: hours on 2 cores
    python benchmarks/bench_scene.py --sizes 1000,2000 --accuracy_size 256 --tiles 128:32   # minutes
    python benchmarks/bench_scene.py --parts scenes --sizes 2000,4000        # memory and throughput only
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

from data.image_io import tensor_to_uint8
from datasets.make_dataset import category_of, render_eo2sar_pair
from models.file_translation import app_main
from models.tiling import STATISTICS_PIXELS, TILE_CONTEXT, TilePlan, translate_tiled, translate_whole
from models.translators import load_translator
from models.ugatit_networks import Generator
from util.device import reuse_memory_on_cpu

PERTURBATION = 0.02
PARTS = ("accuracy", "border", "seams", "scenes")


def build_parser():
    """Benchmark settings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="8000,16000", help="sides in pixels of the two streamed scenes")
    parser.add_argument("--scene_tile", default="256:32", help="TILE:OVERLAP of the streamed scenes")
    parser.add_argument("--accuracy_size", type=int, default=512, help="side of the scene compared with the whole")
    parser.add_argument("--tiles", default="256:32,128:32,64:16", help="TILE:OVERLAP pairs compared with the whole")
    parser.add_argument("--sample_megapixels", type=float, default=0.25,
                        help="statistics sample of the 'scene larger than the sample' rows")
    parser.add_argument("--ch", type=int, default=64, help="base channels of the light generator")
    parser.add_argument("--n_res", type=int, default=4, help="residual blocks")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--work", default=None, help="folder for scenes and outputs (default: a temporary one)")
    parser.add_argument("--app_args", default="",
                        help="extra app.py options of the scene runs, e.g. --app_args='--statistics_megapixels 0.25'")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"parts to run, of {','.join(PARTS)} (border and seams need accuracy's whole image)")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case, print JSON
    parser.add_argument("--case_args", default="{}", help=argparse.SUPPRESS)
    return parser


def tile_pairs(text):
    """[(tile, overlap), ...] of 'TILE:OVERLAP,...'."""
    return [tuple(int(value) for value in pair.split(":")) for pair in text.split(",")]


def perturbed_generator(args, input_nc=3, output_nc=3):
    """A light generator of the published shape, seeded, rho off its initial values, every weight perturbed."""
    torch.manual_seed(0)
    generator = Generator(input_nc, output_nc, ngf=args.ch, n_blocks=args.n_res, img_size=256, light=True)
    with torch.no_grad():
        for name, parameter in generator.named_parameters():
            if name.endswith("rho"):
                parameter.uniform_(0.2, 0.8)
            parameter.add_(PERTURBATION * torch.randn_like(parameter))
    return generator.eval()


def write_checkpoint(path, args):
    """The perturbed generators as an eo2sar-format checkpoint (genA2B, genB2A)."""
    torch.save({"genA2B": perturbed_generator(args).state_dict(),
                "genB2A": perturbed_generator(args).state_dict()}, path)
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


def peak_resident_mb():
    """This program's peak resident set in MB: Linux's VmHWM, else ru_maxrss (which may include the parent's)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def case_scene(args, scene, checkpoint, out):
    """app.py --tile on a scene at its default settings (float32 on the CPU, as app.py runs there)."""
    tile, overlap = tile_pairs(args.scene_tile)[0]
    app_main(["--model_path", checkpoint, "--img", scene, "--out", out, "--tile", str(tile), "--overlap",
              str(overlap), "--precision", "float32", "--device", "cpu",
              "--intensity_scaling", "auto",  # 8-bit levels / 255; the benchmark's checkpoint records no radiometry
              *args.app_args.split()])


def accuracy_scene(size):
    """An example optical scene (datasets/make_dataset.py's renderer) in [-1, 1], CxHxW."""
    optical, _ = render_eo2sar_pair(np.random.default_rng(7), size, category_of(1))
    return torch.from_numpy(optical.transpose(2, 0, 1).astype(np.float32)) / 127.5 - 1.0


def levels(output):
    """An output in [-1, 1] (CxHxW) as 8-bit levels (HxWxC int array)."""
    return tensor_to_uint8(output, (-1.0, 1.0)).astype(int)


def timed(function, *args, **kwargs):
    """(seconds, result) of one call of function(*args, **kwargs)."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def difference(tiled, whole):
    """'mean M p99 P max X' of the 8-bit difference."""
    values = np.abs(tiled - whole)
    return f"mean {values.mean():5.2f} p99 {np.percentile(values, 99):5.1f} max {values.max():3d}"


def seam_ratio(output, plan):
    """Mean absolute step across the tiles' core borders over the mean step one pixel inside (both axes)."""
    across, inside = [], []
    for cores, starts, axis in ((plan.row_cores, plan.row_starts, 0), (plan.column_cores, plan.column_starts, 1)):
        for (first, _), start in list(zip(cores, starts))[1:]:
            border = start + first  # the first row (column) this tile owns
            step = np.abs(np.diff(output.take(range(border - 2, border + 1), axis=axis), axis=axis))
            across.append(step.take(1, axis=axis).mean())
            inside.append(step.take(0, axis=axis).mean())
    return float(np.mean(across) / np.mean(inside)) if across else float("nan")


def report_accuracy(args, translator):
    """Print the difference from the whole image per tile size and pass count, with the time each took."""
    image = accuracy_scene(args.accuracy_size)
    translate_whole(translator, image[:, :64, :64])  # warm-up: the first call of a process is slower
    seconds, (whole, _) = timed(translate_whole, translator, image)
    whole = levels(whole)
    print(f"\nAccuracy: {args.accuracy_size} x {args.accuracy_size} px example scene, whole image {seconds:.1f} s; "
          f"8-bit difference from the whole image (context {TILE_CONTEXT} px, statistics sample "
          f"{STATISTICS_PIXELS / 1e6:g} MP)")
    for tile, overlap in tile_pairs(args.tiles):
        plain_seconds, (plain, _) = timed(translate_tiled, translator, image, tile, overlap, passes=1, context=0)
        print(f"  tile {tile} overlap {overlap}: plain tile by tile (no context, 1 pass) "
              f"{difference(levels(plain), whole)}  {plain_seconds:6.1f} s")
        one_pass = None
        for passes in (1, 2, 3):
            seconds, (output, _) = timed(translate_tiled, translator, image, tile, overlap, passes=passes)
            one_pass = one_pass or seconds
            print(f"    --tile_passes {passes}: {difference(levels(output), whole)}  {seconds:6.1f} s = "
                  f"{seconds / one_pass:.2f}x one pass, {plain_seconds / seconds:.2f}x the plain throughput")
    tile, overlap = tile_pairs(args.tiles)[0]
    pixels = int(args.sample_megapixels * 1e6)
    print(f"  tile {tile} overlap {overlap}, scene larger than the statistics sample ({args.sample_megapixels:g} "
          f"MP): 2 passes use the sample's statistics, every further pass sweeps over every tile (in groups of the "
          f"sample's size) and makes one more layer's statistics the whole scene's")
    for passes in (2, 3, 4, 8, 16):
        seconds, (output, _) = timed(translate_tiled, translator, image, tile, overlap, passes=passes,
                                     statistics_pixels=pixels)
        print(f"    --tile_passes {passes}: {difference(levels(output), whole)}  {seconds:6.1f} s")
    return image, whole


def report_border_effect(args, translator, image, whole):
    """Print the difference with the whole image's statistics as the overlap, then the context, grows."""
    tile = tile_pairs(args.tiles)[0][0]
    print(f"\nBorder effect (tile {tile}, the whole image's statistics): the difference left")
    for overlap, context in ((16, 0), (32, 0), (64, 0), (32, 16), (32, 32), (32, 48)):
        if tile > 2 * overlap:
            output, _ = translate_tiled(translator, image, tile, overlap, context=context)
            print(f"  overlap {overlap:2d}, context {context:2d}: {difference(levels(output), whole)}")


def report_seams(args, translator, image, whole):
    """Print the seam ratio with one pass and with the default, and the whole image's at the same lines."""
    tile, overlap = tile_pairs(args.tiles)[0]
    plan = TilePlan(*image.shape[-2:], tile, overlap, translator.generator, TILE_CONTEXT)
    ratios = {passes: seam_ratio(levels(translate_tiled(translator, image, tile, overlap, passes=passes)[0]), plan)
              for passes in (1, 2)}
    print(f"\nSeams (tile {tile} overlap {overlap}): step across the tiles' core borders / step one pixel inside: "
          f"1 pass {ratios[1]:.2f}, default {ratios[2]:.2f} (the whole image at the same lines: "
          f"{seam_ratio(whole, plan):.2f})")


def report_scenes(args, folder, checkpoint):
    """Print peak memory and throughput of app.py --tile at both scene sizes."""
    sizes = [int(side) for side in args.sizes.split(",")]
    tile, overlap = tile_pairs(args.scene_tile)[0]
    print(f"\nScenes: app.py --tile {tile} --overlap {overlap} {args.app_args or ''}, defaults otherwise (context "
          f"{TILE_CONTEXT}, 2 passes, statistics sample {STATISTICS_PIXELS / 1e6:g} MP), float32, a no-data strip of "
          f"a tenth of the width")
    peaks = []
    for size in sizes:
        scene = str(write_scene(folder / f"scene_{size}.tif", size, strip=size // 10))
        out = folder / f"out_{size}.tif"
        result = case_runner.run_case(__file__, "scene", {"scene": scene, "checkpoint": checkpoint, "out": str(out)})
        out.unlink(missing_ok=True)
        Path(scene).unlink(missing_ok=True)
        peaks.append(result["peak_mb"])
        megapixels = size * size / 1e6
        print(f"  {size} x {size} px ({megapixels:.0f} MP): peak {result['peak_mb']:.0f} MB (after imports "
              f"{result['imported_mb']:.0f} MB), {result['seconds']:.0f} s, {megapixels / result['seconds']:.4f} MP/s",
              flush=True)
    if len(peaks) > 1:
        print(f"  peak at {sizes[-1]} px / peak at {sizes[0]} px: {peaks[-1] / peaks[0]:.3f}")


def main():
    """Run every part and print its figures."""
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    if args.case:
        case_args = json.loads(args.case_args)
        imported_mb = peak_resident_mb()
        started = time.perf_counter()
        {"scene": case_scene}[args.case](args, **case_args)
        print(json.dumps({"seconds": time.perf_counter() - started, "peak_mb": peak_resident_mb(),
                          "imported_mb": imported_mb}))
        return
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}; light generator ngf {args.ch}, "
          f"{args.n_res} residual blocks, 3 -> 3 channels, every weight perturbed by {PERTURBATION} x randn; "
          f"float32 on the CPU", flush=True)
    with tempfile.TemporaryDirectory(dir=args.work) as folder:
        folder = Path(folder)
        checkpoint = str(write_checkpoint(folder / "scene_params_latest.pt", args))
        reuse_memory_on_cpu(torch.device("cpu"), system_allocator=False)  # as app.py does
        translator = load_translator(checkpoint, precision="float32")
        parts = set(args.parts.split(","))
        if parts - set(PARTS):
            raise SystemExit(f"--parts: unknown {','.join(sorted(parts - set(PARTS)))} (choose from {','.join(PARTS)})")
        if parts & {"accuracy", "border", "seams"}:
            image, whole = report_accuracy(args, translator)
            if "border" in parts:
                report_border_effect(args, translator, image, whole)
            if "seams" in parts:
                report_seams(args, translator, image, whole)
        if "scenes" in parts:
            report_scenes(args, folder, checkpoint)


if __name__ == "__main__":
    main()

"""Archive throughput of app.py on the CPU: scenes an hour with 1 process and with several under torchrun.

An archive of --scenes GeoTIFF scenes of --size px a side (3-band uint8, tiled, a no-data strip: bench_scene's
scenes) is translated by app.py --tile 256 --overlap 32 (float32, 2 passes) with the published-shape light
generator (ngf 64, 4 residual blocks; seeded weights), once per process count of --processes: 1 process with
all --threads, or `torchrun --standalone --nproc_per_node K` with --threads / K threads a rank. Each run is a
fresh command, so its wall time includes starting Python, loading the model and joining the process group,
as an archive run pays them; the translation time alone comes from the run's manifest.json. Scenes an hour
are given for the benchmark's scenes and, at the same megapixels a second, for Sentinel-2 tiles (10,980 px).
The ratios against 1 process are measured in the same run; with --repeats the cases alternate and the
medians are printed. The machine may be shared: compare the ratios.

    python benchmarks/bench_archive.py                                   # ~5 minutes on 2 quiet cores
    python benchmarks/bench_archive.py --scenes 2 --size 512 --ch 16     # quicker
    python benchmarks/bench_archive.py --processes 1,2,4 --threads 16    # a larger machine
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
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_scene import write_checkpoint, write_scene  # noqa: E402

from util.device import usable_cpu_count  # noqa: E402

SENTINEL2_SIDE = 10980
TILED = ["--tile", "256", "--overlap", "32", "--precision", "float32", "--device", "cpu", "--out_unit", "db",
         "--intensity_scaling", "auto"]  # 8-bit levels / 255: the benchmark's checkpoint records no radiometry


def build_parser():
    """Benchmark settings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=4, help="scenes in the archive")
    parser.add_argument("--size", type=int, default=1024, help="scene side in pixels")
    parser.add_argument("--ch", type=int, default=64, help="base channels of the light generator (published: 64)")
    parser.add_argument("--n_res", type=int, default=4, help="residual blocks (published: 4)")
    parser.add_argument("--processes", default="1,2", help="process counts to compare (1 = plain app.py)")
    parser.add_argument("--threads", type=int, default=usable_cpu_count(), help="CPU threads in all")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each process count (alternating)")
    parser.add_argument("--work", default=None, help="folder for the archive and outputs (default: a temporary one)")
    return parser


def app_command(processes, archive, checkpoint, out):
    """The command line of one archive run with `processes` processes."""
    app = [str(ROOT / "app.py"), "--model_path", str(checkpoint), "--img", str(archive / "*.tif"), "--out", str(out),
           *TILED]
    if processes == 1:
        return [sys.executable, *app]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), *app]


def run_archive(processes, threads, archive, checkpoint, out):
    """Translate the archive once; (wall seconds, translation seconds from manifest.json)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // processes))}
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    started = time.perf_counter()
    completed = subprocess.run(app_command(processes, archive, checkpoint, out), env=env, capture_output=True,
                               text=True)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"{processes} process(es) failed:\n{completed.stderr[-3000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"]["written"] == manifest["totals"]["inputs"], manifest["totals"]
    return seconds, manifest["seconds"]


def main():
    """Build the archive, run it with each process count and print scenes an hour and the ratios."""
    args = build_parser().parse_args()
    counts = [int(count) for count in args.processes.split(",")]
    with tempfile.TemporaryDirectory(dir=args.work) as folder:
        folder = Path(folder)
        checkpoint = write_checkpoint(folder / "archive_params_latest.pt", args)
        archive = folder / "archive"
        archive.mkdir()
        for index in range(args.scenes):
            write_scene(archive / f"scene_{index:03d}.tif", args.size, strip=args.size // 10)
        print(f"{args.scenes} scenes of {args.size} x {args.size} px, light generator ngf {args.ch}, {args.n_res} "
              f"residual blocks, --tile 256 --overlap 32, 2 passes, float32; {args.threads} threads in all on "
              f"{usable_cpu_count()} usable CPUs", flush=True)
        results = {count: [] for count in counts}
        for repeat in range(args.repeats):
            for count in counts:
                out = folder / f"out_{count}_{repeat}"
                results[count].append(run_archive(count, args.threads, archive, checkpoint, out))
                for path in out.iterdir():
                    path.unlink()
        megapixels = args.scenes * args.size ** 2 / 1e6
        baseline = statistics.median(wall for wall, _ in results[counts[0]])
        for count in counts:
            wall = statistics.median(wall for wall, _ in results[count])
            translating = statistics.median(seconds for _, seconds in results[count])
            per_hour = args.scenes / wall * 3600
            sentinel2 = megapixels / translating / (SENTINEL2_SIDE ** 2 / 1e6) * 3600
            print(f"{count} process(es) x {max(1, args.threads // count)} thread(s): {wall:.1f} s in all, "
                  f"{translating:.1f} s translating -> {per_hour:.1f} scenes an hour ({megapixels / translating:.3g} "
                  f"MP/s while translating, {sentinel2:.3g} Sentinel-2 10,980 px scenes an hour); "
                  f"{baseline / wall:.2f}x the throughput of {counts[0]} process(es)", flush=True)


if __name__ == "__main__":
    main()

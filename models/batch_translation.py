"""app.py over an archive: inputs shared among torchrun's ranks, --skip_bad, --skip_existing and manifest.json.

Under torchrun (one or several machines) rank 0 lists the inputs still to do and hands the list to every rank;
rank r translates every world_size-th of them on its own device (cuda:LOCAL_RANK, or the CPU over gloo), so
each file is translated by one rank exactly as a single process translates it. Ranks that finish early wait
for the others (up to WAIT_FOR_RANKS); rank 0 then gathers every rank's records, writes manifest.json
atomically in the output folder (every input with its status, why, output path, rank and seconds) and logs the
totals. Without torchrun the same code runs as one rank.

An output is complete once it exists under its own name: sargen's writers write to a hidden temporary name
(util.fileio) and rename the finished file into place, so a file half-written by a killed run is never under
the output's name and --skip_existing redoes its input.
"""

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import torch

from util import distributed
from util.cli import progress, rank_label
from util.errors import SargenError
from util.fileio import check_output, read_json_record, write_text_atomic

logger = logging.getLogger("sargen")

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "sargen app.py manifest 1"
WAIT_FOR_RANKS = timedelta(days=7)  # a rank with a smaller share waits this long for the others' last files
WRITTEN, SKIPPED, FAILED = "written", "skipped", "failed"
COMPLETE_BEFORE = "its output was complete before this run (--skip_existing)"
NO_VALID_PIXEL = "no valid pixel (all no-data or NaN): its output is all no-data"  # the note of such an input


@dataclass
class InputRecord:
    """What became of one input: its output, status (written, skipped or failed), why, which rank, how long."""

    input: str
    output: str
    status: str
    reason: str = ""
    rank: int = 0
    seconds: float = 0.0


def app_device(device, name):
    """app.py's device for --device `name` (validated as `device`); under torchrun join the process group with
    each process of a machine on its own device: cuda:LOCAL_RANK, or the CPU."""
    if distributed.launched_processes() <= 1:
        return device
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    gpu_ids = []
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if device.index is not None and local_processes > 1:
            raise SargenError(f"--device {name}: under torchrun each of this machine's {local_processes} "
                              f"processes takes cuda:LOCAL_RANK: give --device cuda")
        if device.index is None and count < local_processes:
            raise SargenError(f"torchrun starts {local_processes} processes on this machine, which has {count} "
                              f"CUDA device(s): give --nproc_per_node {count} or --device cpu")
        gpu_ids = [device.index] if device.index is not None else list(range(count))
    return distributed.init_from_env(gpu_ids, timeout=WAIT_FOR_RANKS)


def manifest_path(targets, out):
    """Where manifest.json goes: the output folder (beside the output when --out names a file)."""
    return (Path(targets[0]).parent if targets else Path(out)) / MANIFEST_NAME


def check_manifest_is_ours(path, overwrite=False):
    """Refuse to run when `path` exists but is not an app.py manifest (it would be replaced at the end), unless
    --overwrite (util.fileio.check_output)."""
    check_output(path, (), overwrite, is_manifest, "--out")


def is_manifest(path):
    """Whether `path` is a manifest.json app.py wrote."""
    try:
        return read_json_record(path, MANIFEST_FORMAT, "an app.py manifest", "") is not None
    except SargenError:
        return False


def complete(files):
    """Whether every file of an output exists under its own name (sargen renames only finished files there)."""
    return all(Path(file).is_file() for file in files)


def about_input(error, path):
    """The error's line, naming input `path` if it does not already."""
    message = str(error)
    return message if str(path) in message else f"{path}: {message}"


def translate_batch(pairs, translate_one, args, files_of=lambda target: [target]):
    """Translate this rank's share of the (input, output) `pairs` still to do with translate_one(input, output).

    `files_of(output)` lists the files that make one output complete (the output, its heatmap). Returns
    every input's InputRecord on rank 0 (also written to manifest.json), None on the other ranks.
    """
    started = time.perf_counter()
    manifest = manifest_path([target for _, target in pairs], args.out)
    check_manifest_is_ours(manifest, getattr(args, "overwrite", False))
    records = {}
    if distributed.is_main() and args.skip_existing:
        for position, (path, target) in enumerate(pairs):
            if complete(files_of(target)):
                records[position] = InputRecord(str(path), str(target), SKIPPED, COMPLETE_BEFORE)
        logger.info("--skip_existing: %d of %d outputs are complete already", len(records), len(pairs))
    to_do = distributed.broadcast_object([position for position in range(len(pairs)) if position not in records]
                                         if distributed.is_main() else None)
    share = distributed.shard(to_do)
    if distributed.world_size() > 1:
        logger.info("%d inputs to translate, %d ranks: rank 0 takes %d", len(to_do), distributed.world_size(),
                    len(share))
    for position in progress(share, desc="translating", unit="image"):
        path, target = pairs[position]
        records[position] = translate_recorded(path, target, translate_one, args, files_of)
    parts = distributed.gather_objects(records)
    if parts is None:
        return None
    merged = {position: record for part in parts for position, record in part.items()}
    ordered = [merged[position] for position in range(len(pairs))]
    write_manifest(manifest, ordered, args, time.perf_counter() - started)
    return ordered


def translate_recorded(path, target, translate_one, args, files_of):
    """Translate one input; its InputRecord (with the note translate_one returns, e.g. NO_VALID_PIXEL). A bad input
    stops the run, or with --skip_bad is logged and recorded as failed; an error about the output itself (a full
    or read-only disk) stops the run in any case."""
    started = time.perf_counter()
    try:
        note = translate_one(path, target) or ""
    except SargenError as error:
        message = about_input(error, path)
        if not args.skip_bad or any(str(file) in message for file in files_of(target)):
            raise SargenError(message) from None
        logger.warning("%sskipped (--skip_bad): %s", rank_label(), message)
        return InputRecord(str(path), str(target), FAILED, message, distributed.rank(), time.perf_counter() - started)
    logger.info("wrote %s", target)
    return InputRecord(str(path), str(target), WRITTEN, note, distributed.rank(), time.perf_counter() - started)


def totals(records):
    """{status: count} of the records, every status present, and the count of inputs without a valid pixel."""
    counts = {status: sum(record.status == status for record in records) for status in (WRITTEN, SKIPPED, FAILED)}
    return {**counts, "without_valid_pixel": len(without_valid_pixel(records))}


def without_valid_pixel(records):
    """The inputs written whose every pixel was no-data."""
    return [record.input for record in records if record.status == WRITTEN and record.reason == NO_VALID_PIXEL]


def write_manifest(path, records, args, seconds):
    """Write manifest.json atomically and log the totals."""
    counts = totals(records)
    manifest = {"format": MANIFEST_FORMAT, "model_path": str(args.model_path), "img": str(args.img),
                "processes": distributed.world_size(), "seconds": round(seconds, 3),
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "totals": {"inputs": len(records), **counts}, "inputs": [asdict(record) for record in records]}
    write_text_atomic(path, json.dumps(manifest, indent=1) + "\n")
    rate = f" ({counts[WRITTEN] / seconds * 3600:.1f} an hour)" if counts[WRITTEN] and seconds > 0 else ""
    empty = without_valid_pixel(records)
    shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
    log = logger.warning if empty else logger.info
    log("%d inputs: %d written in %.1f s%s, %d skipped (complete before), %d failed (--skip_bad)%s; %s", len(records),
        counts[WRITTEN], seconds, rate, counts[SKIPPED], counts[FAILED],
        f", {len(empty)} without a valid pixel (outputs all no-data: {shown})" if empty else "", path)

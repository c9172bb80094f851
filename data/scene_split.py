"""Train/test splits by scene, never by patch: neighbouring patches of a scene overlap and would leak across.

A split is a JSON object {PHASE: [scene, ...]}, e.g. {"train": [...], "test": [...]} (any phase names, as
--phase uses them). --split_file gives one; without it a seeded split by scene is made once, written to
CHECKPOINTS_DIR/NAME/split.json and reused by later runs of the same name (test.py included).
"""

import json
import logging
import math
import random
from pathlib import Path

from options.number_types import open_fraction, seed
from util import distributed
from util.errors import SargenError
from util.fileio import write_text_atomic

logger = logging.getLogger("sargen")

SPLIT_FILE_NAME = "split.json"


def add_split_options(parser):
    """Add --split_file, --test_fraction and --split_seed."""
    parser.add_argument("--split_file", default=None,
                        help='JSON file {"train": [scene, ...], "test": [...]} listing the scenes of each split '
                             "(default: CHECKPOINTS_DIR/NAME/split.json, made by scene with --split_seed)")
    parser.add_argument("--test_fraction", type=open_fraction, default=0.2,
                        help="share of the scenes in the test split when the split is made")
    parser.add_argument("--split_seed", type=seed, default=0, help="seed of the split by scene when it is made")
    return parser


def make_split(scenes, test_fraction, seed):
    """{train, test} scene lists: a seeded shuffle of the sorted scenes, ceil(fraction x count) of them for test."""
    scenes = sorted(scenes)
    if len(scenes) < 2:
        raise SargenError(f"{len(scenes)} scene(s) found: a split by scene needs at least 2 (add scenes, or list "
                          f"the scenes of each split in a --split_file)")
    if not 0.0 < test_fraction < 1.0:
        raise SargenError(f"--test_fraction {test_fraction}: give a share between 0 and 1")
    shuffled = scenes[:]
    random.Random(seed).shuffle(shuffled)
    count = min(len(scenes) - 1, max(1, math.ceil(test_fraction * len(scenes))))
    return {"train": sorted(shuffled[count:]), "test": sorted(shuffled[:count])}


def read_split_file(path):
    """The {phase: [scene, ...]} of a split file, or a one-line error naming the file and the expected form."""
    path = Path(path)
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SargenError(f"split file not found: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise SargenError(f"cannot read split file {path}: {error}") from None
    if not isinstance(split, dict) or not all(isinstance(scenes, list) and all(isinstance(scene, str)
                                                                               for scene in scenes)
                                              for scenes in split.values()):
        raise SargenError(f'split file {path} is not a JSON object {{"train": [scene, ...], "test": [...]}}')
    return split


def scene_split(opt, scenes):
    """The split of `scenes` for this run: --split_file, else the run's split.json, else a new seeded one (saved)."""
    if opt.split_file:
        return read_split_file(opt.split_file), str(opt.split_file)
    path = Path(opt.checkpoints_dir) / opt.name / SPLIT_FILE_NAME
    if path.is_file():
        return read_split_file(path), str(path)
    split = make_split(scenes, opt.test_fraction, opt.split_seed)
    if distributed.is_main():
        write_text_atomic(path, json.dumps(split, indent=1) + "\n")
    logger.info("split %d scenes by scene (seed %d, test fraction %g): %d train, %d test; written to %s",
                len(scenes), opt.split_seed, opt.test_fraction, len(split["train"]), len(split["test"]), path)
    return split, str(path)


def phase_scenes(opt, scenes, root):
    """The scenes of `scenes` (those under `root`) in the split of --phase; a one-line error when there are none."""
    split, source = scene_split(opt, scenes)
    if opt.phase not in split:
        raise SargenError(f"split {source} has no '{opt.phase}' split (it has {', '.join(split) or 'none'}): "
                          f"pass --phase with one of them")
    chosen = set(split[opt.phase]) & set(scenes)
    if not chosen:
        listed = ", ".join(split[opt.phase][:3]) or "none"
        raise SargenError(f"none of the '{opt.phase}' scenes of {source} ({listed}) is under {root} (found "
                          f"{', '.join(sorted(scenes)[:3])}): fix --dataroot, or delete {source} to split anew")
    unassigned = set(scenes) - {scene for scenes_of_phase in split.values() for scene in scenes_of_phase}
    if unassigned:
        logger.warning("%d scene(s) under %s are in no split of %s and are left out (e.g. %s)", len(unassigned),
                       root, source, sorted(unassigned)[0])
    logger.info("%s split (%s): %d of %d scenes", opt.phase, source, len(chosen), len(scenes))
    return chosen

"""DATAROOT/pairing.json: which folders of a dataset hold co-registered images and which are unpaired.

Co-registered folders hold images of the same scene under the same file name (testB/NAME.png is the SAR
rendering of the scene of testA/NAME.png), so metrics that compare images pixel by pixel (PSNR, SSIM, ...) mean
something there. Unpaired folders share no file names: pairing their images by name finds nothing. Folders are
given relative to DATAROOT with '/' separators. The example data generator (datasets/make_dataset.py) writes it;
other datasets may add one by hand:

    {"format": 1, "co_registered": [["testA", "testB"]], "unpaired": [["trainA", "trainB"]], ...}
"""

import json
import os
from pathlib import Path

from util.fileio import read_json_record, write_text_atomic

PAIRING_FILE = "pairing.json"
PAIRING_FORMAT = 1
CO_REGISTERED, UNPAIRED = "co_registered", "unpaired"
RULE = ("co_registered: the folders of a group show the same scene under the same file name; "
        "unpaired: the folders of a group share no file names")


def write_pairing(root, co_registered, unpaired, generator=None):
    """Write ROOT/pairing.json (atomically, byte-identical for the same arguments) and return its path."""
    record = {"format": PAIRING_FORMAT, CO_REGISTERED: [list(group) for group in co_registered],
              UNPAIRED: [list(group) for group in unpaired], "rule": RULE}
    if generator is not None:
        record["generator"] = generator
    path = Path(root) / PAIRING_FILE
    write_text_atomic(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def read_pairing(root):
    """The pairing record of dataset folder ROOT, or None when it has no pairing.json."""
    return read_json_record(Path(root) / PAIRING_FILE, PAIRING_FORMAT, "a pairing record", "fix or delete it")


def folder_pairing(folder_a, folder_b):
    """CO_REGISTERED or UNPAIRED for two folders of one dataset as its pairing.json says, or None (not recorded).

    The record is looked for in the folders' common parent and up to two levels above it.
    """
    folder_a, folder_b = Path(folder_a).resolve(), Path(folder_b).resolve()
    root = Path(os.path.commonpath([folder_a, folder_b]))
    for candidate in [root, *root.parents][:3]:
        record = read_pairing(candidate)
        if record is None:
            continue
        pair = {folder_a.relative_to(candidate).as_posix(), folder_b.relative_to(candidate).as_posix()}
        for kind in (CO_REGISTERED, UNPAIRED):
            if any(pair <= set(group) for group in record.get(kind, [])):
                return kind
        return None
    return None

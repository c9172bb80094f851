"""Checkpoint files: atomic saves with a format version, loads that never run code (weights_only)."""

import os
import pickle
import re
import shutil
from pathlib import Path

import torch

from util.errors import SargenError
from util.fileio import atomic_path, remove_stale_temporary_files

FORMAT_KEY = "sargen_format"
FORMAT_VERSION = 1
# The weights-only unpickler's reasons for refusing a file that imports or calls something (i.e. could run code).
CODE_WORDS = ("global", "reduce", "function", "class")


def save_checkpoint(payload, path):
    """Save a dict of tensors and plain values to `path` atomically, stamped with the format version.

    Temporary files of earlier writers that were killed while saving in the same folder are removed first.
    """
    remove_stale_temporary_files(Path(path).parent)
    with atomic_path(path) as temp_path:
        torch.save({**payload, FORMAT_KEY: FORMAT_VERSION}, temp_path)
    return Path(path)


def load_checkpoint(path, what="checkpoint"):
    """Load a tensor file with weights_only=True, turning every failure into a one-line SargenError."""
    path = Path(path)
    if not path.is_file():
        raise SargenError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = unpickler_reason(error)
        if any(word in reason.lower() for word in CODE_WORDS):
            raise SargenError(f"refused to load {what} {path}: it holds more than tensors and plain values "
                              f"and loading it could run code ({reason})") from None
        raise SargenError(f"cannot load {what} {path}: corrupt or not a PyTorch file ({reason})") from None
    except Exception as error:  # damaged files raise many types: RuntimeError, EOFError, KeyError, AssertionError...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SargenError(f"cannot load {what} {path}: corrupt or not a PyTorch file ({reason})") from None


def unpickler_reason(error):
    """The weights-only unpickler's own reason, in one line, from torch's long message around it."""
    text = str(error)
    match = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    reason = match.group(1) if match else (text.strip().splitlines() or [type(error).__name__])[0]
    return reason.split(". ")[0].strip()


def check_format(payload, path, kind):
    """Check that a loaded payload is a sargen file of `kind` in a version this code reads."""
    if not isinstance(payload, dict) or payload.get("kind") != kind:
        found = payload.get("kind") if isinstance(payload, dict) else type(payload).__name__
        raise SargenError(f"{path} is not a {kind} file (found {found!r})")
    return check_version(payload, path)


def check_version(payload, path):
    """Check that a loaded sargen payload is in the format version this code reads."""
    version = payload.get(FORMAT_KEY)
    if version != FORMAT_VERSION:
        found = "no format version" if version is None else f"format version {version!r}"
        raise SargenError(f"{path} has {found}, this sargen reads version {FORMAT_VERSION}: "
                          f"recreate it with this version of sargen")
    return payload


def alias_checkpoint(source, alias):
    """Make `alias` (e.g. latest_*.pth) atomically a hard link to, or where links fail a copy of, `source`."""
    with atomic_path(alias) as temp_path:
        os.unlink(temp_path)
        try:
            os.link(source, temp_path)
        except OSError:
            shutil.copyfile(source, temp_path)
    return Path(alias)

"""Checkpoint files: atomic saves with a format version, loads that never run code (weights_only)."""

import os
import pickle
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from util.errors import SargenError
from util.fileio import atomic_path, os_error_reason, remove_stale_temporary_files

FORMAT_KEY = "sargen_format"
FORMAT_VERSION = 1
# The weights-only unpickler's reasons for refusing a file that imports or calls something (i.e. could run code).
CODE_WORDS = ("global", "reduce", "function", "class")


def save_checkpoint(payload, path):
    """Save a dict of tensors and plain values to `path` atomically, stamped with the format version.

    Temporary files of earlier writers that were killed while saving in the same folder are removed first. When the
    save fails (a full disk, a read-only folder) the error is one line saying that an earlier file at `path` is kept
    as it was, loadable.
    """
    path = Path(path)
    try:
        remove_stale_temporary_files(path.parent)
        with atomic_path(path) as temp_path:
            try:
                torch.save({**payload, FORMAT_KEY: FORMAT_VERSION}, temp_path)
            except RuntimeError as error:  # torch's writer loses the errno ("unexpected pos ..."): the disk tells
                raise SargenError(f"cannot write {path}: {os_error_reason(error, path)}") from None
    except SargenError as error:
        kept = f"the earlier {path.name} is kept as it was" if path.is_file() else "nothing was saved"
        raise SargenError(f"{error}; {kept}") from None
    return path


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


def saved_labels(folder, suffix):
    """The --epoch labels of the files FOLDER/LABEL{suffix}: the steps in increasing order, then 'latest'."""
    labels = [path.name[: -len(suffix)] for path in Path(folder).glob(f"*{suffix}")]
    steps = sorted(int(label) for label in labels if label.isdigit())
    return [str(step) for step in steps] + (["latest"] if "latest" in labels else [])


def saved_file(folder, epoch, suffix, what):
    """FOLDER/EPOCH{suffix} (--epoch latest or a step); when missing, an error listing the ones that exist."""
    path = Path(folder) / f"{epoch}{suffix}"
    if path.is_file():
        return path
    labels = saved_labels(folder, suffix)
    if not labels:
        raise SargenError(f"{what} not found: {path}; {folder} holds no {what} (train first, or check --name and "
                          f"--checkpoints_dir)")
    shown = ", ".join(labels) if len(labels) <= 8 else f"{', '.join([*labels[:3], '...', *labels[-4:]])} " \
        f"({len(labels)} in all)"
    raise SargenError(f"{what} not found: {path}; saved in {folder}: {shown} (pass one as --epoch)")


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


class CheckpointMismatchError(SargenError, ValueError):
    """A checkpoint does not fit the network it is loaded into; the message says where."""


def _shape_text(tensor):
    """A tensor's shape as a short list, or its type when it is not a tensor."""
    shape = getattr(tensor, "shape", None)
    return str(list(shape)) if shape is not None else type(tensor).__name__


def _key_list_text(keys, limit=3):
    """Up to limit quoted keys, with a count of the rest."""
    shown = ", ".join(f"'{key}'" for key in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def describe_state_dict_mismatch(model_state, checkpoint_state):
    """One line describing how checkpoint_state fails to fit model_state, or None when it fits."""
    missing = [key for key in model_state if key not in checkpoint_state]
    unexpected = [key for key in checkpoint_state if key not in model_state]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_key_list_text(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_key_list_text(unexpected)}")
        return "checkpoint does not fit the network: " + "; ".join(parts)
    for key, model_tensor in model_state.items():
        checkpoint_tensor = checkpoint_state[key]
        if getattr(checkpoint_tensor, "shape", None) != model_tensor.shape:
            return (
                f"checkpoint does not fit the network: '{key}' has shape {_shape_text(checkpoint_tensor)} "
                f"in the checkpoint but {_shape_text(model_tensor)} in the model"
            )
    return None


def load_state_dict_strict(module, state_dict, name):
    """Load state_dict into module; on any key or shape mismatch raise CheckpointMismatchError naming `name`."""
    problem = describe_state_dict_mismatch(module.state_dict(), state_dict)
    if problem is not None:
        raise CheckpointMismatchError(f"{name}: {problem} (check the network options used to build it)")
    module.load_state_dict(state_dict, strict=True)
    return module


def plain_value(value):
    """An option value as something weights_only loading accepts (device, tuples, paths -> plain)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain_value(item) for item in value]
    return str(value)


def plain_options(opt):
    """The parsed options as a dict of plain values."""
    return {key: plain_value(value) for key, value in sorted(vars(opt).items())}


def rng_state():
    """The python, numpy and torch (CPU and CUDA) random states as tensors and plain values."""
    version, internal, gauss = random.getstate()
    name, keys, position, has_gauss, cached_gauss = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state):
    """Restore random states saved by rng_state()."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached_gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gauss))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def state_dicts_on_cpu(networks):
    """{name: state dict with CPU tensors} of a {name: module} mapping, in the reference's key layout."""
    return {name: {key: tensor.detach().cpu() for key, tensor in network.state_dict().items()}
            for name, network in networks.items()}

"""Atomic file writing: a temporary name in the same folder, then a rename."""

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path` that replaces it only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temp_name)
        os.chmod(temp_name, 0o666 & ~current_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


def write_text_atomic(path, text):
    """Write `text` to `path` atomically."""
    with atomic_path(path) as temp_path:
        temp_path.write_text(text, encoding="utf-8")


def current_umask():
    """The process's file-creation mask."""
    mask = os.umask(0)
    os.umask(mask)
    return mask

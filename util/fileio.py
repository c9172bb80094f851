"""Atomic file writing: a temporary name in the same folder, then a rename.

Temporary files are named .STEM.HOST-PID.RANDOM.tmpSUFFIX, so that those of a writer that was killed (SIGKILL,
power loss of a job) can be told from those of a live one and removed (remove_stale_temporary_files).
"""

import contextlib
import glob
import json
import os
import re
import socket
import tempfile
from pathlib import Path

from util.errors import SargenError

TEMPORARY_NAME = re.compile(r"\..*\.(?P<host>[\w-]+)-(?P<pid>\d+)\.\w+\.tmp(\.\w+)*")


def writer_id():
    """HOST-PID of this process as its temporary files carry it (the host name reduced to letters, digits, _ and -)."""
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', socket.gethostname())}-{os.getpid()}"


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path` that replaces it only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.stem}.{writer_id()}.", suffix=f".tmp{path.suffix}",
                                         dir=path.parent)
    os.close(handle)
    try:
        yield Path(temp_name)
        os.chmod(temp_name, 0o666 & ~current_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


@contextlib.contextmanager
def scratch_path(path, tag="scratch"):
    """Yield a temporary path beside `path` (named like atomic_path's), removed afterwards in any case.

    Files a library writes beside it (TEMP.ovr.tmp, TEMP.aux.xml, ...) are removed too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.stem}.{writer_id()}.", suffix=f".tmp.{tag}{path.suffix}",
                                         dir=path.parent)
    os.close(handle)
    os.unlink(temp_name)  # the library creates it
    try:
        yield Path(temp_name)
    finally:
        for leftover in [Path(temp_name), *Path(temp_name).parent.glob(glob.escape(Path(temp_name).name) + ".*")]:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def write_text_atomic(path, text):
    """Write `text` to `path` atomically."""
    with atomic_path(path) as temp_path:
        temp_path.write_text(text, encoding="utf-8")


def current_umask():
    """The process's file-creation mask."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temporary_files(folder):
    """Delete the temporary files in `folder` left by writers on this host that no longer run; return them."""
    host = writer_id().rpartition("-")[0]
    removed = []
    for temp in Path(folder).glob(".*.tmp*"):
        match = TEMPORARY_NAME.fullmatch(temp.name)
        if match and match["host"] == host and not process_running(int(match["pid"])):
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
                removed.append(temp)
    return removed


def process_running(pid):
    """Whether process `pid` runs on this host (assumed so where that cannot be checked)."""
    if os.name != "posix":  # os.kill(pid, 0) would send CTRL_C_EVENT on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it runs, as another user
        return True
    return True


def read_json_record(path, version, what, remedy):
    """The JSON object in `path` whose "format" is `version`, or None when there is no such file; a file that
    cannot be read or is not `what` of that format is a one-line error naming it and `remedy` (what to do)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SargenError(f"cannot read {path}: {error} ({remedy})") from None
    if not isinstance(record, dict) or record.get("format") != version:
        raise SargenError(f"{path} is not {what} of format {version} ({remedy})")
    return record

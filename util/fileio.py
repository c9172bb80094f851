"""Safe file writing, the one place of it: atomic writes, refusing to overwrite inputs and others' files, and
OS errors as one line.

- Atomic writes: a temporary name in the same folder, then a rename. Temporary files are named
  .STEM.HOST-PID.RANDOM.tmpSUFFIX, so that those of a writer that was killed (SIGKILL, power loss of a job) can be
  told from those of a live one and removed (remove_stale_temporary_files).
- check_output: no command writes over one of its inputs, nor (without --overwrite) over a file it did not create.
- An OS error on a write (read-only file system, no space left on device, ...) becomes a SargenError naming the
  path and the cause (os_error_message); util.cli.run_main does the same as the last resort for any OSError.
"""

import contextlib
import errno
import glob
import json
import os
import re
import socket
import tempfile
from pathlib import Path

from util.errors import SargenError

FULL_DISK_BYTES = 1 << 20  # a file system with less free space than this is taken as full
TEMPORARY_NAME = re.compile(r"\..*\.(?P<host>[\w-]+)-(?P<pid>\d+)\.\w+\.tmp(\.\w+)*")


def writer_id():
    """HOST-PID of this process as its temporary files carry it (the host name reduced to letters, digits, _ and -)."""
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', socket.gethostname())}-{os.getpid()}"


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path` that replaces it only if the block succeeds.

    An OS error on the way (creating the folder or the file, writing, renaming) is a SargenError naming `path` and
    the cause; `path` is then left as it was.
    """
    path = Path(path)
    with writing(path):
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
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{path.stem}.{writer_id()}.",
                                             suffix=f".tmp.{tag}{path.suffix}", dir=path.parent)
        os.close(handle)
        os.unlink(temp_name)  # the library creates it
    try:
        yield Path(temp_name)
    finally:
        for leftover in [Path(temp_name), *Path(temp_name).parent.glob(glob.escape(Path(temp_name).name) + ".*")]:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


@contextlib.contextmanager
def writing(path):
    """Turn an OS error while writing `path` (or its temporaries, or making its folder) into a SargenError naming
    `path` and the cause; an error about another file (e.g. an input read on the way) is left to the caller."""
    path = Path(path)
    try:
        yield
    except OSError as error:
        name = None if error.filename is None else Path(error.filename)
        if isinstance(error, (FileExistsError, NotADirectoryError)) and (name in path.parents or name == path):
            blocker = next((folder for folder in reversed(path.parents) if folder.is_file()), name)
            raise SargenError(f"cannot write {path}: {blocker} is a file, not a folder") from None
        if name is not None and not (name == path or name in path.parents or (
                name.parent == path.parent and name.name.startswith(f".{path.stem}."))):
            raise
        raise SargenError(os_error_message(error, path, "write")) from None


def os_error_message(error, path=None, action=None):
    """'cannot write PATH: no space left on device': an OSError in one line with its path (`path`, else the
    error's own) and its cause in words (its errno's, else what the file system's state tells, else its text)."""
    path = path if path is not None else error.filename
    reason = os_error_reason(error, path if action == "write" else None)
    what = f"cannot {action} " if action else ""
    return f"{what}{path}: {reason}" if path is not None else f"{what}{reason}"


def os_error_reason(error, written=None):
    """The cause of an OSError (or of a library's write failure) in lower-case words, e.g. 'read-only file system'.

    Libraries that lose the errno (GDAL, torch.save) leave only their own text: for a write to `written`, the
    file system's state names the cause instead where it is read-only or full.
    """
    if getattr(error, "errno", None) in errno.errorcode and getattr(error, "strerror", None):
        return error.strerror[0].lower() + error.strerror[1:]
    state = written is not None and file_system_state(written)
    return state or (str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)


def file_system_state(path):
    """'read-only file system' or 'no space left on device' when the file system that holds `path` is so, else ''."""
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs on Windows
        return ""
    if stats.f_flag & os.ST_RDONLY:
        return os.strerror(errno.EROFS).lower()
    if stats.f_bavail * stats.f_frsize < FULL_DISK_BYTES:
        return os.strerror(errno.ENOSPC).lower()
    return ""


def check_output(target, inputs=(), overwrite=False, written_by_sargen=None, option="--out"):
    """Refuse to write `target` when it is one of `inputs` (a FileSet or paths; always) or an existing file that
    sargen did not write (`written_by_sargen(path)` says whether it did) unless `overwrite` (--overwrite): a
    one-line SargenError."""
    target = Path(target)
    inputs = inputs if isinstance(inputs, FileSet) else FileSet(inputs)
    source = inputs.find(target)
    if source is not None:
        raise SargenError(f"{option} {target} is the input {source}: it would be overwritten; write the output "
                          f"elsewhere (another {option})")
    if target.is_dir():
        raise SargenError(f"{option}: {target} is a folder, not a file name")
    if target.exists() and not overwrite and not (written_by_sargen is not None and written_by_sargen(target)):
        raise SargenError(f"{target} exists and was not written by sargen: pass --overwrite to replace it, or "
                          f"choose another {option}")


class FileSet:
    """Paths compared as files, through links and relative parts: by device and inode where they exist."""

    def __init__(self, paths):
        """Index `paths` by file identity (the first of several names of one file is kept)."""
        self.members = {}
        for path in paths:
            self.members.setdefault(file_identity(path), Path(path))

    def find(self, path):
        """The member that is the same file as `path`, or None."""
        return self.members.get(file_identity(path))


def file_identity(path):
    """(device, inode) of an existing file, else its resolved path."""
    try:
        stats = os.stat(path)
    except OSError:
        return Path(path).resolve()
    return stats.st_dev, stats.st_ino


def same_file(first, second):
    """Whether two paths name the same file (through links and relative parts), existing or not."""
    return file_identity(first) == file_identity(second)


def write_text_atomic(path, text):
    """Write `text` to `path` atomically."""
    with atomic_path(path) as temp_path:
        temp_path.write_text(text, encoding="utf-8")


def append_text(path, text):
    """Append `text` to `path` (created with its folder if missing); an OS error names `path` and the cause."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)


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

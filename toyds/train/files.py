"""Writing a file a user may own, safely: atomically, past a full disk and a second Ctrl-C.

Every file toyds writes that matters (checkpoints, metrics.json, a pipeline stage's
record) goes through `atomic_write`:

    1. check the free space first, where the OS can say (shutil.disk_usage)
    2. write beside the destination as `.NAME.toyds-<pid>.tmp`, flush, fsync
    3. os.replace it over the destination: a reader, or a crash, sees the old file or
       the new one, never half of one

If the write fails, the temp file is removed, even when a second Ctrl-C arrives
during the cleanup (signals are held back while it runs), and the old file is left
as it was. A full disk becomes one sentence naming the file, instead of torch's
`[enforce fail at inline_container.cc:672] . unexpected pos ...`:

    cannot save runs/model.pt: no space left on its disk (needs ~1.2 MB); the previous file is unchanged

A temp file whose writer was killed (SIGKILL leaves no cleanup) is removed by the
next write to that folder (`remove_stale_temps`). `describe` says in words what is at
a path, so callers can refuse to replace a directory, a link or a device.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import stat
import time
from pathlib import Path
from typing import BinaryIO, Callable

TEMP_NAME = re.compile(r"\.(?P<name>.+)\.toyds-(?P<pid>\d+)\.tmp")  # .NAME.toyds-<pid>.tmp
STALE_AFTER = 24 * 3600  # seconds: a temp file this old is stale even if its pid is alive (reused)
SLACK = 64 * 1024  # bytes a write may need beyond its estimate (zip headers, JSON indentation)


class NoSpaceError(OSError):
    """The disk had no room for a file; the previous file at that path is unchanged."""

    def __init__(self, message: str):
        super().__init__(message)  # str(e) is the sentence alone, without "[Errno 28]"
        self.errno = errno.ENOSPC


def describe(path: Path, follow_symlinks: bool = False) -> str | None:
    """What is at `path`, in words ("a regular file", "a FIFO (named pipe)", ...); None if nothing."""
    try:
        st = os.stat(path) if follow_symlinks else os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # nothing there (or a file where a folder should be)
        return None
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return f"a symbolic link (to {os.readlink(path)})"
    for test, words in [(stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
                        (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]:
        if test(mode):
            return words
    return "not a regular file"


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate it on Windows: rely on the age alone
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, as another user's process
        return True
    return True


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete temp files of killed writes in `folder`: toyds's own names only, writer gone or a day old."""
    removed = []
    for entry in os.scandir(folder):
        m = TEMP_NAME.fullmatch(entry.name)
        if not m or not entry.is_file(follow_symlinks=False):
            continue
        age = time.time() - entry.stat(follow_symlinks=False).st_mtime
        if _alive(int(m["pid"])) and age < STALE_AFTER:
            continue  # a write in progress, perhaps this one's twin in another process
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except FileNotFoundError:  # another write cleaned it first
            pass
    return removed


@contextlib.contextmanager
def signals_held():
    """Hold SIGINT and SIGTERM back for the block (POSIX, main thread); they arrive after it."""
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, ValueError, OSError):  # Windows, or not the main thread: no mask to set
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def remove_temp(tmp: Path) -> None:
    """Remove a temp file, even if a Ctrl-C arrives meanwhile (the cleanup finishes, then it counts)."""
    with signals_held():
        while True:
            try:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                return
            except KeyboardInterrupt:  # where signals cannot be held back: finish the cleanup first
                continue


def no_space(e: BaseException) -> bool:
    """Is ENOSPC anywhere in e's chain? (torch.save hides it under a RuntimeError.)"""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return True
        if "No space left on device" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}" if n < 1e8 else f"{n / 1e6:,.0f}"


def check_free_space(path: Path, needs: int) -> None:
    """A NoSpaceError before any byte is written, when the OS says the disk cannot hold `needs` bytes."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:  # the OS cannot say: the write itself will find out
        return
    if free < needs + SLACK:
        raise NoSpaceError(f"cannot save {path}: no space left on its disk (needs ~{_mb(needs)} MB, "
                           f"{_mb(free)} MB free); the previous file is unchanged")


def atomic_write(path, write: Callable[[BinaryIO], None], needs: int = 0) -> Path:
    """Write a file by calling write(f) on a temp file beside `path`, then rename it over `path`.

    needs: the bytes the file will take (an estimate), for the free-space check.
    The caller checks what `path` may replace; this never follows a symbolic link.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent)
    check_free_space(path, needs)
    tmp = path.with_name(f".{path.name}.toyds-{os.getpid()}.tmp")
    if describe(tmp) == "a regular file":  # left by an earlier process that had our pid
        os.unlink(tmp)
    # 0o666 and the umask: the permissions open() gives; mkstemp's 0600 hid files from the group
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # the atomic step: readers see the old file or the new one
    except BaseException as e:
        remove_temp(tmp)
        if no_space(e):
            raise NoSpaceError(f"cannot save {path}: no space left on its disk (needs ~{_mb(needs)} MB); "
                               f"the previous file is unchanged") from e
        raise
    return path

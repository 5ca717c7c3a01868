"""Opening a file the user named, for reading, without ever blocking on it.

Opening a FIFO for reading waits for a writer, and a device (/dev/zero, /dev/urandom) never ends:
``dimctl probe --config c.toml`` on a named pipe hung forever. Every settings or input file
dimctl opens by a name the user gave goes through ``open_regular``: the file is opened with
O_NONBLOCK (which returns at once even for a FIFO) and refused by ``fstat`` of that same open file
unless it is a regular file — so a file swapped in between a check and the open cannot slip past.
Feature data named as ``-`` (stdin) is read by the feature readers, not through here.
"""

import fcntl
import os
import stat
from pathlib import Path
from typing import BinaryIO

from dimctl.errors import UsageError


def open_regular(path: str | Path, name: str | None = None) -> BinaryIO:
    """``path`` opened for binary reading; a UsageError naming ``name`` (default: the path) when it is
    a FIFO, device, socket or folder. A missing file raises FileNotFoundError as open() does."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UsageError(f"{name or path}: not a regular file ({_kind(mode)}); name a file")
        # Reads of a regular file never block anyway; blocking mode keeps later reads ordinary.
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_regular(path: str | Path, name: str | None = None) -> None:
    """Refuse ``path`` as ``open_regular`` would, without reading it (for a file a library opens itself)."""
    open_regular(path, name).close()


def require_file(path: str | Path, name: str | None = None) -> None:
    """``check_regular`` for an input the user named: a missing one is the UsageError "NAME: no
    such file" (exit 2). It replaces ``Path.is_file()`` checks, which called a FIFO "no such file"
    and let the read that followed block on it."""
    try:
        check_regular(path, name)
    except (FileNotFoundError, NotADirectoryError):  # NotADirectoryError: "file.txt/x"
        raise UsageError(f"{name or path}: no such file") from None


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"

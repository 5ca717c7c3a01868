"""Atomic file writes: a reader sees the old file or the complete new one, never a half-written one."""

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dimctl.errors import UsageError


def is_stream(path: str | Path) -> bool:
    """An existing character device or FIFO (or a link to one): written through, never replaced."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; on success fsync it and rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` is untouched. An existing output
    that is not a regular file is never replaced by one: a link is followed (its target is
    replaced, the link stays), a device or FIFO (/dev/null, /dev/stdout, a named pipe) gets the
    complete file written through to it, and anything else (a folder, a socket) is refused.
    """
    path = Path(path)
    if is_stream(path):
        with _written_through(path) as tmp:
            yield tmp
        return
    if path.is_symlink():
        path = path.resolve()
    if path.exists() and not path.is_file():
        raise UsageError(f"{path} exists and is not a regular file; name a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes the file private (0600); the published file gets the mode a plain open() would have.
    umask = os.umask(0)
    os.umask(umask)
    mode = 0o666 & ~umask
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
            # Set last: a writer may have recreated the file (safetensors' save_file does, 0600).
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        # Name the file the user asked for, not our temporary one.
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _written_through(device: Path) -> Iterator[Path]:
    """A temporary file elsewhere, copied whole into ``device`` once complete (the writers —
    HDF5, safetensors, PNG — need a seekable file; a device or pipe gets the finished bytes)."""
    fd, tmp = tempfile.mkstemp(prefix="dimctl-", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb") as source, open(device, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), str(device)) from e
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def fsync_tree(folder: str | Path) -> None:
    """Flush every file below ``folder`` to disk (before the folder is renamed into place)."""
    for path in Path(folder).rglob("*"):
        if path.is_file():
            with open(path, "rb+") as f:
                os.fsync(f.fileno())

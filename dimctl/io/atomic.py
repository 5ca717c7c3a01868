"""Atomic writes: a reader sees the old output or the complete new one, never a half-written one.

A file is written to a temporary file beside it and renamed over it (``atomic_path``); a set of
files to a temporary folder beside the target folder, which then takes that folder's place whole
(``atomic_folder``). Every temporary's name carries the writing host and process,
``.NAME.HOST.PID.RANDOM.tmp``, so that a later write into the same folder can remove the ones a
killed command left behind (``remove_stale_temporaries``) without touching a live writer's.
"""

import contextlib
import functools
import hashlib
import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from dimctl.errors import UsageError

# .NAME.HOST.PID.RANDOM.tmp — HOST is 8 hex digits of a hash of the host name (a PID means nothing
# on another machine sharing the folder), RANDOM is mkstemp's 8 characters.
TEMPORARY = re.compile(r"\..+\.(?P<host>[0-9a-f]{8})\.(?P<pid>[1-9][0-9]{0,9})\.[a-z0-9_]{8}\.tmp")
NAME_KEPT = 40  # characters of the target's name in its temporary's: the whole name stays under 255 bytes

_swept: set[Path] = set()  # folders whose stale temporaries this process has already removed


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
    path = _followed(path)
    if path.exists() and not path.is_file():
        raise UsageError(f"{path} exists and is not a regular file; name a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path.name), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
            # mkstemp makes the file private (0600); the published file gets the mode a plain open()
            # would have. Set last: a writer may have recreated the file (safetensors' save_file does).
            os.fchmod(f.fileno(), 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _naming(e, path) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_folder(path: str | Path, owned: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success fsync its files and put it in
    place of ``path`` whole, so a reader sees the old set of files or the new one, never a mix.

    On any exception (KeyboardInterrupt too: the CLI turns SIGTERM into one) the temporary folder
    is removed and an existing ``path`` is untouched. An existing ``path`` is replaced by moving it
    aside, moving the new folder in and then removing the old one: a process killed (SIGKILL,
    power loss) between those two renames leaves no ``path``, with the old and the new set in
    hidden temporaries beside it. With ``owned``, an existing folder may hold only names it
    accepts (checked again just before the swap): anything else is refused, never deleted. A link
    to a folder is followed (the folder it names is replaced, the link stays).
    """
    path = _followed(Path(path))
    check_folder_target(path, owned)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path.name), suffix=".tmp", dir=path.parent))
    except OSError as e:  # e.g. a writable folder in a read-only parent
        raise _naming(e, path.parent) from e
    try:
        yield tmp
        if owned is not None:
            refuse_foreign(path, owned)  # a file added while the set was being made
        _fsync_folder(tmp)
        # mkdtemp makes the folder private (0700); keep the replaced folder's mode, else mkdir's.
        os.chmod(tmp, stat.S_IMODE(path.stat().st_mode) if path.is_dir() else 0o777 & ~_umask())
        _swap_in(tmp, path)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _naming(e, path) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def owned_names(files: str) -> Callable[[str], bool]:
    """``owned`` for ``atomic_folder``: a folder replaced whole may hold the files it is made of
    (names matching the regex ``files``), their temporaries from a killed earlier write, and what
    desktop file browsers drop into any folder they show."""
    pattern = re.compile(rf"{files}|\.(?:{files})\..+\.tmp|\.DS_Store|Thumbs\.db|desktop\.ini")
    return lambda name: pattern.fullmatch(name) is not None


def check_folder_target(path: str | Path, owned: Callable[[str], bool] | None = None, where: str = "") -> None:
    """The refusals ``atomic_folder`` makes, for a command to make before its work: ``path`` is a
    file, is (or holds) the working folder, or holds what ``owned`` does not accept."""
    check_folder_or_absent(path, where)
    path = _followed(Path(path))
    # Replacing the folder a process stands in would leave it (and the user's shell) in a deleted one.
    target, here = path.resolve(), Path.cwd().resolve()
    if target == here or target in here.parents:
        raise UsageError(f"{where}{path} is the working folder or holds it, and would be replaced whole; "
                         f"name a folder inside it")
    if owned is not None:
        refuse_foreign(path, owned, where)


def check_folder_or_absent(path: str | Path, where: str = "") -> None:
    """Before any work: ``path`` is a folder or nothing yet (a link is followed). The one wording of
    this refusal for every --out and --results-dir, whether the folder is replaced whole or written into."""
    path = _followed(Path(path))
    if path.exists() and not path.is_dir():
        raise UsageError(f"{where}{path} exists and is not a folder; name a folder to write")


def refuse_foreign(folder: Path, owned: Callable[[str], bool], where: str = "") -> None:
    """Refuse to replace ``folder`` if it holds an entry that ``owned`` does not accept (or one
    that is not a regular file): replacing the folder whole would delete what dimctl did not write."""
    if not folder.is_dir():
        return
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not (owned(entry.name) and entry.is_file(follow_symlinks=False)):
            raise UsageError(f"{where}{folder} holds {entry.name}, which dimctl did not write there; the folder is "
                             f"replaced whole, so move that out or name another folder")


def _swap_in(tmp: Path, path: Path) -> None:
    if not path.exists():
        os.rename(tmp, path)
    else:
        # An empty placeholder that the old folder replaces: rename onto an empty folder is allowed.
        aside = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path.name), suffix=".tmp", dir=path.parent))
        try:
            os.rename(path, aside)
        except BaseException:
            aside.rmdir()
            raise
        try:
            os.rename(tmp, path)
        except BaseException:
            os.rename(aside, path)  # the old set back where it was
            raise
        shutil.rmtree(aside, ignore_errors=True)
    _fsync_directory(path.parent)


def _followed(path: Path) -> Path:
    """A link is followed: the file or folder it names is replaced, the link stays."""
    return path.resolve() if path.is_symlink() else path


@contextlib.contextmanager
def _written_through(device: Path) -> Iterator[Path]:
    """A temporary file elsewhere, copied whole into ``device`` once complete (the writers —
    HDF5, safetensors, PNG — need a seekable file; a device or pipe gets the finished bytes)."""
    _sweep_once(Path(tempfile.gettempdir()))
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix("dimctl"), suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb") as source, open(device, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
    except OSError as e:
        raise _naming(e, device) from e
    finally:
        tmp.unlink(missing_ok=True)


# --- stale temporaries --------------------------------------------------------------------------

def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporaries in ``folder`` that a dimctl process on this host left when it was
    killed; return them. A temporary whose process is alive (another command writing now), one of
    another host or user, and any name that merely looks similar are kept. Never raises."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if _is_stale(entry):
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            except OSError:  # removed meanwhile by another command's sweep, or not ours to remove
                continue
            removed.append(Path(entry.path))
    return removed


def _is_stale(entry: os.DirEntry) -> bool:
    match = TEMPORARY.fullmatch(entry.name)
    if match is None or match["host"] != _host_tag():
        return False
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    # dimctl makes only plain files and folders, as this user; a link or another's file is not its.
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)) or info.st_uid != os.getuid():
        return False
    return not _alive(int(match["pid"]))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OverflowError, OSError):  # no such PID can exist: not a name this module wrote; keep it
        return True
    return True  # signal 0 was accepted: the process exists


def _sweep_once(folder: Path) -> None:
    # Once per folder per process: a folder of 5,000 samples would otherwise be listed 5,000 times.
    key = folder.resolve()
    if key not in _swept:
        _swept.add(key)
        remove_stale_temporaries(key)


def _temporary_prefix(name: str) -> str:
    return f".{name[:NAME_KEPT]}.{_host_tag()}.{os.getpid()}."


@functools.cache
def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


# --- helpers ------------------------------------------------------------------------------------

def _naming(e: OSError, path: Path) -> OSError:
    """The error with the path the user named instead of our temporary one."""
    return OSError(e.errno, e.strerror or str(e), str(path))


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _fsync_folder(folder: Path) -> None:
    fsync_tree(folder)
    for sub in [folder, *(p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink())]:
        _fsync_directory(sub)


def _fsync_directory(folder: Path) -> None:
    """Make the names in ``folder`` (a rename, new files) durable, where the system allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


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

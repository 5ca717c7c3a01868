"""One process per run folder: an exclusive ``flock`` on the run folder itself.

Two `dimctl pretrain --out RUN` (or a `--resume` while the first still runs) would both write the
same checkpoints and metrics. The training commands take the lock before they touch the folder
and give it back when the command ends; the kernel drops it if the process dies, so a crash
never leaves a folder locked. The lock is on the folder (a descriptor of it kept open), not on a
file in it: deleting a lock file took the lock away, and a second run was let in beside the first.
RUN/.dimctl.lock only names the holder's PID for the refusal's message; deleting it, at any
time, changes nothing but that message. Under torchrun, `accelerate launch` or mpirun only rank
0 takes it: the other ranks are the same run.
"""

import fcntl
import os
import stat
from pathlib import Path

from dimctl.errors import UsageError

LOCK_NAME = ".dimctl.lock"
PID_LIMIT = 32  # bytes of the PID note read for a message
_held: dict[Path, tuple[int, bool]] = {}  # folder → (its locked descriptor, whether the lock made the folder)


def lock_run_dir(run_dir: Path) -> None:
    """Take the folder's lock (making the folder if needed), or UsageError naming the holder."""
    if _launched_rank() != 0:
        return
    run_dir = Path(run_dir).resolve()
    if run_dir in _held:
        return
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(f"--out {run_dir} is in use by another dimctl process (PID {_holder(run_dir)}); wait for "
                         f"it to finish or choose another --out") from None
    _held[run_dir] = (fd, created)
    _note_holder(run_dir)


def _note_holder(run_dir: Path) -> None:
    """Write this process's PID to RUN/.dimctl.lock (a note, not the lock). Whatever is there is
    replaced, never written through: a link there would have this write land in its target."""
    path = run_dir / LOCK_NAME
    try:
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError:
        return  # a folder of that name, a read-only folder: the lock holds all the same
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)


def _holder(run_dir: Path) -> str:
    """The PID the holder noted, or "unknown" (the note deleted, not a regular file, not a PID)."""
    try:
        fd = os.open(run_dir / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return "unknown"
    try:
        note = os.read(fd, PID_LIMIT).decode(errors="replace").strip() if stat.S_ISREG(os.fstat(fd).st_mode) else ""
    finally:
        os.close(fd)
    return note if note.isdigit() else "unknown"


def _launched_rank() -> int:
    """This process's rank in a launched group, before any Accelerator exists: torchrun's RANK,
    else mpirun's (the variables Accelerate reads, in its order); 0 when not launched."""
    for name in ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"):
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 0


def release_run_locks() -> None:
    """Give back every lock this process holds (the command is over); a folder the lock itself
    made and nothing else was written to goes too, so a refused run leaves nothing behind."""
    for run_dir, (fd, created) in list(_held.items()):
        path = run_dir / LOCK_NAME
        if created and {p.name for p in run_dir.iterdir()} <= {LOCK_NAME}:
            path.unlink(missing_ok=True)  # while still locked: nobody else can be writing here
            os.close(fd)
            try:
                run_dir.rmdir()
            except OSError:
                pass  # someone made something in it meanwhile
        else:
            os.close(fd)
        del _held[run_dir]

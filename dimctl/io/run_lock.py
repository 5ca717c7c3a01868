"""One process per run folder: an exclusive ``flock`` on RUN/.dimctl.lock, holding the PID.

Two `dimctl pretrain --out RUN` (or a `--resume` while the first still runs) would both write the
same checkpoints and metrics. The training commands take the lock before they touch the folder
and give it back when the command ends; the kernel drops it if the process dies, so a crash
never leaves a folder locked (the stale file just names a PID that no longer holds it). Under
torchrun, `accelerate launch` or mpirun only rank 0 takes it: the other ranks are the same run.
"""

import fcntl
import os
from pathlib import Path

from dimctl.errors import UsageError

LOCK_NAME = ".dimctl.lock"
_held: dict[Path, tuple[int, bool]] = {}  # folder → (open lock file, whether the lock made the folder)


def lock_run_dir(run_dir: Path) -> None:
    """Take the folder's lock (making the folder if needed), or UsageError naming the holder."""
    if _launched_rank() != 0:
        return
    run_dir = Path(run_dir).resolve()
    if run_dir in _held:
        return
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise UsageError(f"--out {run_dir} is in use by another dimctl process (PID {holder}); wait for it "
                         f"to finish or choose another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[run_dir] = (fd, created)


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
        if created and [p.name for p in run_dir.iterdir()] == [LOCK_NAME]:
            path.unlink()  # while still locked: nobody else can be writing here
            os.close(fd)
            try:
                run_dir.rmdir()
            except OSError:
                pass  # someone made something in it meanwhile
        else:
            os.close(fd)
        del _held[run_dir]

"""Resume state: Accelerate's ``save_state`` folders under ``RUN/checkpoints/step_NNNNNNNN``.

A folder is written under a temporary name and renamed when complete, so a checkpoint folder is
either whole or absent. ``train_state.json`` inside records the step, the run's record (what
config.json holds: the settings a resume may not change, the number of processes) and the
sha256 of every other file; it is written last. Resume checks the digests before loading
anything: a checkpoint whose RNG state was deleted, truncated or replaced would continue with
other randomness while claiming a bit-exact resume, so it is refused by name. The run's record
travels with its weights, so a resume is checked against the checkpoint it loads even when
config.json was deleted or edited.
"""

import errno
import json
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

from accelerate import Accelerator

from dimctl.errors import ArtifactError
from dimctl.io.artifacts import sha256_of
from dimctl.io.atomic import fsync_tree, write_text

STATE_FILE = "train_state.json"
NO_SPACE_BELOW = 1 << 20  # bytes free under which a failed write is reported as a full disk


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def remove_partial(run_dir: Path, keep: Path | None = None) -> None:
    """Remove the temporary folders of saves a kill interrupted (the run lock says no one else
    writes them), but ``keep``, a save under way."""
    root = checkpoint_dir(run_dir)
    for partial in root.glob(".step_*.tmp") if root.is_dir() else ():
        if partial != keep:
            shutil.rmtree(partial, ignore_errors=True)


def saved_record(run_dir: Path) -> dict | None:
    """The run's record as its newest checkpoint saved it (config.json for checkpoints from before
    the record was kept, and for a run killed before its first checkpoint); None if neither can be read."""
    checkpoints = list_checkpoints(run_dir)
    sources = [checkpoints[-1] / STATE_FILE] if checkpoints else []
    for path in sources + [run_dir / "config.json"]:
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        record = found.get("run", found) if path.name == STATE_FILE else found
        if isinstance(record, dict) and isinstance(record.get("config"), dict):
            return record
    return None


def save_checkpoint(accelerator: Accelerator, run_dir: Path, step: int, keep: int, record: dict | None = None,
                    before_publish: Callable[[Path], None] | None = None) -> None:
    """Every process must call this (Accelerate saves per-process RNG state). ``record`` (what
    config.json holds) is kept in the checkpoint; ``before_publish(folder)`` runs on the main process
    once the new folder is complete, before it is renamed into place. A write that fails leaves no
    partial folder and the earlier checkpoints as they were; on a full disk it is an OSError
    naming the checkpoint and "No space left on device"."""
    final = checkpoint_dir(run_dir) / f"step_{step:08d}"
    tmp = checkpoint_dir(run_dir) / f".step_{step:08d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            write_text(tmp / STATE_FILE, json.dumps({"step": step, "files": _digests(tmp), "run": record}))
            fsync_tree(tmp)
    except BaseException as e:
        # Read before the partial folder is removed, which frees the space. torch's zip writer says
        # "[enforce fail at inline_container.cc] … file write failed", safetensors "os error 28":
        # say what happened, and where.
        full = isinstance(e, Exception) and _disk_full(tmp.parent)
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(final)) from e
        raise
    if accelerator.is_main_process:
        if before_publish is not None:
            before_publish(tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _disk_full(folder: Path) -> bool:
    try:
        usage = os.statvfs(folder)
    except OSError:
        return False
    return usage.f_bavail * usage.f_frsize < NO_SPACE_BELOW


def load_latest(accelerator: Accelerator, run_dir: Path) -> int:
    """Restore the newest complete checkpoint; return its step (0 if there is none). A damaged
    one (a file missing, changed or added, or state that is not Accelerate's) is ArtifactError."""
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        return 0
    latest = checkpoints[-1]
    state = json.loads((latest / STATE_FILE).read_text())
    if "files" in state:  # checkpoints written before the digests were recorded are loaded as they are
        found = _digests(latest)
        for name in sorted(set(state["files"]) | set(found)):
            if state["files"].get(name) != found.get(name):
                how = "is missing" if name not in found else "was added" if name not in state["files"] else "changed"
                raise ArtifactError(f"{latest}: {name} {how} since the checkpoint was written; it cannot resume "
                                    f"bit-exactly (remove the folder to resume from the one before)")
    try:
        accelerator.load_state(str(latest))
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtifactError(f"{latest} is not a loadable checkpoint ({type(e).__name__}: {first})") from e
    return int(state["step"])


def _digests(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder`` but the state file, by relative path."""
    return {path.relative_to(folder).as_posix(): sha256_of(path) for path in sorted(folder.rglob("*"))
            if path.is_file() and path.name != STATE_FILE}

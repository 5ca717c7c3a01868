"""Resume state: Accelerate's ``save_state`` folders under ``RUN/checkpoints/step_NNNNNNNN``.

A folder is written under a temporary name and renamed when complete, so a checkpoint folder is
either whole or absent. ``train_state.json`` inside records the step and the sha256 of every other
file; it is written last. Resume checks them before loading anything: a checkpoint whose RNG state
was deleted, truncated or replaced would continue with other randomness while claiming a
bit-exact resume, so it is refused by name.
"""

import json
import pickle
import shutil
from pathlib import Path

from accelerate import Accelerator

from dimctl.errors import ArtifactError
from dimctl.io.artifacts import sha256_of
from dimctl.io.atomic import fsync_tree, write_text

STATE_FILE = "train_state.json"


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def save_checkpoint(accelerator: Accelerator, run_dir: Path, step: int, keep: int) -> None:
    """Every process must call this (Accelerate saves per-process RNG state)."""
    final = checkpoint_dir(run_dir) / f"step_{step:08d}"
    tmp = checkpoint_dir(run_dir) / f".step_{step:08d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_text(tmp / STATE_FILE, json.dumps({"step": step, "files": _digests(tmp)}))
        fsync_tree(tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


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

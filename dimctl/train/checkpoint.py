"""Resume state: Accelerate's ``save_state`` folders under ``RUN/checkpoints/step_NNNNNNNN``.

A folder is written under a temporary name and renamed when complete, so a checkpoint folder is
either whole or absent. ``train_state.json`` inside records the step; it is written last.
"""

import json
import shutil
from pathlib import Path

from accelerate import Accelerator

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
        write_text(tmp / STATE_FILE, json.dumps({"step": step}))
        fsync_tree(tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def load_latest(accelerator: Accelerator, run_dir: Path) -> int:
    """Restore the newest complete checkpoint; return its step (0 if there is none)."""
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        return 0
    latest = checkpoints[-1]
    accelerator.load_state(str(latest))
    return int(json.loads((latest / STATE_FILE).read_text())["step"])

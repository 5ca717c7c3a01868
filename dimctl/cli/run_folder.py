"""A training command's run folder: refuse to mix runs, clear it for --force, check --resume settings.

Shared by `pretrain` and `generate train`.
"""

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from dimctl.errors import UsageError
from dimctl.train import checkpoint


def prepare_run_dir(run_dir: Path, config: dict, resume: bool, force: bool, run_files: Iterable[str],
                    reset_on_force: Iterable[str], resumable: set[str]) -> None:
    """``run_files`` mark a folder as holding a run; ``--force`` removes ``reset_on_force`` (resume
    state, metrics, training grids) but keeps the published artifact and config until the new ones
    atomically replace them, so a failed --force run loses nothing published. ``--resume`` refuses
    any setting outside ``resumable`` that differs from the saved run's."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out {run_dir} exists and is not a folder")
    existing = [name for name in run_files if (run_dir / name).exists()]
    if not existing:
        return
    if force:
        for name in reset_on_force:
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        return
    if not resume:
        raise UsageError(f"--out {run_dir} already holds a run ({', '.join(existing)}); "
                         f"pass --resume to continue it or --force to overwrite it")
    saved_path = run_dir / "config.json"
    if saved_path.is_file() and checkpoint.list_checkpoints(run_dir):
        saved = json.loads(saved_path.read_text()).get("config", {})
        # A setting the saved run does not record is newer than it, and the run had its default.
        changed = [k for k, v in config.items() if k not in resumable and k in saved and saved[k] != v]
        if changed:
            k = changed[0]
            raise UsageError(f"--resume: {k} was {saved.get(k)!r} in {run_dir} but is now {config[k]!r}; "
                             f"use the run's settings or a new --out")

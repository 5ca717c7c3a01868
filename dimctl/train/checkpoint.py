"""Resume state: Accelerate's ``save_state`` folders under ``RUN/checkpoints/step_NNNNNNNN``.

A folder is written under a temporary name and renamed when complete, so a checkpoint folder is
either whole or absent. ``train_state.json`` inside records the step, the run's record (what
config.json holds: the settings a resume may not change, the number of processes) and the
sha256 of every other file; it is written last. Resume checks the digests before loading
anything: a checkpoint whose RNG state was deleted, truncated or replaced would continue with
other randomness while claiming a bit-exact resume, so it is refused by name. The run's record
travels with its weights, so a resume is checked against the checkpoint it loads even when
config.json was deleted or edited.

Nothing in a checkpoint folder is trusted before it is checked: the folder's name must be one this
module writes, its train_state.json an object whose step is that name's and whose ``files`` record
seals every other file (a state without the record is refused, not loaded unsealed), and the RNG
states must really be restored: Accelerate skips an RNG state it cannot read with only a log line,
which would continue with other randomness while the run claims a bit-exact resume.
"""

import errno
import json
import os
import pickle
import random
import re
import shutil
import stat
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import RNG_STATE_NAME
from accelerate.utils import load as accelerate_load

from dimctl.errors import ArtifactError
from dimctl.io.artifacts import sha256_of
from dimctl.io.atomic import fsync_tree, write_text

STATE_FILE = "train_state.json"
NO_SPACE_BELOW = 1 << 20  # bytes free under which a failed write is reported as a full disk
CHECKPOINT_NAME = re.compile(r"step_(\d{8,})")  # what save_checkpoint names a folder (f"step_{step:08d}")
STATE_LIMIT = 16 << 20  # bytes: a state records a digest per file, a few per process
SHA256 = re.compile(r"[0-9a-f]{64}")
REMOVE_IT = "it cannot resume bit-exactly (remove the folder to resume from the one before)"


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's published checkpoints, oldest first: what saving prunes and a new run replaces.
    A resume reads them through ``resume_checkpoint``, which refuses what this passes over."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _step_of_name(p.name) is not None and p.is_dir()
             and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: _step_of_name(p.name))


def _step_of_name(name: str) -> int | None:
    """The step a checkpoint folder's name holds, if it is a name save_checkpoint writes."""
    match = CHECKPOINT_NAME.fullmatch(name)
    return int(match[1]) if match and name == f"step_{int(match[1]):08d}" else None


def resume_checkpoint(run_dir: Path) -> tuple[Path, dict] | None:
    """The newest checkpoint and its checked state (``read_state``), or None if the run has none.
    Every ``step_…`` entry must be a folder this module names: with one it cannot order, the
    newest is unknown. ArtifactError names what is wrong."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return None
    steps = {}
    for entry in root.iterdir():
        if not entry.name.startswith("step_"):
            continue  # the temporaries of interrupted saves (.step_N.tmp) and anything not ours
        step = _step_of_name(entry.name)
        if step is None or entry.is_symlink() or not entry.is_dir():
            raise ArtifactError(f"{entry} is not a checkpoint folder dimctl writes (a folder step_ and 8 digits); "
                                f"remove it to resume")
        steps[step] = entry
    if not steps:
        return None
    newest = steps[max(steps)]
    return newest, read_state(newest, max(steps))


def read_state(folder: Path, step: int) -> dict:
    """``folder``'s train_state.json, checked: an object with the folder's ``step``, a ``files``
    record of sha256 digests and, if any, the run's record. ArtifactError naming it otherwise."""
    path = folder / STATE_FILE
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ArtifactError(f"{path} is not a regular file; {REMOVE_IT}")
        if info.st_size > STATE_LIMIT:
            raise ArtifactError(f"{path} is over {STATE_LIMIT >> 20} MB, not a checkpoint's record; {REMOVE_IT}")
        state = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ArtifactError(f"{folder} has no {STATE_FILE} (the checkpoint's record); {REMOVE_IT}") from None
    except RecursionError:
        raise ArtifactError(f"{path} is nested too deeply to be a checkpoint's record; {REMOVE_IT}") from None
    except ValueError as e:  # not JSON, not UTF-8
        raise ArtifactError(f"{path} is not JSON ({e}); {REMOVE_IT}") from None
    problem = _state_problem(state, step)
    if problem:
        raise ArtifactError(f"{path}: {problem}; {REMOVE_IT}")
    return state


def _state_problem(state, step: int) -> str | None:
    """What makes ``state`` other than the record save_checkpoint writes for ``step``, or None."""
    if not isinstance(state, dict):
        return f"{_json_kind(state)}, not the checkpoint's record (an object)"
    found = state.get("step")
    if not isinstance(found, int) or isinstance(found, bool):
        return f"'step' is {_shown(found)}, not a whole number"
    if found != step:
        return f"'step' is {found}, but the folder is the checkpoint of step {step}"
    files = state.get("files")
    if files is None:
        return "no 'files' record of the checkpoint's digests"
    if not isinstance(files, dict) or not all(isinstance(v, str) and SHA256.fullmatch(v) for v in files.values()):
        return "'files' is not a record of sha256 digests by file name"
    run = state.get("run")
    if run is not None and not (isinstance(run, dict) and isinstance(run.get("config"), dict)):
        return "'run' is not the run's record (an object with its 'config')"
    processes = run.get("num_processes", 1) if run else 1
    if not isinstance(processes, int) or isinstance(processes, bool) or processes < 1:
        return f"'num_processes' is {_shown(processes)}, not a number of processes"
    return None


def _json_kind(value) -> str:
    kinds = {dict: "a JSON object", list: "a JSON array", str: "a JSON string", bool: "JSON true/false",
             type(None): "JSON null"}
    return kinds.get(type(value), "a JSON number")


def _shown(value) -> str:
    """A value from the file in a message: its repr (escapes included), at most 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def remove_partial(run_dir: Path, keep: Path | None = None) -> None:
    """Remove the temporary folders of saves a kill interrupted (the run lock says no one else
    writes them), but ``keep``, a save under way."""
    root = checkpoint_dir(run_dir)
    for partial in root.glob(".step_*.tmp") if root.is_dir() else ():
        if partial != keep:
            shutil.rmtree(partial, ignore_errors=True)


def saved_record(run_dir: Path) -> dict | None:
    """The run's record as its newest checkpoint saved it (config.json for a checkpoint saved
    without one, and for a run killed before its first checkpoint); None if config.json cannot be
    read either. A newest checkpoint that is damaged is ArtifactError (``resume_checkpoint``)."""
    newest = resume_checkpoint(run_dir)  # a damaged newest checkpoint is refused here, by name
    if newest is not None and newest[1].get("run") is not None:
        return newest[1]["run"]
    try:
        found = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return found if isinstance(found, dict) and isinstance(found.get("config"), dict) else None


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
    newest = resume_checkpoint(run_dir)
    if newest is None:
        return 0
    latest, state = newest
    found = _digests(latest)
    for name in sorted(set(state["files"]) | set(found)):
        if state["files"].get(name) != found.get(name):
            how = "is missing" if name not in found else "was added" if name not in state["files"] else "changed"
            raise ArtifactError(f"{latest}: {name} {how} since the checkpoint was written; {REMOVE_IT}")
    rng = latest / f"{RNG_STATE_NAME}_{accelerator.process_index}.pkl"
    saved_rng = _read_rng_state(rng)
    try:
        accelerator.load_state(str(latest))
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtifactError(f"{latest} is not a loadable checkpoint ({type(e).__name__}: {first})") from e
    if not _rng_restored(saved_rng):  # Accelerate gave up on it with only a log line
        raise ArtifactError(f"{rng} is not an RNG state Accelerate could restore; {REMOVE_IT}")
    return state["step"]


def _read_rng_state(path: Path) -> dict:
    """The RNG states Accelerate saved in ``path``, read as Accelerate reads them (its
    ``weights_only`` loader: no pickled code runs); ArtifactError if they cannot be."""
    try:
        with warnings.catch_warnings():  # torch's notes on odd pickles: the refusal below says it
            warnings.simplefilter("ignore")
            states = accelerate_load(path)
    except FileNotFoundError:
        raise ArtifactError(f"{path.parent} has no {path.name} (this process's RNG state); {REMOVE_IT}") from None
    except Exception as e:  # torch's loader raises whatever the bytes provoke
        raise ArtifactError(f"{path} is not a readable RNG state ({type(e).__name__}); {REMOVE_IT}") from None
    keys = ("random_state", "numpy_random_seed", "torch_manual_seed")
    if not isinstance(states, dict) or not all(k in states for k in keys):
        raise ArtifactError(f"{path} does not hold Accelerate's RNG states; {REMOVE_IT}")
    return states


def _rng_restored(states: dict) -> bool:
    """Whether the generators now are in the states read from the file (so it was applied)."""
    try:
        numpy_now, numpy_saved = np.random.get_state(), states["numpy_random_seed"]
        same = (random.getstate() == states["random_state"]
                and all(np.array_equal(a, b) for a, b in zip(numpy_now, numpy_saved, strict=True))
                and torch.equal(torch.get_rng_state(), states["torch_manual_seed"]))
        saved_cuda = states.get("torch_cuda_manual_seed")
        if same and _accelerator_type() == "cuda" and isinstance(saved_cuda, (list, tuple)):
            # One state per GPU, as many as were visible then: those visible now are compared.
            same = all(torch.equal(a, b) for a, b in zip(torch.cuda.get_rng_state_all(), saved_cuda))
        return bool(same)
    except (TypeError, ValueError, RuntimeError):
        return False


def _accelerator_type() -> str:
    """The device kind whose RNG states Accelerate saves ("cuda", "xpu", …, or "cpu")."""
    try:
        from accelerate.utils import get_torch_accelerator_backend
    except ImportError:  # Accelerate before 1.16 (a GPU image's 1.15 failed here): CUDA or nothing
        return "cuda" if torch.cuda.is_available() else "cpu"
    return get_torch_accelerator_backend()[0]


def _digests(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder`` but the state file, by relative path."""
    return {path.relative_to(folder).as_posix(): sha256_of(path) for path in sorted(folder.rglob("*"))
            if path.is_file() and path.name != STATE_FILE}

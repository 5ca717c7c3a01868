"""The training engine: what every dimctl training loop shares, written once.

    dimctl pretrain --dataset digits --preset dim-l --out runs/dim-l          # train/pretrain.py's PretrainTrainer
    dimctl generate train --dataset digits --method ie --out runs/gen-ie      # train/generate.py's GeneratorTrainer
    dimctl finetune runs/dim-l/encoder.safetensors --out runs/ft             # train/finetune.py's FinetuneTrainer

A trainer supplies its networks, optimisers and one ``step`` (one or several guarded updates, see
train/guard.py), plus what it logs and publishes; the engine (``train``) owns the rest:

- with the trainers' batch order (data/order.py: fixed by (seed, epoch), split in rank order), a
  resumed or multi-process run sees exactly the batches of one uninterrupted process;
- the run folder (``begin_run``, ``RunFiles``): resume from the newest checkpoint (refusing another
  number of processes), config.json, and metrics.jsonl cut back to that checkpoint; a new run over
  an old one (--force) touches nothing of it until its own first checkpoint;
- the steps (``run_steps``): a metrics.jsonl line (step, epoch, the trainer's values, images/s over
  the window, online evaluation if asked, time and elapsed seconds) every ``log_every`` steps and
  at the end of every epoch (to the experiment trackers too), a progress callback, periodic
  checkpoints, a cooperative stop (SIGINT/SIGTERM) that checkpoints first, and the final checkpoint;
- the experiment trackers around the steps, then the trainer's artifacts (``publish``, on the main
  process, from the unwrapped networks: ``unwrap``), and every process waiting for them.
"""

import json
import math
import os
import shutil
import stat
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

from dimctl import threads
from dimctl.errors import Interrupted, UsageError
from dimctl.io.atomic import write_text
from dimctl.train import checkpoint, trackers


@dataclass
class Progress:
    step: int  # steps done
    total_steps: int
    epoch: int  # 0-based epoch of the last step
    metrics: dict[str, float]  # the latest logged values ({} before the first log step)
    epoch_done: bool = False  # this step ended an epoch (or the run)
    epochs: int = 0  # epochs in the whole run
    logged: bool = True  # ``metrics`` were logged at this step (not carried over from an earlier one)


@dataclass(frozen=True)
class Schedule:
    total_steps: int
    log_every: int
    checkpoint_every: int  # 0: only the final checkpoint
    keep_checkpoints: int


class Trainer(ABC):
    """One kind of training: its ``step`` and what it logs. The engine calls ``settle`` before it
    reads ``metrics`` or writes a checkpoint, so checks deferred on the device are read then."""

    images_per_step: int  # images the step consumed over all processes (for images/s)

    @abstractmethod
    def step(self, step: int) -> None:
        """Train step ``step`` (0-based) — raising NonFiniteLoss before any bad update is applied."""

    @abstractmethod
    def metrics(self) -> dict[str, float]:
        """The last step's values, read only at log steps (reading may wait for the device)."""

    @abstractmethod
    def epoch_of(self, step: int) -> int:
        """The 0-based epoch of the data that step ``step`` trained on."""

    def settle(self, done: int) -> None:
        """Read what was checked on the device since the last call (train/guard.py)."""

    def after_step(self, done: int, is_main_process: bool) -> None:
        """Side work after a step (e.g. a sample grid); runs on every process."""

    def publish(self, run_dir: Path, metrics: dict[str, float]) -> None:
        """Write the run's artifacts after its last step (the main process only; ``metrics``: the
        last logged values). Nothing by default: the caller reads the trained networks."""

    def learning_rates(self) -> dict[str, float]:
        """What the trackers log beside the metrics: ``lr`` of the trainer's ``optimiser`` by default."""
        groups = getattr(getattr(self, "optimiser", None), "param_groups", None)
        return {"lr": float(groups[0]["lr"])} if groups else {}


def train(trainer: Trainer, accelerator: Accelerator, run_dir: Path, resume: bool, record: dict,
          schedule: Schedule, resume_command: str, on_progress: Callable[[Progress], None] | None = None,
          should_stop: Callable[[], bool] | None = None, evaluate: Callable[[], dict[str, float]] | None = None,
          eval_every: int = 0, outputs: tuple[str, ...] = ()) -> dict[str, float]:
    """One whole run of ``trainer``: the run folder (``begin_run``: resume, config.json from
    ``record``, whose "config" the trackers also get), the trackers around the steps
    (``run_steps``), then the trainer's artifacts on the main process, and every process waiting
    for them. Returns the last logged metrics."""
    record = {**record, "num_processes": accelerator.num_processes, "device": str(accelerator.device)}
    files = begin_run(accelerator, run_dir, resume, record, schedule.total_steps, outputs)
    with trackers.tracking(accelerator, files, record["config"]):
        metrics = run_steps(trainer, accelerator, files, schedule, resume_command, on_progress, should_stop,
                            evaluate, eval_every)
    if accelerator.is_main_process:
        trainer.publish(run_dir, metrics)
    accelerator.wait_for_everyone()
    return metrics


def global_batch_of(dataset_name: str, n: int, batch_size: int, accelerator: Accelerator) -> int:
    """The images one step takes over all processes, refusing a training split smaller than that."""
    global_batch = batch_size * accelerator.num_processes
    if n < global_batch:
        raise UsageError(f"{dataset_name} has {n} training images, fewer than one batch of {global_batch}; "
                         f"lower --batch-size")
    return global_batch


def unwrap(accelerator: Accelerator, module: nn.Module) -> nn.Module:
    """The bare network under Accelerate's wrappers (DDP, torch.compile)."""
    # keep_torch_compile=False: with it on, Accelerate re-points the compiled wrapper at the bare
    # module, silently dropping DDP from the model we keep training.
    return accelerator.unwrap_model(module, keep_torch_compile=False)


def begin_run(accelerator: Accelerator, run_dir: Path, resume: bool, record: dict, total_steps: int,
              outputs: tuple[str, ...] = ()) -> "RunFiles":
    """Load the newest checkpoint if resuming, write config.json (``record``) and cut metrics.jsonl
    back to the checkpoint's step; the returned RunFiles knows the step to start from. A checkpoint
    past ``total_steps`` is refused before anything is written: its weights would be published
    under a step header they are not at. A new run in a folder that holds another (``--force``)
    writes nothing yet: see RunFiles. ``outputs`` name what the trainer writes as it goes
    (samples/), which such a run removes with the old run's checkpoints."""
    record = {**record, **threads.record()}  # how many threads computed it (a run on a shared machine)
    _check_run_file(run_dir / "metrics.jsonl")
    if resume and checkpoint.list_checkpoints(run_dir):
        check_same_world(run_dir, accelerator.num_processes)
    start_step = checkpoint.load_latest(accelerator, run_dir) if resume else 0
    if start_step > total_steps:
        raise UsageError(f"the newest checkpoint of {run_dir} is at step {start_step}, past the {total_steps} steps "
                         f"now asked for; give --epochs/--steps that reach at least step {start_step}")
    replacing = not resume and any((run_dir / name).exists() for name in ("config.json", "metrics.jsonl", "checkpoints"))
    files = RunFiles(accelerator, run_dir, record, start_step, replacing, outputs)
    if accelerator.is_main_process and not replacing:
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.remove_partial(run_dir)
        write_text(run_dir / "config.json", json.dumps(record, indent=2) + "\n")
        drop_metrics_after(files.metrics_path, start_step)  # lines a killed run wrote past its checkpoint
        trackers.drop_csv_rows_after(run_dir / trackers.CSV_NAME, start_step)  # the same, in the tracker's table
    return files


def _check_run_file(path: Path) -> None:
    """A run file written by name must be absent or a regular file: lines appended to a link would
    land in whatever file it points at."""
    try:
        mode = os.lstat(path).st_mode  # the link itself, never what it points at
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        what = "a link" if stat.S_ISLNK(mode) else "not a regular file"
        raise UsageError(f"{path} is {what}; remove it (the run writes its lines to that name)")


class RunFiles:
    """What the engine writes in a run folder: config.json, metrics.jsonl and the checkpoints.

    A new run in a folder that holds another (``--force``) holds its config and metrics lines back
    until its first checkpoint is complete: until then the old run's files stay byte-identical, so
    a new run that fails early (a bad dataset, a kill, a full disk) loses nothing. Just before that
    checkpoint is renamed into place, the old run's checkpoints and the files of ``outputs`` it
    wrote are removed and the new config.json and metrics.jsonl written. The old published
    artifact (encoder.safetensors, …) stays until the new run replaces it atomically.

    The experiment trackers (``--log-with``) follow the same rules: such a run starts them only
    then (``when_own``), after the old run's tracker files (metrics.csv, TensorBoard's events) are
    removed, and hands them the values it held back (``track``); a resume cuts metrics.csv back to
    its checkpoint as it cuts metrics.jsonl.
    """

    def __init__(self, accelerator: Accelerator, run_dir: Path, record: dict, start_step: int, replacing: bool,
                 outputs: tuple[str, ...]):
        self.accelerator, self.run_dir, self.record, self.start_step = accelerator, run_dir, record, start_step
        self.metrics_path = run_dir / "metrics.jsonl"
        self.replacing = replacing and accelerator.is_main_process
        self._held: list[str] = []
        self._held_tracks: list[tuple[dict, int]] = []  # tracker values held back with the lines
        self._start_trackers: Callable[[], None] | None = None
        # The old run's files by inode: the new run's own (written atomically, so new inodes) stay.
        old = ([path for name in outputs for path in (run_dir / name).rglob("*") if path.is_file()]
               + trackers.tracker_files(run_dir)) if self.replacing else []
        self._old_outputs = {path: path.stat().st_ino for path in old}

    def elapsed_before(self) -> float:
        """Seconds the run trained before this process started (0 for a new run)."""
        return 0.0 if self.replacing else _last_elapsed(self.metrics_path)

    def log(self, line: dict) -> None:
        text = json.dumps(line) + "\n"
        if self.replacing:
            self._held.append(text)
        else:
            with open(self.metrics_path, "a") as f:
                f.write(text)

    def track(self, values: dict, step: int) -> None:
        """Hand ``values`` to the experiment trackers, or hold them back with the lines."""
        if self.replacing:
            self._held_tracks.append((values, step))
        elif self.accelerator.trackers:
            self.accelerator.log(values, step=step)

    def when_own(self, start: Callable[[], None]) -> None:
        """Run ``start`` (the trackers' start) once the folder's run files are this run's: now, or
        for a new run over an old one once its first checkpoint has replaced the old run's files."""
        if self.replacing:
            self._start_trackers = start
        else:
            start()

    def save_checkpoint(self, step: int, keep: int) -> None:
        checkpoint.save_checkpoint(self.accelerator, self.run_dir, step, keep, self.record,
                                   before_publish=self._replace_old_run if self.replacing else None)
        self._start_held_trackers()

    def _start_held_trackers(self) -> None:
        """Once the first checkpoint is published (a tracker that fails then leaves a run that
        resumes), start the trackers and hand them the values held back."""
        start, held = self._start_trackers, self._held_tracks
        if self.replacing or start is None:
            return
        self._start_trackers, self._held_tracks = None, []
        start()
        for values, step in held:
            self.track(values, step)

    def _replace_old_run(self, new_checkpoint: Path) -> None:
        for old in checkpoint.list_checkpoints(self.run_dir):
            shutil.rmtree(old)
        checkpoint.remove_partial(self.run_dir, keep=new_checkpoint)
        removed = [path for path, inode in self._old_outputs.items() if path.is_file() and path.stat().st_ino == inode]
        for path in removed:
            path.unlink()
        trackers.remove_emptied_folders(self.run_dir, removed)
        write_text(self.run_dir / "config.json", json.dumps(self.record, indent=2) + "\n")
        write_text(self.metrics_path, "".join(self._held))
        self.replacing, self._held = False, []


def run_steps(trainer: Trainer, accelerator: Accelerator, files: RunFiles, schedule: Schedule,
              resume_command: str, on_progress: Callable[[Progress], None] | None = None,
              should_stop: Callable[[], bool] | None = None,
              evaluate: Callable[[], dict[str, float]] | None = None, eval_every: int = 0) -> dict[str, float]:
    """Steps ``start_step`` … ``total_steps``, then the final checkpoint. ``should_stop`` (the CLI
    sets it from SIGINT/SIGTERM) is polled after steps: when it turns true a checkpoint is written
    and ``Interrupted`` raised, naming ``resume_command``. ``evaluate`` (the main process only)
    runs every ``eval_every`` steps and after the last; its values join that step's log line and
    its time is not counted in images/s. Each line also carries ``time`` (UTC, ISO 8601) and
    ``elapsed_s``, the run's seconds so far, resumed runs included. Returns the last logged metrics."""
    total, main, start_step = schedule.total_steps, accelerator.is_main_process, files.start_step
    started, elapsed_before = time.perf_counter(), files.elapsed_before() if main else 0.0
    # Several processes agree on stopping through a collective (a host sync), so only at log steps.
    stop_every = 1 if accelerator.num_processes == 1 else max(schedule.log_every, 1)
    window_start, window_images = time.perf_counter(), 0
    metrics: dict[str, float] = {}
    epochs = trainer.epoch_of(total - 1) + 1 if total else 0
    for step in range(start_step, total):
        trainer.step(step)
        done = step + 1
        window_images += trainer.images_per_step
        epoch = trainer.epoch_of(step)
        epoch_done = done == total or trainer.epoch_of(done) != epoch
        # Every log_every steps and at the end of every epoch, so each epoch's line on stderr has its values.
        eval_now = evaluate is not None and eval_every > 0 and (done % eval_every == 0 or done == total)
        log_now = done % max(schedule.log_every, 1) == 0 or epoch_done or eval_now
        checkpoint_now = bool(schedule.checkpoint_every) and done % schedule.checkpoint_every == 0 and done != total
        stop_now = should_stop is not None and done % stop_every == 0 and done != total
        if log_now or checkpoint_now or stop_now:
            trainer.settle(done)
        if log_now:
            elapsed = time.perf_counter() - window_start
            metrics = {**trainer.metrics(), "images_per_s": window_images / elapsed if elapsed > 0 else 0.0}
            if eval_now and main:
                metrics.update(evaluate())
            window_start, window_images = time.perf_counter(), 0
            if main:
                stamp = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "elapsed_s": round(elapsed_before + time.perf_counter() - started, 3)}
                files.log({"step": done, "epoch": epoch, **metrics, **stamp})
                # --log-with: the same numbers, and the learning rate
                files.track({"epoch": epoch, **metrics, **trainer.learning_rates()}, done)
        trainer.after_step(done, main)
        if on_progress is not None and main:
            on_progress(Progress(done, total, epoch, metrics, epoch_done, epochs, log_now))
        if checkpoint_now:
            files.save_checkpoint(done, schedule.keep_checkpoints)
        if stop_now and any_process(accelerator, should_stop()):
            files.save_checkpoint(done, schedule.keep_checkpoints)
            raise Interrupted(f"stopped at step {done}/{total} with a checkpoint; continue with "
                              f"`{resume_command}` and the same settings", step=done, total=total)
    files.save_checkpoint(total, schedule.keep_checkpoints)
    return metrics


def check_same_world(run_dir: Path, world: int) -> None:
    # Steps, batches and per-process RNG states in a checkpoint all assume its number of processes.
    saved = (checkpoint.saved_record(run_dir) or {}).get("num_processes", world)
    if saved != world:
        raise UsageError(f"--resume: {run_dir} was trained by {saved} process(es), this launch has {world}; "
                         f"resume with {saved}, or start a new --out")


def any_process(accelerator: Accelerator, flag: bool) -> bool:
    """True if any process raised the flag, so every process takes the same branch (a collective
    checkpoint entered by only some processes would hang)."""
    if accelerator.num_processes == 1:
        return flag
    return bool(accelerator.reduce(torch.tensor(float(flag), device=accelerator.device), "max").item())


def drop_metrics_after(path: Path, step: int) -> None:
    if not path.is_file():
        return
    lines = path.read_text(errors="replace").splitlines(keepends=True)  # bytes dimctl never writes: kept as U+FFFD
    kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
    if len(kept) != len(lines):
        write_text(path, "".join(kept))


def _last_elapsed(path: Path) -> float:
    """``elapsed_s`` of the last line a run wrote (0 for a new run, lines from before it was
    logged, and a value that is not a finite number of seconds)."""
    if not path.is_file():
        return 0.0
    lines = path.read_text(errors="replace").splitlines()
    elapsed = _parsed(lines[-1]).get("elapsed_s", 0.0) if lines else 0.0
    ok = isinstance(elapsed, (int, float)) and not isinstance(elapsed, bool) and math.isfinite(elapsed) and elapsed >= 0
    return float(elapsed) if ok else 0.0


def _step_of(line: str) -> int | None:
    """The step of a metrics line, or None for one that is not a line the engine writes: cut short
    by a kill, or edited (nested too deeply, a step that is not a whole number); such lines are
    dropped when the file is cut back."""
    step = _parsed(line).get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _parsed(line: str) -> dict:
    """A metrics line's object ({} for anything else)."""
    try:
        found = json.loads(line)
    except (ValueError, RecursionError):
        return {}
    return found if isinstance(found, dict) else {}

"""Pieces every subcommand shares: dataset options, stream handling, progress reporting.

Importing this module imports no torch: `dimctl probe --help` and the other feature-file commands
start without it. `DatasetOpt` and `EncoderDatasetOpt`, whose help names the datasets, load the
dataset registry (torch) when a command module first asks for them.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dimctl.cli.progress import announce, clock, interval, seconds_since_last_line, set_status
from dimctl.errors import ArtifactError, DimctlError, UsageError
from dimctl.settings import SHARED_HELP
from dimctl.text import one_line

if TYPE_CHECKING:
    from dimctl.data.dataset import ImageDataset
    from dimctl.models.encoders import EncoderConfig


def __getattr__(name: str):
    if name == "DatasetOpt":  # built on first use: the registry that names the datasets imports torch
        from dimctl.data.registry import DATASETS

        value = Annotated[str, typer.Option("--dataset", "-d", help=f"One of: {', '.join(DATASETS)}, {HF_HELP}")]
        globals()[name] = value
        return value
    if name == "EncoderDatasetOpt":  # the same, for commands that run an encoder: default, its own dataset
        from dimctl.data.registry import DATASETS

        value = Annotated[str | None, typer.Option(
            "--dataset", "-d", show_default=False,
            help=f"One of: {', '.join(DATASETS)}, {HF_HELP} Default: the dataset the encoder was trained on (its header says).")]
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Kept here, not in data/hf.py: `--help` of the feature-file commands imports no dataset code.
HF_HELP = "or hf:DIR (a Hugging Face dataset saved with save_to_disk; columns other than image and label as hf:DIR?image=A&label=B)."


def dataset_label(dataset: str) -> str:
    """A dataset as part of a default run folder's name: hf:DIR?… holds slashes, so it is hf-<DIR's name>."""
    if dataset.startswith("hf:"):
        return "hf-" + (Path(dataset[3:].partition("?")[0]).name or "dataset")
    return dataset


DataRootOpt = Annotated[Path | None, typer.Option("--data-root", help=SHARED_HELP["data_root"])]
SkipBadImagesOpt = Annotated[bool, typer.Option(
    "--skip-bad-images", help="In an image folder, leave out files that cannot be read (each is an error otherwise).")]
DownloadOpt = Annotated[bool, typer.Option("--download", help=SHARED_HELP["download"])]
# `--cpu` and the inference batch mean the same in every command that runs a network.
CpuOpt = Annotated[bool, typer.Option("--cpu", help="Run on the CPU even when a GPU is present.")]
ForwardBatchOpt = Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")]
ReplaceOpt = Annotated[bool, typer.Option("--force", help="Replace the output if it exists (it is replaced only when the new one is complete).")]


# Result keys that may be legitimately undefined, and why: written as null with a reason.
UNDEFINED_REASONS = {"stderr": "not defined: fewer than 2 evaluation batches (a test split smaller than 2 batches)"}


def result_line(row: dict, source: str) -> str:
    """A result as one line of strict JSON (no NaN or Infinity, which strict parsers reject). A
    non-finite standard error is null with a reason; any other non-finite number is an error that
    names the input it was computed from."""
    import json
    import math

    clean = dict(row)
    for key, value in row.items():
        if isinstance(value, float) and not math.isfinite(value):
            if key not in UNDEFINED_REASONS:
                raise DimctlError(f"{source}: {row.get('command', 'the result')} came out {value} for {key!r}; "
                                  f"no result was written (non-finite features or a diverged estimator?)")
            clean[key], clean[f"{key}_reason"] = None, UNDEFINED_REASONS[key]
    try:
        return json.dumps(clean, allow_nan=False)
    except ValueError:  # a non-finite number inside a list or an object
        raise DimctlError(f"{source}: {row.get('command', 'the result')} holds a non-finite number; "
                          f"no result was written") from None


ResultsDirOpt = Annotated[Path | None, typer.Option(
    "--results-dir", help="Also keep the result lines in this folder (made if missing; a run folder is a good "
                          "place), one new file COMMAND-TIME.jsonl per call, for `dimctl report DIR`.")]


def check_results_dir(folder: Path | None) -> None:
    """Before any work: --results-dir must be a folder or a path one can be made at."""
    if folder is not None and folder.exists() and not folder.is_dir():
        raise UsageError(f"--results-dir {folder} exists and is not a folder")


def save_results(folder: Path | None, command: str, rows: list[dict]) -> Path | None:
    """The result lines as a new file in ``folder`` (never one an earlier call wrote: each call is a
    measurement of its own); noted on stderr. Nothing when no folder is given."""
    if folder is None:
        return None
    from datetime import datetime, timezone

    from dimctl.io.atomic import write_text

    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{command}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
    path, k = folder / f"{stem}.jsonl", 1
    while path.exists():  # two calls within a second
        k += 1
        path = folder / f"{stem}-{k}.jsonl"
    write_text(path, "".join(result_line(row, str(folder)) + "\n" for row in rows))
    note(f"{command}: results in {path}")
    return path


def refuse_to_replace(paths, force: bool, where: str = "") -> None:
    """Every command that writes refuses to replace an existing output unless given --force; the
    check runs before any work, and with --force the old output stays until the new one is written."""
    if force:
        return
    from dimctl.io.atomic import is_stream

    # A device or FIFO (-o /dev/null, a named pipe) is written through, not replaced: no --force needed.
    existing = [Path(p) for p in paths if Path(p).exists() and not is_stream(p)]
    if existing:
        raise UsageError(f"{where}{existing[0]} already exists; pass --force to replace it")


def split_list(value: str, allowed: list[str] | None, flag: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise UsageError(f"{flag} is empty")
    if allowed is not None:
        bad = [v for v in items if v not in allowed]
        if bad:
            raise UsageError(f"{flag}: unknown value {bad[0]!r}; choose from {', '.join(allowed)}")
    return items


def check_encoder_fits(encoder_path: Path, config: EncoderConfig, dataset: str, data: ImageDataset) -> None:
    """An encoder only reads images of the channels and size it was trained on (exit 3 otherwise)."""
    if data.channels != config.in_channels or data.image_size != config.image_size:
        raise ArtifactError(
            f"{encoder_path} takes {config.in_channels}×{config.image_size}×{config.image_size} images "
            f"but {dataset} has {data.channels}×{data.image_size}×{data.image_size}; use an encoder trained on this kind of data")


class ReaderGone(Exception):
    """stdout's reader closed the pipe (`… | head -1`). Not an OSError, so no layer mistakes it for one."""


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


STDIN_LIMIT = 64 << 30  # bytes: the largest feature or sample stream read from stdin (it is held in memory)


def read_stdin_bytes() -> bytes:
    """A feature or sample stream from stdin, read only as far as its HDF5 superblock says it
    ends: an endless input (/dev/zero, a stray producer) is refused from its first bytes, never
    read into memory without bound."""
    from dimctl.io.features import HDF5_SIGNATURE, MAGIC, USERBLOCK, stored_end

    if sys.stdin is None or sys.stdin.closed or not hasattr(sys.stdin, "buffer"):
        raise UsageError("no input file given and stdin is closed; pass FILE or pipe `dimctl extract …` in")
    if sys.stdin.isatty():
        raise UsageError("no input file given and stdin is a terminal; pass FILE or pipe `dimctl extract …` in")
    from dimctl import progress

    stream = sys.stdin.buffer
    with progress.activity("waiting for the features on stdin"):
        head = _read_exactly(stream, USERBLOCK + 64)
    if not head:
        return head  # the readers say "no data" and suggest the command before the pipe failed
    superblock = head[USERBLOCK:] if head.startswith(MAGIC) else head
    end = stored_end(superblock)
    if not (head.startswith(MAGIC) or head.startswith(HDF5_SIGNATURE)) or end is None:
        raise ArtifactError("<stdin> is not a feature or sample stream (no dimctl or HDF5 header in its first "
                            "bytes); pipe `dimctl extract …` or `dimctl generate sample … -o -` in")
    if end > STDIN_LIMIT:
        raise ArtifactError(f"<stdin> declares {end} bytes, more than the {STDIN_LIMIT >> 30} GiB read from a pipe; "
                            f"write it to a file and pass the file")
    with progress.activity(f"reading {end >> 20} MiB of features from stdin"):
        return head + _read_exactly(stream, max(0, end - len(head)))  # short: the reader reports it truncated


def _read_exactly(stream, size: int) -> bytes:
    """Up to ``size`` bytes, fewer only at the end of the stream."""
    parts, left = [], size
    while left > 0:
        part = stream.read(min(left, 1 << 24))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def write_stdout_bytes(data: bytes) -> None:
    if stdout_is_terminal():
        raise UsageError("refusing to write binary data to a terminal; pass -o FILE or pipe into another command")
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise ReaderGone() from None


def emit(line: str) -> None:
    """One line of data on stdout."""
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise ReaderGone() from None


def note(message: str) -> None:
    """A log line on stderr."""
    from dimctl.cli.progress import write_line

    write_line(f"dimctl: {message}")


def note_unverified(feats) -> None:
    """Say on stderr that a feature file from another tool was read without a checksum."""
    if not feats.verified:
        note(f"{feats.name} is not a dimctl feature file: read as is, unverified (no checksum)")


def progress_enabled() -> bool:
    """A live bar: stderr is a terminal and DIMCTL_NO_PROGRESS is unset (elsewhere: log lines)."""
    return sys.stderr.isatty() and not os.environ.get("DIMCTL_NO_PROGRESS")


def progress_bar(**tqdm_args):
    """A tqdm bar on stderr as wide as the terminal, or 80 columns where the terminal reports a
    size of 0 (some CI runners and serial consoles; tqdm's own sizing then draws nothing)."""
    from tqdm import tqdm

    try:
        width, height = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        width, height = 0, 0
    sizing = {"dynamic_ncols": True} if width > 0 else {"ncols": 80}
    if height <= 0:  # tqdm hides a bar below the screen's last row, and a height of 0 has none
        sizing["nrows"] = 24
    return tqdm(file=sys.stderr, **sizing, **tqdm_args)




class Pace:
    """Elapsed time and the estimated time left, from the steps done since ``start_step`` (the clock
    starts now) or, without one, since the step before the first call (a resumed run's first)."""

    def __init__(self, start_step: int | None = None):
        self.start_time = None if start_step is None else time.monotonic()
        self.start_step = start_step or 0

    def __call__(self, step: int, total: int) -> str:
        now = time.monotonic()
        if self.start_time is None:
            self.start_time, self.start_step = now, step - 1
        elapsed = now - self.start_time
        done = step - self.start_step
        eta = f" eta {clock(elapsed / done * (total - step))}" if done > 0 and elapsed > 0 else ""
        return f"elapsed {clock(elapsed)}{eta}"


class Tenths:
    """True at the first step at or past each tenth of ``total`` from ``first`` on, and at the
    last step: when a progress line is due, whatever steps the caller happens to see."""

    def __init__(self, total: int, first: int = 0):
        self.total, self.tenth, self.due = total, max(1, total // 10), first

    def __call__(self, step: int) -> bool:
        if step < self.due and step != self.total:
            return False
        self.due = (step // self.tenth + 1) * self.tenth
        return True


class TrainingProgress:
    """A tqdm bar on an interactive stderr; otherwise a line at the end of every epoch
    (``per_epoch``) or at every tenth of the run (logs, CI, Makefiles), and whenever stderr has
    been quiet for DIMCTL_PROGRESS_SECONDS (30 s), with the elapsed time and the time left. A line
    shows only values logged at its own step: a tenth that falls between log steps is reported at
    the next log step, not with the values of an earlier one. Values named in ``shown`` are shown,
    and online evaluation's (``knn_*``) whenever logged. Once the pace is measured (after
    ``WARN_AFTER`` seconds), a run that will take longer than ``LONG_RUN`` says so, with ``hint``:
    the flags that make it smaller. Takes train/engine.py's ``Progress`` (or anything with its
    step, total_steps, epoch, epochs, epoch_done, metrics and logged)."""

    WARN_AFTER = 10.0  # seconds of steps before the time left is trusted
    LONG_RUN = 30 * 60.0

    def __init__(self, desc: str, shown: tuple[str, ...], per_epoch: bool = True, hint: str = ""):
        self.desc, self.shown, self.per_epoch, self.hint = desc, shown, per_epoch, hint
        self.bar, self.pace, self.tenths = None, Pace(), None
        self.last, self.warned = None, False

    def _shown(self, p) -> dict[str, float]:
        return {k: v for k, v in p.metrics.items() if k in self.shown or k.startswith("knn_")}

    def status(self) -> str:
        """The latest step as one line (the heartbeat's, between the lines below)."""
        p = self.last
        if p is None:
            return f"{self.desc}: starting"
        text = " ".join(f"{k} {v:.4g}" for k, v in self._shown(p).items())
        return " ".join(filter(None, [f"{self.desc} step {p.step}/{p.total_steps}", text,
                                      self.pace(p.step, p.total_steps)]))

    def __call__(self, p) -> None:
        if self.last is None:
            announce()
            set_status(self.status)
        self.last = p
        shown = self._shown(p)
        pace = self.pace(p.step, p.total_steps)  # also starts the clock at the first step
        self._warn_if_long(p)
        if progress_enabled():
            if self.bar is None:
                self.bar = progress_bar(total=p.total_steps, initial=p.step - 1, unit="step", desc=self.desc)
            self.bar.update(1)
            if shown:
                self.bar.set_postfix({k.replace("images_per_s", "img/s"): f"{v:.3g}" for k, v in shown.items()},
                                     refresh=False)
            return
        text = " ".join(f"{k} {v:.4g}" for k, v in shown.items()) if getattr(p, "logged", True) else ""
        head = f"{self.desc} step {p.step}/{p.total_steps}"
        if self.per_epoch and p.epoch_done:
            due, head = True, f"{head} epoch {p.epoch + 1}/{p.epochs}"
        elif not self.per_epoch and (getattr(p, "logged", True) or p.step == p.total_steps):
            self.tenths = self.tenths or Tenths(p.total_steps)
            due = self.tenths(p.step) or seconds_since_last_line() >= interval()
        else:
            due = seconds_since_last_line() >= interval()
        if due:
            note(" ".join(filter(None, [head, text, pace])))

    def _warn_if_long(self, p) -> None:
        """One line, once, when the first trusted estimate of the time left is over LONG_RUN."""
        if self.warned or self.pace.start_time is None:
            return
        elapsed, done = time.monotonic() - self.pace.start_time, p.step - self.pace.start_step
        if elapsed < self.WARN_AFTER or done <= 0:
            return
        self.warned = True
        left = elapsed / done * (p.total_steps - p.step)
        if left > self.LONG_RUN:
            message = f"{self.desc}: at the pace of its first {done} steps this run needs about {clock(left)} more"
            if progress_enabled() and self.bar is not None:
                self.bar.write(one_line(f"dimctl: {message}{'; ' + self.hint if self.hint else ''}"), file=sys.stderr)
            else:
                note(f"{message}{'; ' + self.hint if self.hint else ''}")

    def close(self) -> None:
        set_status(None)
        if self.bar is not None:
            self.bar.close()

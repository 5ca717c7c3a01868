"""Pieces every subcommand shares: dataset options, stream handling, progress reporting.

Importing this module imports no torch: `dimctl probe --help` and the other feature-file commands
start without it. `DatasetOpt` and `EncoderDatasetOpt`, whose help names the datasets, load the
dataset registry (torch) when a command module first asks for them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dimctl.errors import ArtifactError, UsageError
from dimctl.settings import SHARED_HELP

if TYPE_CHECKING:
    from dimctl.data.dataset import ImageDataset
    from dimctl.models.encoders import EncoderConfig


def __getattr__(name: str):
    if name == "DatasetOpt":  # built on first use: the registry that names the datasets imports torch
        from dimctl.data.registry import DATASETS

        value = Annotated[str, typer.Option("--dataset", "-d", help=f"One of: {', '.join(DATASETS)}.")]
        globals()[name] = value
        return value
    if name == "EncoderDatasetOpt":  # the same, for commands that run an encoder: default, its own dataset
        from dimctl.data.registry import DATASETS

        value = Annotated[str | None, typer.Option(
            "--dataset", "-d", show_default=False,
            help=f"One of: {', '.join(DATASETS)}. Default: the dataset the encoder was trained on (its header says).")]
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


DataRootOpt = Annotated[Path | None, typer.Option("--data-root", help=SHARED_HELP["data_root"])]
SkipBadImagesOpt = Annotated[bool, typer.Option(
    "--skip-bad-images", help="In an image folder, leave out files that cannot be read (each is an error otherwise).")]
DownloadOpt = Annotated[bool, typer.Option("--download", help=SHARED_HELP["download"])]
# `--cpu` and the inference batch mean the same in every command that runs a network.
CpuOpt = Annotated[bool, typer.Option("--cpu", help="Run on the CPU even when a GPU is present.")]
ForwardBatchOpt = Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")]
ReplaceOpt = Annotated[bool, typer.Option("--force", help="Replace the output if it exists (it is replaced only when the new one is complete).")]


def refuse_to_replace(paths, force: bool, where: str = "") -> None:
    """Every command that writes refuses to replace an existing output unless given --force; the
    check runs before any work, and with --force the old output stays until the new one is written."""
    if force:
        return
    existing = [Path(p) for p in paths if Path(p).exists()]
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


def read_stdin_bytes() -> bytes:
    if sys.stdin.isatty():
        raise UsageError("no input file given and stdin is a terminal; pass FILE or pipe `dimctl extract …` in")
    return sys.stdin.buffer.read()


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
    print(f"dimctl: {message}", file=sys.stderr, flush=True)


def progress_enabled() -> bool:
    return sys.stderr.isatty() and not os.environ.get("DIMCTL_NO_PROGRESS")


class TrainingProgress:
    """A tqdm bar on an interactive stderr; otherwise a line at the end of every epoch
    (``per_epoch``) or at every tenth of the run (logs, CI, Makefiles). Takes train/engine.py's
    ``Progress`` (or anything with its step, total_steps, epoch, epochs, epoch_done and metrics)."""

    def __init__(self, desc: str, shown: tuple[str, ...], per_epoch: bool = True):
        self.desc, self.shown, self.per_epoch = desc, shown, per_epoch
        self.bar = None

    def __call__(self, p) -> None:
        shown = {k: v for k, v in p.metrics.items() if k in self.shown}
        if progress_enabled():
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=p.total_steps, initial=p.step - 1, unit="step", desc=self.desc,
                                dynamic_ncols=True)
            self.bar.update(1)
            if shown:
                self.bar.set_postfix({k.replace("images_per_s", "img/s"): f"{v:.3g}" for k, v in shown.items()},
                                     refresh=False)
            return
        text = " ".join(f"{k} {v:.4g}" for k, v in shown.items())
        if self.per_epoch and p.epoch_done:
            note(f"{self.desc} step {p.step}/{p.total_steps} epoch {p.epoch + 1}/{p.epochs} {text}")
        elif not self.per_epoch and (p.step == p.total_steps or p.step % max(1, p.total_steps // 10) == 0):
            note(f"{self.desc} step {p.step}/{p.total_steps} {text}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

"""Options several subcommands share (dataset, data root, device, batch, --force) and what their
values mean to a command.

Importing this module imports no torch: `dimctl probe --help` and the other feature-file commands
start without it. `DatasetOpt` and `EncoderDatasetOpt`, whose help names the datasets, load the
dataset registry (torch) when a command module first asks for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dimctl.errors import UsageError
from dimctl.settings import SHARED_HELP


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
HF_HELP = "or " + SHARED_HELP["hf_dataset"]


def dataset_label(dataset: str) -> str:
    """A dataset as part of a default run folder's name: hf:DIR?… holds slashes, so it is hf-<DIR's name>."""
    if dataset.startswith("hf:"):
        return "hf-" + (Path(dataset[3:].partition("?")[0]).name or "dataset")
    return dataset


def _encoder_path(value: Path | None) -> Path | None:
    from dimctl.cli.sources import encoder_argument  # imports torch: only once the command runs

    return encoder_argument(value)


# The encoder a measuring command reads (extract, export, mine, neighbors, reconstruct).
EncoderArg = Annotated[Path, typer.Argument(help="An encoder.safetensors made by `dimctl pretrain`, or its run folder.",
                                            callback=_encoder_path)]
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

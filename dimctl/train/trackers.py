"""Experiment trackers (`--log-with csv|tensorboard|wandb|mlflow` of pretrain, finetune and
generate train), through
Accelerate's tracker API: the Accelerator is made with ``log_with`` and the run folder as its
project directory, ``init_trackers`` records the run's settings, and the engine
(train/engine.py) hands every metrics.jsonl line's numbers, plus the learning rate, to
``accelerator.log`` on the main process.

    dimctl pretrain --log-with tensorboard --out runs/x && tensorboard --logdir runs/x   # pip install 'dimctl[tensorboard]'
    dimctl pretrain --log-with csv --out runs/x        # runs/x/metrics.csv: step,name,value

TensorBoard, W&B and MLflow are optional packages; asking for one that is not installed is a
usage error naming the package (Accelerate itself would drop it without a word). ``csv`` needs
nothing: a long-format table beside metrics.jsonl.
"""

import csv
import importlib.util
import os
import stat
from contextlib import contextmanager
from pathlib import Path

from accelerate.tracking import GeneralTracker

from dimctl.errors import UsageError

TRACKERS = ("none", "csv", "tensorboard", "wandb", "mlflow")
# The package each optional tracker needs, and how to get it.
PACKAGES = {"tensorboard": ("tensorboard", "pip install 'dimctl[tensorboard]'"),
            "wandb": ("wandb", "pip install wandb"), "mlflow": ("mlflow", "pip install mlflow")}


class CSVTracker(GeneralTracker):
    """Every logged number as a row of RUN/metrics.csv: step, name, value (appended on resume)."""

    name = "csv"
    requires_logging_directory = False

    def __init__(self, run_dir: Path):
        super().__init__()
        self.path = Path(run_dir) / "metrics.csv"

    @property
    def tracker(self):
        return self.path

    def store_init_configuration(self, values: dict) -> None:
        pass  # the settings are in config.json already

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "name", "value"])
            writer.writerows([step, name, value] for name, value in values.items())


def check_tracker(name: str) -> None:
    if name not in TRACKERS:
        raise UsageError(f"--log-with {name!r} is not one of: {', '.join(TRACKERS)}")
    if name in PACKAGES and importlib.util.find_spec(PACKAGES[name][0]) is None:
        raise UsageError(f"--log-with {name} needs the {PACKAGES[name][0]} package, which is not installed: "
                         f"{PACKAGES[name][1]}")


def log_with(name: str, run_dir: Path | None) -> list | None:
    """Accelerator's ``log_with`` for ``--log-with name`` (None for none)."""
    check_tracker(name)
    if name == "none":
        return None
    if name == "csv" and run_dir is not None:
        _check_csv_target(Path(run_dir) / "metrics.csv")
    return [CSVTracker(run_dir)] if name == "csv" else [name]


def _check_csv_target(path: Path) -> None:
    """RUN/metrics.csv is appended to by name, so it must be absent or a regular file, checked
    before training: opening a FIFO there blocked the run at its first log line, and a link there
    had the rows written through it into whatever file it points at."""
    try:
        mode = os.lstat(path).st_mode  # lstat: the link itself, never what it points at
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        what = "a link" if stat.S_ISLNK(mode) else "not a regular file"
        raise UsageError(f"--log-with csv: {path} is {what}; remove it (the run appends its rows to that name)")


def tracker_arguments(name: str, run_dir: Path | None) -> dict:
    """The Accelerator's keyword arguments for ``--log-with name``: its trackers and, with any,
    the run folder as the project directory they write in."""
    trackers = log_with(name, run_dir)
    return {"log_with": trackers, "project_dir": str(run_dir) if trackers else None}


@contextmanager
def tracking(accelerator, run_dir: Path, settings: dict):
    """Trackers started with the run's settings around training, and flushed and closed after it,
    an interrupted or failed run's too."""
    if not accelerator.log_with:
        yield
        return
    accelerator.init_trackers(run_dir.name, config=tracker_settings(settings))
    try:
        yield
    finally:
        accelerator.end_training()


def tracker_settings(flat: dict) -> dict:
    """The run's settings as trackers take hyperparameters: bool, int, float or str values only."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in flat.items()}

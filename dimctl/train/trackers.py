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

Tracker output follows the rules of metrics.jsonl (train/engine.py RunFiles): a new run over an
old one (``--force``) starts its trackers only at its first checkpoint, once the old run's
metrics.csv and event files are gone; a resume cuts metrics.csv back to its checkpoint, and
TensorBoard hides the steps past it (SummaryWriter's ``purge_step``). A failed tracker write (a
full disk) is an OSError naming the tracker's file or folder.
"""

import csv
import errno
import fcntl
import importlib.util
import io
import os
import stat
import threading
from contextlib import contextmanager
from pathlib import Path

from accelerate.tracking import GeneralTracker, TensorBoardTracker

from dimctl.errors import UsageError
from dimctl.io.atomic import write_bytes

TRACKERS = ("none", "csv", "tensorboard", "wandb", "mlflow")
# The package each optional tracker needs, and how to get it.
PACKAGES = {"tensorboard": ("tensorboard", "pip install 'dimctl[tensorboard]'"),
            "wandb": ("wandb", "pip install wandb"), "mlflow": ("mlflow", "pip install mlflow")}
CSV_NAME = "metrics.csv"
CSV_HEADER = ["step", "name", "value"]
TENSORBOARD_FILES = ("events.out.tfevents.", "hparams.yml")  # what TensorBoard's tracker writes (name starts)


class CSVTracker(GeneralTracker):
    """Every logged number as a row of RUN/metrics.csv: step, name, value (appended on resume)."""

    name = "csv"
    requires_logging_directory = False

    def __init__(self, run_dir: Path):
        super().__init__()
        self.path = Path(run_dir) / CSV_NAME

    @property
    def tracker(self):
        return self.path

    def store_init_configuration(self, values: dict) -> None:
        pass  # the settings are in config.json already

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        rows = io.StringIO(newline="")
        writer = csv.writer(rows)
        writer.writerows([step, name, value] for name, value in values.items())
        fd = _open_for_append(self.path)
        try:
            if os.fstat(fd).st_size == 0:
                text = ",".join(CSV_HEADER) + "\r\n" + rows.getvalue()  # csv's own line ends
            else:
                text = rows.getvalue()
            data = memoryview(text.encode())
            while data:
                data = data[os.write(fd, data):]
        except OSError as e:  # a full disk: say which file
            raise OSError(e.errno, e.strerror, str(self.path)) from e
        finally:
            os.close(fd)


def _open_for_append(path: Path) -> int:
    """An appending descriptor on ``path`` if it is (or becomes) a regular file. The name is checked
    before training (``_check_csv_target``); opened without following a link and without waiting
    on a FIFO, it is checked again here, where it counts."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     0o666)
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENXIO):  # a link; a FIFO nobody reads
            raise
        fd = None
    if fd is not None and stat.S_ISREG(os.fstat(fd).st_mode):
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return fd
    if fd is not None:
        os.close(fd)
    _check_csv_target(path)  # says what it is
    raise UsageError(f"--log-with csv: {path} is not a regular file; remove it (the run appends its rows to that name)")


class TensorBoard(TensorBoardTracker):
    """Accelerate's TensorBoard tracker (events in RUN/<run name>/), made here so that a resume hides
    what a killed run logged past its checkpoint (``hide_after``) and a failed write is one OSError
    naming the folder. The writer's thread stores its failure for the next write or the close,
    which report it; its own traceback (Python prints one for any thread that fails) is left out."""

    def __init__(self, run_dir: Path):
        super().__init__(Path(run_dir).name, str(run_dir))

    def hide_after(self, step: int) -> None:
        """Events of steps after ``step`` in earlier event files are not shown (SummaryWriter's purge_step)."""
        self.init_kwargs["purge_step"] = step + 1

    def start(self):
        _quiet_writer_threads()
        with self._named():
            super().start()

    def store_init_configuration(self, values: dict):
        with self._named():
            super().store_init_configuration(values)

    def log(self, values: dict, step: int | None = None, **kwargs):
        with self._named():
            super().log(values, step, **kwargs)

    def finish(self):
        with self._named():
            super().finish()

    @contextmanager
    def _named(self):
        try:
            yield
        except OSError as e:
            where = os.path.join(self.logging_dir_param, self.run_name)
            raise OSError(e.errno, e.strerror or str(e), where) from e


def _quiet_writer_threads() -> None:
    """Leave out the traceback of a TensorBoard writer thread that failed: the writer hands its
    failure to the next write or the close, which report it named (``TensorBoard._named``)."""
    previous = threading.excepthook
    if getattr(previous, "dimctl_quiet", False):
        return

    def hook(args):
        if type(args.thread).__name__ != "_AsyncWriterThread":
            previous(args)

    hook.dimctl_quiet = True
    threading.excepthook = hook


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
        _check_csv_target(Path(run_dir) / CSV_NAME)
    if name == "csv":
        return [CSVTracker(run_dir)]
    if name == "tensorboard" and run_dir is not None:
        _check_board_target(Path(run_dir) / Path(run_dir).name)
        return [TensorBoard(run_dir)]
    return [name]


def _check_board_target(folder: Path) -> None:
    """TensorBoard writes its event files into RUN/<run name>/ by name: a link there would have
    them land wherever it points, so it is refused as a link at RUN/metrics.csv is."""
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        what = "a link" if folder.is_symlink() else "not a folder"
        raise UsageError(f"--log-with tensorboard: {folder} is {what}; remove it (TensorBoard writes its event "
                         f"files in that folder)")


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
def tracking(accelerator, files, settings: dict):
    """Trackers started with the run's settings once ``files`` (the run's RunFiles, train/engine.py)
    says the run folder's files are this run's, and flushed and closed after training, an
    interrupted or failed run's too; a close that fails then does not hide the first failure."""
    if not accelerator.log_with:
        yield
        return

    def start() -> None:
        for tracker in accelerator.log_with:
            if isinstance(tracker, TensorBoard):
                tracker.hide_after(files.start_step)
        accelerator.init_trackers(files.run_dir.name, config=tracker_settings(settings))

    files.when_own(start)
    try:
        yield
    except BaseException:
        try:
            accelerator.end_training()
        except Exception:  # the same full disk, or a tracker that never started: the failure on its way says it
            pass
        raise
    accelerator.end_training()


def tracker_settings(flat: dict) -> dict:
    """The run's settings as trackers take hyperparameters: bool, int, float or str values only."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in flat.items()}


def drop_csv_rows_after(path: Path, step: int) -> None:
    """Cut RUN/metrics.csv back to ``step``, as a resume cuts metrics.jsonl: rows of later steps (a
    killed run wrote them past its checkpoint) and rows cut short go. Only a regular file is read;
    anything else there is left alone (a run that logs to it refuses it first)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return
    except FileNotFoundError:
        return
    lines = path.read_bytes().splitlines(keepends=True)
    kept = [line for number, line in enumerate(lines) if (number == 0 and _is_header(line)) or _row_step(line, step)]
    if len(kept) != len(lines):
        write_bytes(path, b"".join(kept))


def _is_header(line: bytes) -> bool:
    return line.rstrip(b"\r\n") == ",".join(CSV_HEADER).encode()


def _row_step(line: bytes, last: int) -> bool:
    """Whether ``line`` is a whole row (step, name, value and its line end) of a step up to ``last``."""
    if not line.endswith(b"\n"):
        return False
    try:
        row = next(csv.reader([line.decode("utf-8", "replace")]))
        return len(row) == 3 and 0 <= int(row[0]) <= last
    except (ValueError, StopIteration, csv.Error):
        return False


def tracker_files(run_dir: Path) -> list[Path]:
    """The files trackers write in a run folder, which a new run over it removes with the old
    run's other files: metrics.csv and TensorBoard's event files (and hparams.yml) in RUN/<run name>/."""
    found = []
    table = run_dir / CSV_NAME
    if table.is_file() and not table.is_symlink():
        found.append(table)
    board = run_dir / run_dir.name
    if board.is_dir() and not board.is_symlink():
        found += [path for path in board.rglob("*") if path.name.startswith(TENSORBOARD_FILES)
                  and path.is_file() and not path.is_symlink()]
    return found


def remove_emptied_folders(run_dir: Path, removed: list[Path]) -> None:
    """The folders under RUN/<run name>/ (TensorBoard's, and it) that removing the old run's files
    ``removed`` left empty."""
    board = run_dir / run_dir.name
    folders = {folder for path in removed for folder in path.parents if folder == board or board in folder.parents}
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):  # the deepest first
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty

"""A training command's run folder: refuse to mix runs, clear it for --force, check --resume
settings; and the SIGINT/SIGTERM request to stop with a checkpoint.

Shared by `pretrain`, `generate train` and `finetune`.
"""

import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated

import typer

from dimctl.cli.output import note
from dimctl.errors import Interrupted, UsageError
from dimctl.io.atomic import check_folder_or_absent
from dimctl.io.run_lock import lock_run_dir
from dimctl.train import checkpoint
from dimctl.train.distributed import check_launch

# The training commands' own options (their settings' options come from their configs: cli/settings_options.py).
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue from the run folder's newest checkpoint (start fresh if it has none).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Start a new run over an existing run folder. The old run's files stay as they are until the new run's first checkpoint, its published artifact until the new one replaces it.")]


def prepare_run_dir(run_dir: Path, config: dict, resume: bool, force: bool, run_files: Iterable[str],
                    resumable: set[str]) -> None:
    """``run_files`` mark a folder as holding a run. ``--force`` starts a new run over it, which
    leaves the old run's files as they are until its first checkpoint (train/engine.py RunFiles),
    and its published artifact until the new one atomically replaces it, so a --force run that
    fails early loses nothing. ``--resume`` refuses any setting outside ``resumable`` that differs
    from the run's record in the checkpoint it will load (config.json's for older checkpoints)."""
    check_folder_or_absent(run_dir, "--out ")
    check_launch()  # a one-process `accelerate launch` meant as several: refused before the lock makes the folder
    lock_run_dir(run_dir)  # before anything in it is read or changed; the command's end gives it back
    existing = [name for name in run_files if (run_dir / name).exists()]
    if not existing or force:
        return
    if not resume:
        raise UsageError(f"--out {run_dir} already holds a run ({', '.join(existing)}); "
                         f"pass --resume to continue it or --force to overwrite it")
    record = checkpoint.saved_record(run_dir)
    if record is not None and checkpoint.list_checkpoints(run_dir):
        saved = record["config"]
        # A setting the saved run does not record is newer than it, and the run had its default.
        changed = [k for k, v in config.items() if k not in resumable and k in saved and saved[k] != v]
        if changed:
            k = changed[0]
            raise UsageError(f"--resume: {k} was {saved.get(k)!r} in {run_dir} but is now {config[k]!r}; "
                             f"use the run's settings or a new --out")


def with_saved_settings(ctx: typer.Context, run_dir: Path, settings: dict, resume: bool) -> dict:
    """The command's settings (by name, as its options gave them) before anything resolves them:
    under --resume, every one left at its default on the command line (not given there, in a
    --config file or the environment) takes the run's saved value (the newest checkpoint's record,
    else config.json), so ``--resume`` alone continues a run and ``--resume --epochs N`` extends
    it; one given explicitly stays as given (and ``prepare_run_dir`` refuses it by name if it
    cannot change). The saved values are resolved ones, and resolving them again changes nothing,
    so the command then resolves its config once. A setting's command-line parameter has the
    setting's name (config.json's flat view)."""
    record = checkpoint.saved_record(run_dir) if resume else None
    if record is None:  # nothing readable: prepare_run_dir and the checkpoint loader report what is wrong
        return settings
    saved = record["config"]
    # By name: typer may carry its own copy of click, whose ParameterSource is another enum.
    defaulted = {name for name in ctx.params
                 if getattr(ctx.get_parameter_source(name), "name", None) == "DEFAULT"}
    return {**settings, **{name: saved[name] for name in settings if name in saved and name in defaulted}}


class StopRequest:
    """SIGINT/SIGTERM ask the loop to finish its step and checkpoint; a second Ctrl-C stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received = None

    def __enter__(self) -> "StopRequest":
        self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        # Only a second Ctrl-C stops at once (a second SIGTERM changes nothing), so only SIGINT hears of it.
        now = " (Ctrl-C again to stop now)" if signum == signal.SIGINT else ""
        note(f"{signal.Signals(signum).name}: finishing this step and saving a checkpoint{now}")

    def __call__(self) -> bool:
        return self.received is not None


class StoppedWithCheckpoint(Exception):
    """A requested stop that checkpointed, already said on stderr: exit code 130 and nothing more.
    It follows click's exception protocol (an exit code, an empty message), which the entry point
    (cli/main.py) ends with that code and no further line, as when click has shown the help."""

    exit_code = 130

    def format_message(self) -> str:
        return ""


def run_until_stopped(train: Callable[[StopRequest], object], resume_command: str, progress=None):
    """``train(stop)`` with SIGINT/SIGTERM turned into a stop request: the step finishes, a
    checkpoint is written and the command ends with exit code 130 and one line, `dimctl: stopped at
    step N/M by SIGTERM; checkpoint saved; continue with: …` (not an error: it was asked for). A
    second Ctrl-C stops at once and says how to continue. Closes ``progress`` either way."""
    try:
        with StopRequest() as stop:
            return train(stop)
    except Interrupted as e:  # said below, once the progress is closed
        stopped = e
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, back to the last checkpoint
        note(f"interrupted; continue from the last checkpoint with: {resume_command}")
        raise
    finally:
        if progress is not None:
            progress.close()
    # With several processes, those that received no signal stop because another did.
    by = f"by {signal.Signals(stop.received).name}" if stop.received is not None else "on request"
    at = f" at step {stopped.step}/{stopped.total}" if stopped.step is not None else ""
    note(f"stopped{at} {by}; checkpoint saved; continue with: {resume_command}")
    raise StoppedWithCheckpoint() from stopped

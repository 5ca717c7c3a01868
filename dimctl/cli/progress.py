"""What a running command shows of its progress on stderr.

On a terminal: a bar per library activity (dimctl/progress.py) and per training run. Elsewhere (a
log file, CI, make): a line at least every ``DIMCTL_PROGRESS_SECONDS`` seconds (30 by default),
with the elapsed time and, where the work knows its size, the time left: a heartbeat thread writes
one whenever nothing else was written for that long, so even one long call into a solver (libsvm
fitting a conv layer for minutes) is seen to be alive. The first progress output of a command
says how many threads it computes with (dimctl/threads.py).
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from collections.abc import Callable

from dimctl import progress
from dimctl.cli.output import note
from dimctl.text import one_line
from dimctl.threads import ThreadChoice

DEFAULT_SECONDS = 30.0


def interval() -> float:
    """Seconds between progress lines off a terminal (DIMCTL_PROGRESS_SECONDS; tests shorten it)."""
    try:
        seconds = float(os.environ.get("DIMCTL_PROGRESS_SECONDS", DEFAULT_SECONDS))
    except ValueError:
        return DEFAULT_SECONDS
    return seconds if seconds > 0 else DEFAULT_SECONDS


_write_lock = threading.Lock()
_last_line = time.monotonic()  # when a line was last written on stderr by note()
_command: CommandProgress | None = None  # the command running in this process, if the CLI runs one


def _write(text: str) -> None:
    """One whole line on stderr (one write call), its control characters escaped (dimctl/text.py):
    a name in it cannot split it or reach the terminal. Callers hold ``_write_lock``."""
    global _last_line
    sys.stderr.write(one_line(text) + "\n")
    sys.stderr.flush()
    _last_line = time.monotonic()


def _threads_line() -> str | None:
    """The running command's threads line, the first time it is asked for (then None)."""
    if _command is None or _command._announced:
        return None
    _command._announced = True
    return None if _command.threads is None else f"dimctl: {_command.command}: {_command.threads.describe()}"


def write_line(text: str) -> None:
    """One whole line on stderr: the heartbeat thread's lines never split another's."""
    with _write_lock:
        _write(text)


def write_if_quiet(make_text: Callable[[], str]) -> None:
    """A progress line, unless another was written within the interval (checked under the lock, so
    the heartbeat and the work never both write one for the same quiet spell); the threads line
    first, if not yet written."""
    with _write_lock:
        if time.monotonic() - _last_line < interval():
            return
        threads_line = _threads_line()
        if threads_line is not None:
            _write(threads_line)
        _write(make_text())


def seconds_since_last_line() -> float:
    return time.monotonic() - _last_line


def clock(seconds: float) -> str:
    """1:02:03 or 2:03."""
    minutes, s = divmod(int(round(seconds)), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m}:{s:02d}"


def announce() -> None:
    """Before a command's first progress output: the threads it computes with (once per command)."""
    with _write_lock:
        threads_line = _threads_line()
        if threads_line is not None:
            _write(threads_line)


def set_status(provider: Callable[[], str] | None) -> None:
    """What the heartbeat says while no library activity runs (a training loop's latest step)."""
    if _command is not None:
        _command.status_provider = provider


def activity_status(task: progress.Activity) -> str:
    """The activity with those it runs inside: "probe f.h5: y with mlp · mlp 3/50 epoch elapsed … eta …"."""
    outer = [t.label for t in progress.running() if t is not task]
    elapsed = time.monotonic() - task.started
    parts = [" · ".join([*outer, task.label])]
    if task.total:
        parts.append(f"{task.done}/{task.total} {task.unit}")
        if task.done > 0:
            parts.append(f"elapsed {clock(elapsed)} eta {clock(elapsed / task.done * max(task.total - task.done, 0))}")
        else:
            parts.append(f"elapsed {clock(elapsed)}")
    else:
        parts += [f"{task.done} {task.unit}"] if task.done else []
        parts.append(f"elapsed {clock(elapsed)}")
    parts += [f"{k} {v:.4g}" for k, v in task.values.items()]
    return " ".join(parts)


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


class CommandProgress:
    """Progress of one command, from its start to its end (a context manager the CLI wraps around it)."""

    def __init__(self, command: str, threads: ThreadChoice | None, terminal: bool | None = None):
        self.command, self.threads = command, threads
        self.terminal = progress_enabled() if terminal is None else terminal
        self.started = time.monotonic()
        self.status_provider: Callable[[], str] | None = None
        self._announced = False
        self._bars: dict[int, object] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening = None

    def __enter__(self) -> CommandProgress:
        global _command, _last_line
        self._previous, _command = _command, self
        _last_line = time.monotonic()  # the interval counts from the command's start
        self._listening = progress.listening(self.on_event)
        self._listening.__enter__()
        self._thread = threading.Thread(target=self._beat, name="dimctl-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        global _command
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._listening.__exit__(*exc)
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
        _command = self._previous

    def on_event(self, kind: str, task: progress.Activity) -> None:
        if not self.terminal:
            if kind == "update" and seconds_since_last_line() >= interval():
                write_if_quiet(lambda: f"dimctl: {activity_status(task)}")
            return
        key = id(task)
        if kind == "start":
            announce()
            self._bars[key] = progress_bar(total=task.total, unit=task.unit, desc=task.label, leave=False)
        elif kind == "update" and key in self._bars:
            bar = self._bars[key]
            bar.update(task.done - bar.n)
            if task.values:
                bar.set_postfix({k: f"{v:.3g}" for k, v in task.values.items()}, refresh=False)
        elif kind == "end" and key in self._bars:
            self._bars.pop(key).close()

    def status(self) -> str:
        task = progress.current()
        if task is not None:
            return activity_status(task)
        if self.status_provider is not None:
            return self.status_provider()
        return f"{self.command}: working, elapsed {clock(time.monotonic() - self.started)}"

    def _beat(self) -> None:
        """Off a terminal: a status line whenever stderr has been quiet for a whole interval. On a
        terminal: the bars redrawn each second, so their elapsed time moves during a long call."""
        while not self._stop.wait(min(1.0, interval() / 4)):
            try:
                if self.terminal:
                    for bar in list(self._bars.values()):
                        bar.refresh()
                elif seconds_since_last_line() >= interval():
                    write_if_quiet(lambda: f"dimctl: {self.status()}")
            except Exception:  # a closed stderr (the reader went away): the command itself will say so
                return


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

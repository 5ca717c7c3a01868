"""Progress of long library work, for whoever shows it: the library reports, the CLI draws.

    with progress.activity("svm on conv", total=max_iter, unit="iter") as task:
        for i in range(max_iter):
            ...
            task.update(i + 1)

With nobody listening (the Python API, the tests) an update costs an attribute write. The CLI
listens (``listening``) and shows a bar on a terminal or a line at least every 30 s elsewhere;
work that cannot report steps (one long call into libsvm) still runs inside an activity, so its
label and elapsed time can be shown while it runs.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Activity:
    label: str  # what is being done, e.g. "probe fc.h5: y with svm"
    total: int | None  # steps in all, None where not known
    unit: str = "step"
    done: int = 0
    values: dict[str, float] = field(default_factory=dict)  # the latest values worth showing (a loss, …)
    started: float = field(default_factory=time.monotonic)

    def update(self, done: int | None = None, **values: float) -> None:
        """``done`` steps so far (default: one more), and any values to show beside them."""
        self.done = self.done + 1 if done is None else done
        if values:
            self.values = values
        if _listener is not None:
            _listener("update", self)


Listener = Callable[[str, Activity], None]  # called with "start", "update" or "end" and the activity
_listener: Listener | None = None
_running: list[Activity] = []


@contextmanager
def activity(label: str, total: int | None = None, unit: str = "step") -> Iterator[Activity]:
    task = Activity(label, total, unit)
    _running.append(task)
    if _listener is not None:
        _listener("start", task)
    try:
        yield task
    finally:
        _running.remove(task)
        if _listener is not None:
            _listener("end", task)


def current() -> Activity | None:
    """The innermost activity running now, if any."""
    return _running[-1] if _running else None


def running() -> list[Activity]:
    """The activities running now, outermost first."""
    return list(_running)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    global _listener
    previous, _listener = _listener, listener
    try:
        yield
    finally:
        _listener = previous

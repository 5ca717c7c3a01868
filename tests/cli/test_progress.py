"""Progress on stderr: log lines with elapsed time and time left, no stale values, and a bar even
on a terminal that reports a width of 0."""

import fcntl
import io
import os
import pty
import select
import struct
import sys
import termios

from dimctl.cli.progress import TrainingProgress, clock
from dimctl.train.engine import Progress


def test_log_lines_carry_pace_and_only_fresh_values(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    progress = TrainingProgress("generate", ("loss",), per_epoch=False)
    for step in range(1, 21):  # tenths at every 2 steps; values logged at every 5th step only
        logged = step % 5 == 0
        progress(Progress(step, 20, 0, {"loss": float(step)} if step >= 5 else {}, step == 20, 1, logged))
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[3] for line in lines] == ["5/20", "10/20", "15/20", "20/20"]
    assert all(f"loss {line.split()[3].split('/')[0]}" in line for line in lines)  # each with its own step's value
    assert all(" elapsed " in line and " eta " in line for line in lines)
    assert clock(3725) == "1:02:05" and clock(65) == "1:05"


def test_bar_on_a_terminal_of_width_zero(monkeypatch):
    monkeypatch.delenv("DIMCTL_NO_PROGRESS", raising=False)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    terminal = io.TextIOWrapper(os.fdopen(follower, "wb", buffering=0), write_through=True)
    monkeypatch.setattr(sys, "stderr", terminal)
    progress = TrainingProgress("pretrain", ("loss",))
    for step in range(1, 6):
        progress(Progress(step, 5, 0, {"loss": 1.0}, step == 5, 1))
    progress.close()
    terminal.flush()
    drawn = b""
    while select.select([leader], [], [], 0.5)[0]:  # a pty hands its output over in pieces
        drawn += os.read(leader, 65536)
    drawn = drawn.decode(errors="replace")
    os.close(leader)
    terminal.close()
    assert "pretrain" in drawn and "5/5" in drawn and "100%" in drawn


def test_a_long_run_is_announced_once_with_the_flags_that_shorten_it(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    monkeypatch.setattr(TrainingProgress, "WARN_AFTER", 0.02)
    monkeypatch.setattr(TrainingProgress, "LONG_RUN", 60.0)
    progress = TrainingProgress("pretrain", ("loss",), hint="--mi-units 256 or fewer --epochs make it shorter")
    import time

    for step in range(1, 6):  # ~10 ms a step over 100,000 steps: about 17 minutes left, over the minute
        progress(Progress(step, 100_000, 0, {"loss": 1.0}, False, 10))
        time.sleep(0.01)
    lines = [line for line in capsys.readouterr().err.splitlines() if "more" in line]
    assert len(lines) == 1 and "this run needs about" in lines[0] and "--mi-units 256" in lines[0], lines

    quick = TrainingProgress("pretrain", ("loss",), hint="never shown")
    for step in range(1, 6):
        quick(Progress(step, 6, 0, {"loss": 1.0}, False, 1))
        time.sleep(0.01)
    assert "never shown" not in capsys.readouterr().err


def test_online_knn_and_quiet_spells_reach_the_log_line(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    monkeypatch.setenv("DIMCTL_PROGRESS_SECONDS", "0.05")
    progress = TrainingProgress("pretrain", ("loss",))
    import time

    progress(Progress(1, 1000, 0, {"loss": 2.0}, False, 10))
    time.sleep(0.06)  # no epoch ended, but the log has been quiet for the interval
    progress(Progress(2, 1000, 0, {"loss": 1.5, "knn_top1": 0.75}, False, 10))
    err = capsys.readouterr().err
    assert "pretrain step 2/1000 loss 1.5 knn_top1 0.75 elapsed" in err, err

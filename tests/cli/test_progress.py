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

from dimctl.cli.common import TrainingProgress, clock
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

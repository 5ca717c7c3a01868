"""Two processes, one run folder: the second (a new run or a --resume) is refused with the
holder's PID while the first runs, and the folder is free again once it ends. The lock is on the
folder itself: deleting or replacing RUN/.dimctl.lock (the PID note) does not let a second run in."""

import fcntl
import os
import subprocess
import sys
import time

import pytest

from tests.cli.helpers import ENV, assert_one_line_error, run_here

RUN = ["--dataset", "digits", "--mi-units", "16", "--width", "0.5", "--checkpoint-every", "0"]


def test_a_second_process_on_a_running_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "dimctl", "pretrain", *RUN, "--epochs", "30", "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        lock = out / ".dimctl.lock"
        deadline = time.monotonic() + 120
        while not (lock.is_file() and lock.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lock.read_text().strip() == str(first.pid)
        for extra in ([], ["--resume"], ["--force"]):
            second = run_here("pretrain", *RUN, "--epochs", "1", "--out", out, *extra)
            assert_one_line_error(second, 2)
            assert f"in use by another dimctl process (PID {first.pid})" in second.stderr.decode()
        lock.unlink()  # issue 40, group 16: the note gone, the lock stays
        second = run_here("pretrain", *RUN, "--epochs", "1", "--out", out, "--resume")
        assert_one_line_error(second, 2)
        assert "in use by another dimctl process (PID unknown)" in second.stderr.decode()
        while not (out / "metrics.jsonl").is_file() and time.monotonic() < deadline:
            time.sleep(0.1)  # training has started: its SIGTERM handler checkpoints
    finally:
        first.terminate()  # graceful: it checkpoints and exits 130
        first.wait(timeout=120)
    assert first.returncode == 130, first.stderr.read().decode()[-2000:]
    resumed = run_here("pretrain", *RUN, "--epochs", "1", "--out", out, "--resume")  # free once the holder ended
    assert resumed.returncode == 0, resumed.stderr.decode()


def test_a_refused_run_leaves_no_folder_behind(tmp_path):
    result = run_here("pretrain", "--dataset", "cifar10", "--data-root", tmp_path / "nothing", "--out", tmp_path / "r")
    assert result.returncode == 2 and not (tmp_path / "r").exists()
    assert not any(p.name == ".dimctl.lock" for p in tmp_path.rglob("*"))
    assert os.listdir(tmp_path) == []


def _note_as(kind, note, outside):
    """RUN/.dimctl.lock made into ``kind``: deleted, a link leaving the folder, a FIFO, a folder, odd text."""
    if kind == "deleted":
        return
    if kind == "link":
        note.symlink_to(outside)
    elif kind == "fifo":
        os.mkfifo(note)
    elif kind == "folder":
        note.mkdir()
    else:
        note.write_text("1\x1b[2J\n")


@pytest.mark.parametrize("kind", ["deleted", "link", "fifo", "folder", "odd text"])
def test_the_lock_is_the_folders_whatever_becomes_of_the_pid_note(tmp_path, kind):
    out, outside = tmp_path / "run", tmp_path / "outside.txt"
    out.mkdir()
    outside.write_text("not dimctl's\n")
    _note_as(kind, out / ".dimctl.lock", outside)
    holder = os.open(out, os.O_RDONLY | os.O_DIRECTORY)  # another process's lock (flock: per open folder)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = run_here("pretrain", *RUN, "--epochs", "0", "--out", out)
        assert_one_line_error(refused, 2)
        assert "in use by another dimctl process (PID unknown)" in refused.stderr.decode()
    finally:
        os.close(holder)
    result = run_here("pretrain", *RUN, "--epochs", "0", "--out", out)  # free again: the note is no obstacle
    assert result.returncode == 0, result.stderr.decode()
    assert outside.read_text() == "not dimctl's\n"  # the note is replaced, never written through


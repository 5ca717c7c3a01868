"""`--log-with` (pretrain, finetune, generate train): every metrics.jsonl number (and the learning rate) reaches the tracker,
read back from its own files; a tracker whose package is missing is one clear usage error."""

import csv
import errno
import json
import os
import shutil

import pytest

from dimctl.errors import UsageError
from dimctl.train import checkpoint, trackers
from tests.cli.helpers import assert_one_line_error, run_here

SMALL = ["--dataset", "digits", "--mi-units", "32", "--width", "0.25", "--fc-dim", "64", "--batch-size", "32",
         "--checkpoint-every", "0", "--epochs", "1", "--log-every", "11"]


def _numbers(run_dir):
    return {line["step"]: {k: v for k, v in line.items() if k not in ("step", "time", "elapsed_s")}
            for line in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


def test_csv_tracker_holds_every_logged_number_and_the_learning_rate(tmp_path):
    assert run_here("pretrain", *SMALL, "--log-with", "csv", "--out", tmp_path / "run").returncode == 0
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    logged = {}
    for row in rows:
        logged.setdefault(int(row["step"]), {})[row["name"]] = float(row["value"])
    expected = _numbers(tmp_path / "run")
    assert logged.keys() == expected.keys() == {11, 22, 33, 44}
    for step, values in expected.items():
        assert logged[step].pop("lr") == 1e-4
        assert logged[step] == pytest.approx(values, rel=1e-9)


def test_tensorboard_tracker_writes_the_same_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert run_here("pretrain", *SMALL, "--log-with", "tensorboard", "--out", tmp_path / "tb").returncode == 0
    events = EventAccumulator(str(tmp_path / "tb" / "tb")).Reload()
    expected = _numbers(tmp_path / "tb")
    loss = {e.step: e.value for e in events.Scalars("loss")}
    assert loss.keys() == expected.keys()
    assert all(loss[s] == pytest.approx(expected[s]["loss"], rel=1e-6) for s in loss)
    assert {"local_mi", "images_per_s", "lr"} <= set(events.Tags()["scalars"])


def test_missing_tracker_package_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match=r"needs the wandb package.*pip install wandb"):
        trackers.check_tracker("wandb")
    bad = run_here("pretrain", *SMALL, "--log-with", "mlflow", "--out", tmp_path / "m")
    assert_one_line_error(bad, 2)
    assert not (tmp_path / "m").exists()  # refused before anything was written


@pytest.mark.parametrize("command", ["finetune", "generate train"])
def test_finetune_and_generate_train_log_to_the_tracker_too(command, tmp_path):
    if command == "finetune":
        assert run_here("pretrain", *SMALL[:6], "--epochs", "0", "--out", tmp_path / "random").returncode == 0
        args = ["finetune", tmp_path / "random" / "encoder.safetensors", "--labels-fraction", "0.1", "--epochs", "2"]
    else:
        args = ["generate", "train", "--width", "4", "--z-dim", "16", "--batch-size", "16", "--steps", "3",
                "--sample-every", "0", "--log-every", "1", "--dataset", "digits"]
    result = run_here(*args, "--log-with", "csv", "--checkpoint-every", "0", "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr.decode()
    logged = {}
    for row in csv.DictReader(open(tmp_path / "run" / "metrics.csv")):
        logged.setdefault(int(row["step"]), {})[row["name"]] = float(row["value"])
    expected = _numbers(tmp_path / "run")
    assert logged.keys() == expected.keys() and len(expected) >= 2
    for step, values in expected.items():
        rates = {k: logged[step].pop(k) for k in list(logged[step]) if k.endswith("lr")}
        assert rates["lr"] > 0 and (command == "finetune" or rates["critic_lr"] > 0)
        assert logged[step] == pytest.approx(values, rel=1e-9)


# Issue 40, group 11: tracker output follows the rules of metrics.jsonl.

def _csv_steps(run_dir):
    rows = list(csv.reader(open(run_dir / "metrics.csv", newline="")))
    assert rows[0] == ["step", "name", "value"]
    return [(int(step), name) for step, name, _ in rows[1:]]


def _board(run_dir):
    """TensorBoard's files in RUN/<run name>/, by relative path, with their bytes."""
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in (run_dir / run_dir.name).rglob("*")
            if p.is_file()}


def _tracker_state(run_dir, tracker):
    return (run_dir / "metrics.csv").read_bytes() if tracker == "csv" else _board(run_dir)


def _loss_events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return [(e.step, e.value) for e in EventAccumulator(str(run_dir / run_dir.name)).Reload().Scalars("loss")]


def _kill_at_checkpoint(monkeypatch, number):
    """The ``number``-th checkpoint (1-based) fails as a kill would stop it: nothing of it is published."""
    real, calls = checkpoint.save_checkpoint, {"n": 0}

    def save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == number:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_checkpoint", save)


@pytest.mark.parametrize("tracker", ["csv", "tensorboard"])
def test_a_force_run_stopped_before_its_first_checkpoint_leaves_the_old_runs_tracker_files(tracker, tmp_path,
                                                                                           monkeypatch):
    out = tmp_path / "run"
    assert run_here("pretrain", *SMALL, "--log-with", tracker, "--out", out).returncode == 0
    before = _tracker_state(out, tracker)
    with monkeypatch.context() as patch:
        _kill_at_checkpoint(patch, 1)
        stopped = run_here("pretrain", *SMALL, "--log-with", tracker, "--seed", "7", "--force", "--out", out)
    assert stopped.returncode == 130, stopped.stderr.decode()
    assert _tracker_state(out, tracker) == before  # not a byte, not a file of the new run's
    assert run_here("pretrain", *SMALL, "--log-with", tracker, "--seed", "7", "--force", "--out", out).returncode == 0
    expected = _numbers(out)
    if tracker == "csv":  # the new run's rows only
        assert sorted({step for step, _ in _csv_steps(out)}) == sorted(expected)
        assert len(_csv_steps(out)) == len(set(_csv_steps(out)))
    else:  # the old run's event files are gone, the new run's hold its numbers
        assert not set(before) & set(_board(out))
        assert _loss_events(out) == [(s, pytest.approx(v["loss"], rel=1e-6)) for s, v in sorted(expected.items())]


@pytest.mark.parametrize("tracker", ["csv", "tensorboard"])
def test_a_resume_after_a_kill_logs_each_step_once(tracker, tmp_path, monkeypatch):
    out = tmp_path / "run"
    flags = [*SMALL, "--log-with", tracker, "--log-every", "1", "--checkpoint-every", "11"]
    with monkeypatch.context() as patch:
        _kill_at_checkpoint(patch, 2)  # after step 22's line: steps 12…22 are logged past the checkpoint of 11
        assert run_here("pretrain", *flags, "--out", out).returncode == 130
    if tracker == "csv":
        assert max(step for step, _ in _csv_steps(out)) == 22
        with open(out / "metrics.csv", "ab") as f:
            f.write(b"23,lo")  # a row a kill cut short
    resumed = run_here("pretrain", *flags, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr.decode()
    expected = _numbers(out)
    assert sorted(expected) == list(range(1, 45))
    if tracker == "csv":
        logged = _csv_steps(out)
        assert len(logged) == len(set(logged)) and sorted({step for step, _ in logged}) == sorted(expected)
    else:
        assert [step for step, _ in _loss_events(out)] == sorted(expected)


@pytest.mark.parametrize("fail_after", [0, 30])
def test_tensorboard_on_a_full_disk_is_one_line_naming_its_folder(fail_after, tmp_path, monkeypatch):
    from tensorboard.summary.writer import record_writer

    real, calls = record_writer.RecordWriter.write, {"n": 0}

    def write(self, data):  # what a full disk does to the writer's thread
        calls["n"] += 1
        if calls["n"] > fail_after:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(record_writer.RecordWriter, "write", write)
    out = tmp_path / "run"
    result = run_here("pretrain", *SMALL, "--log-every", "1", "--log-with", "tensorboard", "--out", out)
    err = result.stderr.decode()
    (error,) = [line for line in err.splitlines() if line.startswith("dimctl: error:")]
    assert result.returncode == 1 and f"{out / out.name}: No space left on device" in error, err
    assert "Traceback" not in err and "Exception in thread" not in err


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("trackers") / "run"
    assert run_here("pretrain", *SMALL, "--epochs", "0", "--out", out).returncode == 0
    return out


@pytest.mark.parametrize("name", ["metrics.csv", "metrics.jsonl"])
@pytest.mark.parametrize("mode", ["new", "--resume", "--force"])
def test_a_run_file_that_is_a_link_is_refused_never_written_through(small_run, tmp_path, name, mode):
    target = tmp_path / "elsewhere.txt"
    target.write_text("someone else's file\n")
    out = tmp_path / "run"
    if mode == "new":
        out.mkdir()
    else:
        shutil.copytree(small_run, out)
    (out / name).unlink(missing_ok=True)
    (out / name).symlink_to(target)
    result = run_here("pretrain", *SMALL, "--log-with", "csv", "--out", out, *([mode] if mode != "new" else []))
    assert_one_line_error(result, 2)
    # A new run into a folder with metrics.jsonl is refused as a run folder before that.
    expected = f"{out / name} is a link; remove it"
    if (name, mode) == ("metrics.jsonl", "new"):
        expected = "already holds a run"
    assert expected in result.stderr.decode()
    assert target.read_text() == "someone else's file\n" and (out / name).is_symlink()


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_the_csv_tracker_checks_its_file_again_where_it_writes(tmp_path, kind):
    """Checked before training, and again at each write: a link or FIFO swapped in meanwhile is
    refused, never written through or waited on."""
    target = tmp_path / "elsewhere.txt"
    target.write_text("x\n")
    tracker = trackers.CSVTracker(tmp_path)
    tracker.log({"loss": 1.0}, step=1)
    tracker.path.unlink()
    if kind == "link":
        tracker.path.symlink_to(target)
    else:
        os.mkfifo(tracker.path)
    with pytest.raises(UsageError, match="is a link|is not a regular file"):
        tracker.log({"loss": 2.0}, step=2)
    assert target.read_text() == "x\n"


def test_the_csv_tracker_on_a_full_disk_names_its_file(tmp_path, monkeypatch):
    tracker, real_open, real_write, opened = trackers.CSVTracker(tmp_path), trackers._open_for_append, os.write, set()

    def open_for_append(path):
        opened.add(real_open(path))
        return max(opened)

    def write(fd, data):  # what a full disk does to that file's writes, and only to them
        if fd in opened:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(trackers, "_open_for_append", open_for_append)
    monkeypatch.setattr(os, "write", write)
    with pytest.raises(OSError, match="No space left on device") as raised:
        tracker.log({"loss": 1.0}, step=1)
    assert raised.value.filename == str(tmp_path / "metrics.csv")


def test_a_tensorboard_folder_that_is_a_link_is_refused(tmp_path):
    elsewhere, out = tmp_path / "elsewhere", tmp_path / "run"
    elsewhere.mkdir()
    out.mkdir()
    (out / "run").symlink_to(elsewhere)
    result = run_here("pretrain", *SMALL, "--log-with", "tensorboard", "--out", out)
    assert_one_line_error(result, 2)
    assert f"{out / 'run'} is a link; remove it" in result.stderr.decode() and not any(elsewhere.iterdir())

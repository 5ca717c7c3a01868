"""A run folder's earlier work survives what can go wrong: --force leaves the old run byte-identical
until the new run's first checkpoint; a full disk while checkpointing is one line naming the
checkpoint, earlier checkpoints intact; resume checks the checkpoint's own record of the settings
when config.json is gone (in-process: the CLI's exit codes and messages are what is tested)."""

import errno
import json
import os
import shutil
import subprocess

import pytest

from dimctl.cli.main import run
from dimctl.train import pretrain as pretraining
from dimctl.train.checkpoint import list_checkpoints

TINY = ["--mi-units", "16", "--width", "0.125", "--fc-dim", "32", "--batch-size", "128", "--log-every", "1",
        "--precision", "fp32"]


def _snapshot(folder):
    """Every file's bytes but the run lock's (it holds the PID of whoever last locked the folder)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".dimctl.lock"}


@pytest.fixture(scope="module")
def old_run(tmp_path_factory):
    """One epoch (11 steps) of DIM(L) on digits with its final checkpoint and published encoder."""
    out = tmp_path_factory.mktemp("old") / "run"
    assert run(["pretrain", *TINY, "--epochs", "1", "--checkpoint-every", "0", "--seed", "1", "--out", str(out)]) == 0
    return out


@pytest.fixture
def copied_run(old_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(old_run, out)
    return out


def _one_error(capsys):
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("dimctl: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_force_that_fails_before_its_first_checkpoint_leaves_the_old_run_byte_identical(copied_run, monkeypatch,
                                                                                      capsys):
    before = _snapshot(copied_run)
    # Refused while setting up (a dataset that is not there) …
    code = run(["pretrain", *TINY, "--force", "--dataset", "folder", "--data-root", str(copied_run / "nowhere"),
                "--out", str(copied_run)])
    assert code == 2 and "nowhere" in _one_error(capsys)
    assert _snapshot(copied_run) == before

    # … and stopped by a second Ctrl-C after four logged steps, with no checkpoint yet.
    real_step = pretraining.PretrainTrainer.step

    def interrupted_at_five(self, step):
        if step == 4:
            raise KeyboardInterrupt
        real_step(self, step)

    monkeypatch.setattr(pretraining.PretrainTrainer, "step", interrupted_at_five)
    code = run(["pretrain", *TINY, "--force", "--epochs", "2", "--checkpoint-every", "0", "--seed", "2",
                "--out", str(copied_run)])
    assert code == 130 and "interrupted" in _one_error(capsys)
    assert _snapshot(copied_run) == before
    # The old run is still the one that resumes.
    monkeypatch.setattr(pretraining.PretrainTrainer, "step", real_step)
    assert run(["pretrain", "--out", str(copied_run), "--resume"]) == 0
    assert json.loads((copied_run / "config.json").read_text())["config"]["seed"] == 1


def test_force_replaces_the_old_run_at_its_first_checkpoint(copied_run, capsys):
    old_encoder = (copied_run / "encoder.safetensors").read_bytes()
    assert run(["pretrain", *TINY, "--force", "--epochs", "1", "--checkpoint-every", "5", "--seed", "2",
                "--out", str(copied_run)]) == 0
    config = json.loads((copied_run / "config.json").read_text())
    assert config["config"]["seed"] == 2 and config["config"]["checkpoint_every"] == 5
    steps = [json.loads(line)["step"] for line in (copied_run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 12))  # the new run's lines alone, the held-back ones included
    assert [p.name for p in list_checkpoints(copied_run)] == ["step_00000005", "step_00000010", "step_00000011"]
    assert (copied_run / "encoder.safetensors").read_bytes() != old_encoder
    assert not list((copied_run / "checkpoints").glob(".*"))


def test_force_on_generate_train_removes_the_old_sample_grids_and_keeps_the_new(tmp_path):
    out = tmp_path / "g"
    flags = ["--width", "8", "--z-dim", "8", "--batch-size", "16", "--checkpoint-every", "0", "--log-every", "1"]
    assert run(["generate", "train", *flags, "--steps", "3", "--sample-every", "1", "--seed", "1",
                "--out", str(out)]) == 0
    old_grid = (out / "samples" / "step_00000002.png").read_bytes()
    assert run(["generate", "train", *flags, "--steps", "2", "--sample-every", "2", "--seed", "2", "--force",
                "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_00000002.png"]
    assert (out / "samples" / "step_00000002.png").read_bytes() != old_grid


def test_resume_checks_the_checkpoints_record_when_config_json_is_gone(copied_run, capsys):
    (copied_run / "config.json").unlink()
    for flag, value in (("--seed", "5"), ("--lr", "0.001")):
        assert run(["pretrain", "--out", str(copied_run), "--resume", flag, value]) == 2
        assert f"--resume: {flag[2:]} was" in _one_error(capsys)
    # Without flags it continues with the checkpoint's settings, not the defaults.
    assert run(["pretrain", "--out", str(copied_run), "--resume", "--epochs", "2"]) == 0
    config = json.loads((copied_run / "config.json").read_text())["config"]
    assert (config["mi_units"], config["seed"], config["epochs"]) == (16, 1, 2)


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs: a real full disk (root can mount one; CI runs as root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_earlier_checkpoints(old_run, small_disk, capsys):
    out = small_disk / "run"
    shutil.copytree(old_run, out)  # 3.7 MB, one 3.5 MB checkpoint
    before = _snapshot(out / "checkpoints")
    # Leave room for metrics lines, not for the next checkpoint.
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    with open(small_disk / "filler", "wb") as f:
        os.posix_fallocate(f.fileno(), 0, free - 1_500_000)
    code = run(["pretrain", "--out", str(out), "--resume", "--epochs", "2"])
    error = _one_error(capsys)
    assert code == 1 and os.strerror(errno.ENOSPC) in error and "checkpoints/step_00000022" in error, error
    assert _snapshot(out / "checkpoints") == before  # no partial folder beside it either
    (small_disk / "filler").unlink()
    assert run(["pretrain", "--out", str(out), "--resume", "--epochs", "2"]) == 0
    assert [p.name for p in list_checkpoints(out)] == ["step_00000011", "step_00000022"]

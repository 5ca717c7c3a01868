"""Damaged checkpoints are refused by name (exit 3, one line) rather than resumed with other
randomness: an RNG state deleted or truncated, a file added, and a crafted pickle in the
optimizer state even when the attacker rewrote the recorded digests too."""

import hashlib
import json
import pickle
import shutil

import pytest

from tests.cli.test_cli import assert_one_line_error, run_here

RUN = ["--dataset", "digits", "--mi-units", "8", "--width", "0.25", "--fc-dim", "16", "--batch-size", "64",
       "--checkpoint-every", "10"]


class Payload:
    def __reduce__(self):
        return (print, ("this ran",))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "run"
    assert run_here("pretrain", *RUN, "--epochs", "1", "--out", out).returncode == 0
    return out


def damaged(run, tmp_path, damage):
    copy = tmp_path / damage.__name__
    shutil.copytree(run, copy)
    (latest,) = sorted((copy / "checkpoints").iterdir())[-1:]
    damage(latest)
    return copy


def test_damaged_checkpoints_are_refused_by_name(run, tmp_path):
    def rng_deleted(ckpt):
        (ckpt / "random_states_0.pkl").unlink()

    def rng_truncated(ckpt):
        path = ckpt / "random_states_0.pkl"
        path.write_bytes(path.read_bytes()[:-10])

    def file_added(ckpt):
        (ckpt / "extra.bin").write_bytes(b"x")

    def crafted_pickle(ckpt):
        (ckpt / "optimizer.bin").write_bytes(pickle.dumps(Payload()))
        state = json.loads((ckpt / "train_state.json").read_text())
        state["files"]["optimizer.bin"] = hashlib.sha256((ckpt / "optimizer.bin").read_bytes()).hexdigest()
        (ckpt / "train_state.json").write_text(json.dumps(state))

    expected = {rng_deleted: "random_states_0.pkl is missing", rng_truncated: "random_states_0.pkl changed",
                file_added: "extra.bin was added", crafted_pickle: "is not a loadable checkpoint"}
    for damage, message in expected.items():
        copy = damaged(run, tmp_path, damage)
        result = run_here("pretrain", *RUN, "--epochs", "2", "--out", copy, "--resume")
        assert_one_line_error(result, 3)
        assert message in result.stderr.decode() and "this ran" not in result.stdout.decode(), damage.__name__
    intact = run_here("pretrain", *RUN, "--epochs", "2", "--out", damaged(run, tmp_path, lambda c: None), "--resume")
    assert intact.returncode == 0, intact.stderr.decode()


def test_fewer_epochs_than_the_checkpoint_reached_are_refused_before_anything_changes(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    result = run_here("pretrain", *RUN, "--epochs", "0", "--out", copy, "--resume")
    assert_one_line_error(result, 2)
    assert "is at step 22, past the 0 steps now asked for" in result.stderr.decode()
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before

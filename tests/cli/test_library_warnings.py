"""A failing command says so in one line: the library warnings that led up to the failure (numpy's
overflow on a float64 file, torch's on a crafted optimizer.bin) are not printed beside it (issue 40,
group 14). A command that succeeds still shows its warnings, at its end.

Real processes for the real warnings: in-process, pytest records warnings itself."""

import hashlib
import json
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

import dimctl.io.artifacts as artifacts
from dimctl.errors import ArtifactError
from tests.cli.helpers import ENV, assert_one_line_error, run_here

TINY = ("--dataset", "digits", "--mi-units", "8", "--width", "0.125", "--fc-dim", "32", "--epochs", "1",
        "--checkpoint-every", "11", "--precision", "fp32")


def dimctl(*args):
    return subprocess.run([sys.executable, "-m", "dimctl", *map(str, args)], capture_output=True, env=ENV,
                          timeout=300)


def overflowing_npz(path):
    """Another tool's float64 features, past float32's range (casting them warned "overflow")."""
    rng = np.random.default_rng(0)
    np.savez(path, train_embedding=rng.uniform(-1, 1, (40, 4)) * 1e308, test_embedding=rng.uniform(-1, 1, (10, 4)) * 1e308,
             train_labels=rng.integers(0, 2, 40), test_labels=rng.integers(0, 2, 10))
    return path


def crafted_optimizer(run):
    """The newest checkpoint's optimizer.bin replaced by a pickle torch's weights-only loader warns
    about (protocol 4) and then refuses, its digest updated so only the load can object."""
    checkpoint = sorted((run / "checkpoints").iterdir())[-1]
    (checkpoint / "optimizer.bin").write_bytes(pickle.dumps({"state": print}, protocol=4))
    state = json.loads((checkpoint / "train_state.json").read_text())
    state["files"]["optimizer.bin"] = hashlib.sha256((checkpoint / "optimizer.bin").read_bytes()).hexdigest()
    (checkpoint / "train_state.json").write_text(json.dumps(state))
    return run


@pytest.fixture(scope="module")
def run_with_checkpoint(tmp_path_factory):
    run = tmp_path_factory.mktemp("warn") / "run"
    assert run_here("pretrain", *TINY, "--out", run).returncode == 0
    return run


CASES = {
    "float64 overflow": (lambda tmp, run: ("probe", overflowing_npz(tmp / "o.npz")), 3, "NaN or infinite"),
    "crafted optimizer.bin": (lambda tmp, run: ("pretrain", *TINY, "--epochs", "2", "--resume", "--out",
                                                crafted_optimizer(run)), 3, "is not a loadable checkpoint"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_failure_is_one_line_without_the_warnings_before_it(case, tmp_path, run_with_checkpoint):
    make, code, message = CASES[case]
    result = dimctl(*make(tmp_path, run_with_checkpoint))
    assert_one_line_error(result, code)
    assert message in result.stderr.decode() and "Warning" not in result.stderr.decode()


@pytest.mark.parametrize("fails", [False, True])
def test_warnings_are_held_until_the_command_succeeds(fails, run_with_checkpoint, monkeypatch):
    real = artifacts.sha256_of

    def warning_sha256_of(path):
        warnings.warn("a library's warning", RuntimeWarning)
        if fails:
            raise ArtifactError(f"{path}: refused")
        return real(path)

    monkeypatch.setattr(artifacts, "sha256_of", warning_sha256_of)
    with warnings.catch_warnings():  # shown on stderr as outside pytest, not recorded by it
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, category, *_: print(f"{category.__name__}: {message}", file=sys.stderr)
        result = run_here("inspect", run_with_checkpoint / "encoder.safetensors")
    err = result.stderr.decode()
    if fails:
        assert_one_line_error(result, 3)
        assert "a library's warning" not in err
    else:
        assert result.returncode == 0 and err.strip() == "RuntimeWarning: a library's warning", err

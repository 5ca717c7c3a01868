"""`dimctl mi`, `ndm` and `mine` end to end on digits features, pipes and errors included."""

import json

import h5py
import numpy as np
import pytest

from dimctl.evaluate.known_mi import FAST_SUBSET, TASKS
from dimctl.io.features import seal_file

from tests.cli.helpers import DIMCTL, TINY_PRETRAIN, assert_one_line_error, run, run_here, sh


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("estimators")
    result = run("pretrain", *TINY_PRETRAIN, "--epochs", "0", "--out", root / "random")
    assert result.returncode == 0, result.stderr.decode()
    encoder = root / "random" / "encoder.safetensors"
    features = root / "f.h5"
    assert run("extract", encoder, "--layer", "fc,y", "-o", features).returncode == 0
    return encoder, features


def _json(result):
    assert result.returncode == 0, result.stderr.decode()
    (line,) = result.stdout.decode().splitlines()
    return json.loads(line)


def test_mi_between_y_and_labels(made):
    _, features = made
    row = _json(run("mi", features, "--layer", "y,labels", "--steps", "200"))
    assert row["command"] == "mi" and row["estimator"] == "smile" and row["unit"] == "nats"
    assert 0.5 < row["estimate"] < np.log(10) + 0.3  # labels carry at most log 10 nats
    assert row["stderr"] >= 0 and row["steps"] == 200 and len(row["encoder"]) == 64


def test_mi_selftest_reports_the_truth_and_fails_outside_the_bands():
    # 20 steps train no critic: every row is reported, the misses are named with their bands, exit 1.
    # (That every estimator lands in its band at the defaults: tests/evaluate/test_mi.py.)
    result = run_here("mi", "--selftest", "--estimator", "smile", "--steps", "20", "--batch-size", "32")
    rows = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [r["task"] for r in rows] == list(FAST_SUBSET) and {r["estimator"] for r in rows} == {"smile"}
    assert all(r["truth"] == round(TASKS[r["task"]].mi, 4) and r["marginals"] == "rank" for r in rows)
    assert all(r["passed"] == (r["band"][0] <= r["estimate"] <= r["band"][1]) for r in rows)
    assert all(r["steps_used"] == 20 for r in rows)
    # One error line and exit 1 (a slow machine may add progress's heartbeat lines before it).
    errors = [line for line in result.stderr.decode().splitlines() if line.startswith("dimctl: error:")]
    assert result.returncode == 1 and len(errors) == 1 and "Traceback" not in result.stderr.decode()
    missed = sum(not r["passed"] for r in rows)
    assert missed > 0 and f"{missed} of {len(rows)} estimates missed their known-MI band" in errors[0]
    assert "not in [" in errors[0]
    ksg = run_here("mi", "--selftest", "--estimator", "ksg")  # KSG trains nothing: in its bands, exit 0
    rows = [json.loads(line) for line in ksg.stdout.decode().splitlines()]
    assert ksg.returncode == 0 and [r["task"] for r in rows] == ["normal-1-1", "student-1-1-dof1"]
    assert all(r["passed"] for r in rows)


def test_mi_on_known_pairs_reports_how_the_critic_was_fitted_and_warns_on_stderr(tmp_path):
    # Independent 20-dimensional arrays, 300 training pairs: the critic learns its training pairs;
    # the JSON line and stderr say so, and the estimate is printed as measured.
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((600, 20)), rng.standard_normal((600, 20))
    np.savez(tmp_path / "p.npz", train_x=x[:300], test_x=x[300:], train_y=y[:300], test_y=y[300:],
             train_labels=np.zeros(300, int), test_labels=np.zeros(300, int))
    result = run_here("mi", tmp_path / "p.npz", "--layer", "x,y", "--estimator", "infonce", "--batch-size", "64",
                      "--steps", "400")
    row = _json(result)
    assert row["warning"] and row["marginals"] == "rank" and row["steps"] == 400
    assert row["train_estimate"] - row["estimate"] > 0.1 and row["best_step"] <= row["steps_used"] <= 400
    assert f"dimctl: mi: warning: {row['warning']}" in result.stderr.decode()
    ksg = _json(run_here("mi", tmp_path / "p.npz", "--layer", "x,y", "--estimator", "ksg", "--marginals", "standard"))
    assert ksg["estimator"] == "ksg" and ksg["steps"] == 0 and "steps_used" not in ksg
    for bad in (["--marginals", "log"], ["--validation", "1"], ["--patience", "0"]):
        assert_one_line_error(run_here("mi", tmp_path / "p.npz", "--layer", "x,y", *bad), 2)


def test_ndm_from_file_from_pipe_and_from_encoder(made, tmp_path):
    encoder, features = made
    from_file = _json(run_here("ndm", features, "--steps", "100"))
    assert from_file["command"] == "ndm" and from_file["layer"] == "y" and np.isfinite(from_file["ndm"])
    piped = sh(f"{' '.join(DIMCTL)} extract {encoder} --layer y | {' '.join(DIMCTL)} ndm - --steps 100", tmp_path)
    assert json.loads(piped.stdout)["ndm"] == pytest.approx(from_file["ndm"], abs=1e-6), piped.stderr.decode()
    from_encoder = _json(run_here("ndm", encoder, "--dataset", "digits", "--steps", "100"))
    assert from_encoder["ndm"] == pytest.approx(from_file["ndm"], abs=1e-3)


def test_mine_reports_and_writes_its_curve(made, tmp_path):
    encoder, _ = made
    row = _json(run_here("mine", encoder, "--steps", "100", "--out", tmp_path / "mine"))
    assert row["command"] == "mine" and np.isfinite(row["estimate"]) and row["layer"] == "y"
    curve = [json.loads(line) for line in (tmp_path / "mine" / "metrics.jsonl").read_text().splitlines()]
    assert [c["step"] for c in curve] == [100]


def test_estimator_errors(made, tmp_path):
    encoder, features = made
    assert_one_line_error(run("mi", features, "--layer", "conv,labels", "--steps", "10"), 2)  # layer not in the file
    assert_one_line_error(run_here("ndm", features, "--layer", "nope", "--steps", "10"), 2)
    assert_one_line_error(run_here("mi", features, "--estimator", "magic"), 2)
    bad = tmp_path / "nan.h5"
    bad.write_bytes(features.read_bytes())
    with h5py.File(bad, "r+") as f:
        f["train/y"][0, 0] = np.nan
    seal_file(bad)  # a whole file whose values are bad, not a damaged one
    for command in ("ndm", "mi"):
        result = run_here(command, bad, "--steps", "10")
        assert_one_line_error(result, 3)
        assert "NaN" in result.stderr.decode()
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(features.read_bytes()[:-100])
    assert_one_line_error(run_here("ndm", damaged, "--steps", "10"), 3)
    from tests.data.test_datasets import _write_fake_cifar10

    _write_fake_cifar10(tmp_path / "data")
    mismatch = run_here("mine", encoder, "--dataset", "cifar10", "--data-root", tmp_path / "data", "--steps", "10")
    assert_one_line_error(mismatch, 3)
    assert_one_line_error(run_here("ndm", encoder, "--dataset", "cifar10", "--data-root", tmp_path / "data"), 3)

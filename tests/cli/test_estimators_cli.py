"""`dimctl mi`, `ndm` and `mine` end to end on digits features, pipes and errors included."""

import json

import h5py
import numpy as np
import pytest

from dimctl.io.features import seal_file

from tests.cli.test_cli import DIMCTL, TINY, assert_one_line_error, run, run_here, sh


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("estimators")
    result = run("pretrain", *TINY, "--epochs", "0", "--out", root / "random")
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


def test_mi_selftest_reports_truth_for_every_estimator_and_fails_outside_the_bands():
    # 20 steps train no critic: every row is reported, the misses are named with their bands, exit 1.
    # (That the estimators land in their bands at the defaults: tests/evaluate/test_mi.py.)
    result = run("mi", "--selftest", "--steps", "20", "--batch-size", "32")
    rows = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert {r["estimator"] for r in rows} == {"jsd", "infonce", "dv", "nwj", "smile"}
    assert {(r["dim"], r["truth"]) for r in rows} == {(2, 0.5), (5, 2.0), (10, 4.0)}
    assert all(r["passed"] == (r["band"][0] <= r["estimate"] <= r["band"][1]) for r in rows)
    assert_one_line_error(result, 1)
    missed = sum(not r["passed"] for r in rows)
    assert missed > 0 and f"{missed} of 15 estimates missed their known-MI band" in result.stderr.decode()
    assert "not in [" in result.stderr.decode()


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

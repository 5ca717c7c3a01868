"""Threads and progress as a user sees them: --threads and DIMCTL_THREADS applied and recorded,
one thread beside a busy core, one per job under make -jN, and a non-terminal stderr that hears
from a long probe at least every DIMCTL_PROGRESS_SECONDS, solver calls included."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.cli.helpers import DIMCTL, assert_one_line_error, run_here

AUTO = {k: v for k, v in os.environ.items() if k not in ("DIMCTL_THREADS", "OMP_NUM_THREADS", "MAKEFLAGS")}


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    """10 noisy classes in 256 dimensions, as an .npz any tool could write: libsvm fits them in one
    call of a few seconds."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 256))

    def split(n):
        y = rng.integers(0, 10, n)
        return (0.1 * centres[y] + rng.normal(size=(n, 256))).astype(np.float32), y

    (train_x, train_y), (test_x, test_y) = split(4000), split(500)
    path = tmp_path_factory.mktemp("threads") / "z.npz"
    np.savez(path, train_z=train_x, train_labels=train_y, test_z=test_x, test_labels=test_y)
    return path


def test_threads_flag_is_applied_and_recorded(tmp_path):
    out = tmp_path / "run"
    result = run_here("--threads", "1", "pretrain", "--dataset", "digits", "--mi-units", "16", "--width", "0.25",
                      "--fc-dim", "32", "--epochs", "1", "--checkpoint-every", "0", "--out", out)
    assert result.returncode == 0, result.stderr.decode()
    record = json.loads((out / "config.json").read_text())
    assert record["threads"] == 1 and record["threads_reason"] == "--threads" and record["usable_cores"] >= 1


def test_bad_thread_counts_are_usage_errors(features):
    assert_one_line_error(run_here("--threads", "0", "probe", features), 2)
    assert_one_line_error(run_here("probe", features, env={"DIMCTL_THREADS": "many"}), 2)


def test_one_thread_per_job_under_make_j2(features, monkeypatch):
    from dimctl import threads

    applied = []
    monkeypatch.setattr(threads, "apply", applied.append)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = {"MAKEFLAGS": " -j2 --jobserver-auth=3,4", "DIMCTL_THREADS": "auto"}
    result = run_here("probe", features, "--classifier", "knn", env=env)
    assert result.returncode == 0, result.stderr.decode()
    cores = threads.usable_cores()
    assert [(c.threads, c.reason) for c in applied] == [(max(1, cores // 2), "make -j2")]


def test_beside_a_busy_core_a_long_probe_takes_one_thread_and_reports_every_interval(features):
    """A real process with stderr on a pipe: its first line names the threads, then no silence
    longer than the interval (with slack for a loaded machine), through libsvm's single long
    call and the mlp's epochs alike."""
    if len(os.sched_getaffinity(0)) != 2:
        pytest.skip("the busy-core case is set up for a 2-core machine")
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        process = subprocess.Popen([*DIMCTL, "probe", str(features), "--classifier", "svm,mlp", "--mlp-epochs", "20"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**AUTO, "DIMCTL_PROGRESS_SECONDS": "0.5"})
        arrivals = [(time.monotonic(), line.rstrip("\n")) for line in process.stderr]
        process.wait(timeout=300)
    finally:
        hog.kill()
        hog.wait()
    assert process.returncode == 0, "\n".join(line for _, line in arrivals)
    lines = [line for _, line in arrivals]
    assert lines[0].startswith("dimctl: probe: 1 thread (1 busy elsewhere"), lines
    gaps = [b - a for (a, _), (b, _) in zip(arrivals, arrivals[1:])]
    assert max(gaps) < 3, (gaps, lines)
    assert any("z with svm" in line and "elapsed" in line for line in lines), lines
    assert any("· mlp" in line and " epoch elapsed " in line and " eta " in line for line in lines), lines
    assert "z      svm" in process.stdout.read()


def test_an_interrupted_probe_keeps_the_lines_it_completed(features, tmp_path, monkeypatch):
    from dimctl.evaluate import probes

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setitem(probes.CLASSIFIERS, "mlp", interrupted)  # Ctrl-C while the second probe runs
    results = tmp_path / "results"
    result = run_here("probe", features, "--classifier", "knn,mlp", "--json", "--results-dir", results)
    assert result.returncode == 130
    printed = [json.loads(line) for line in result.stdout.decode().splitlines()]
    kept = [json.loads(line) for f in results.glob("probe-*.jsonl") for line in f.read_text().splitlines()]
    assert [r["classifier"] for r in printed] == ["knn"] and kept == printed

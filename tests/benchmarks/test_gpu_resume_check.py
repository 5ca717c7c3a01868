"""benchmarks/gpu_resume_check.py runs on a lent GPU with minutes to spare, so its whole path (three
real `dimctl pretrain` processes, one killed by SIGKILL and resumed) is checked here on the CPU."""

import csv

import pytest
import torch

from tests.benchmarks import load_benchmark


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU path")
def test_smoke_kills_resumes_and_compares_on_the_cpu(capsys, tmp_path):
    load_benchmark("gpu_resume_check").main(["--smoke", "--precisions", "fp32", "--csv", str(tmp_path / "r.csv"),
                                             "--commit", "abc1234"])
    out = capsys.readouterr().out
    (row,) = csv.DictReader(open(tmp_path / "r.csv"))
    # On the CPU, what the suite proves must come out here too: both comparisons bit-identical.
    assert row["repeat_identical"] == row["resume_identical"] == "True", out
    assert 6 <= int(row["killed_after_step"]) < int(row["steps"]) and row["commit"] == "abc1234"
    assert "killed after step" in out

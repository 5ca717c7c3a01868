"""benchmarks/gpu_check.py is run on a lent GPU with minutes to spare, so its whole path is checked
here first, on the CPU, with --smoke (batch 8, eager): every setting trains through dimctl's loop,
and the table, the projection and the loop/bare line come out."""

import csv
import re

import pytest
import torch

from tests.benchmarks import load_benchmark


def gpu_check():
    return load_benchmark("gpu_check")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU path")
def test_smoke_runs_every_setting_through_the_loop_on_the_cpu(capsys, tmp_path):
    gpu_check().main(["--smoke", "--images", "48", "--warmup", "0", "--csv", str(tmp_path / "gpu.csv"),
                      "--commit", "abc1234"])
    out = capsys.readouterr().out
    assert "failed" not in out, out
    assert out.startswith("device: cpu (smoke)")
    rows = re.findall(r"^\s+8\s+(fp32|bf16)\s+False\s+(\d+)\s+(\d+\.\d+) h", out, re.MULTILINE)
    assert [precision for precision, _, _ in rows] == ["fp32", "bf16"], out
    for _, rate, hours in rows:  # 1000 CIFAR-10 epochs at the measured rate, printed rounded
        rate, hours = int(rate), float(hours)
        assert rate > 0 and 50e6 / (rate + 0.5) / 3600 - 0.005 <= hours <= 50e6 / max(rate - 0.5, 1e-9) / 3600 + 0.005
    assert re.search(r"^loop/bare, batch 8, fp32 eager: \d+ / \d+ = \d\.\d{3}$", out, re.MULTILINE), out
    table = list(csv.DictReader(open(tmp_path / "gpu.csv")))  # the same rows, kept as data
    assert [r["precision"] for r in table] == [p for p, _, _ in rows]
    # The CSV keeps one decimal, the table none.
    assert all(abs(float(r["images_per_s"]) - int(printed)) <= 0.55 for r, (_, printed, _) in zip(table, rows))
    assert {r["commit"] for r in table} == {"abc1234"} and table[0]["device"] == "cpu (smoke)"
    assert float(table[0]["loop_over_bare"]) > 0 and table[1]["loop_over_bare"] == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU path")
def test_without_a_gpu_it_refuses_unless_smoke():
    with pytest.raises(SystemExit, match="no CUDA device here"):
        gpu_check().main([])


def test_the_docs_gpu_tables_are_rendered_from_the_results():
    """docs/devices.md's GPU tables are exactly what gpu_check.py --render makes of results/."""
    module = gpu_check()
    assert module.render() == module.DOC.read_text()

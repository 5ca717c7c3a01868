"""benchmarks/profile_step.py splits a real training step into matrix products and the rest."""

import csv

from tests.benchmarks import load_benchmark


def test_the_step_splits_into_products_and_the_rest_and_is_kept_as_data(tmp_path, capsys):
    out = tmp_path / "profile.csv"
    rows = load_benchmark("profile_step").main(["--mi-units", "32", "--batch-size", "8", "--precisions", "fp32",
                                                "--steps", "1", "--top", "0", "--csv", str(out)])
    (row,) = rows
    assert row["matmul_ms"] > 0 and row["other_ms"] > 0 and 0 < row["matmul_share"] < 1
    assert "matrix products" in capsys.readouterr().out
    (kept,) = list(csv.DictReader(open(out)))
    assert kept["precision"] == "fp32" and kept["machine"] and kept["torch"] and kept["commit"]

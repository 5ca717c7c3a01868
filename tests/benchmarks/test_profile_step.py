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


def test_the_docs_step_split_is_rendered_from_the_results():
    """docs/benchmarks.md's step table is exactly what profile_step.py --render makes of results/profile_step.csv."""
    module = load_benchmark("profile_step")
    assert module.render() == module.DOC.read_text()


def test_the_docs_throughput_table_is_rendered_from_the_results():
    module = load_benchmark("pretrain_throughput")
    assert module.render() == module.DOC.read_text()


def test_the_render_takes_medians_per_commit_and_compares_with_the_first(tmp_path):
    fields = load_benchmark("profile_step").FIELDS
    rows = [dict(zip(fields, ["bf16", "2048", "64", "False", ms, "1", "1", other, "0.5", "Xeon, 2 cores", "amx_bf16",
                              "2.14.1", commit, "2026-12-05"])) for commit, ms, other in
            [("old", "10", "8"), ("new", "6", "4"), ("old", "12", "10"), ("new", "7", "5"), ("old", "11", "9")]]
    results, doc = tmp_path / "r.csv", tmp_path / "doc.md"
    with open(results, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    module = load_benchmark("profile_step")
    doc.write_text(f"before\n{module.BEGIN}\nstale\n{module.END}\nafter\n")
    text = module.render(results, doc)
    assert "stale" not in text and text.startswith("before\n") and text.endswith("\nafter\n")
    assert "| bf16 | 2048 | old | 3 | 11.0 | 1.0 | 9.0 | 1.00 |" in text
    assert "| bf16 | 2048 | new | 2 | 6.5 | 1.0 | 4.5 | 0.50 |" in text

"""benchmarks/profile_step.py splits a real training step into matrix products and the rest."""

import csv

from tests.benchmarks import load_benchmark


def test_the_step_splits_into_products_and_the_rest_and_is_kept_as_data(tmp_path, capsys):
    out = tmp_path / "profile.csv"
    rows = load_benchmark("profile_step").main(["--mi-units", "32", "--batch-size", "8", "--precisions", "fp32",
                                                "--steps", "1", "--top", "0", "--by-shape", "5", "--csv", str(out)])
    (row,) = rows
    assert row["matmul_ms"] > 0 and row["other_ms"] > 0 and 0 < row["matmul_share"] < 1
    printed = capsys.readouterr().out
    assert "matrix products" in printed
    # --by-shape: five operators that are not products, each with the shapes it ran on.
    listed = printed.split("not matrix products, by input shape")[1].splitlines()[1:6]
    assert len(listed) == 5 and all(float(line.split()[0]) >= 0 and float(line.split()[1]) > 0 for line in listed)
    assert not {line.split()[2] for line in listed} & set(load_benchmark("profile_step").MATMUL_OPS)
    (kept,) = list(csv.DictReader(open(out)))
    assert kept["precision"] == "fp32" and kept["machine"] and kept["torch"] and kept["commit"]


def test_the_docs_step_split_is_rendered_from_the_results():
    """docs/benchmarks.md's step table is exactly what profile_step.py --render makes of results/profile_step.csv."""
    module = load_benchmark("profile_step")
    assert module.render() == module.DOC.read_text()


def test_the_docs_throughput_table_is_rendered_from_the_results():
    module = load_benchmark("pretrain_throughput")
    assert module.render() == module.DOC.read_text()


def test_the_render_takes_medians_per_commit_and_compares_with_the_first_round_by_round(tmp_path):
    fields = load_benchmark("profile_step").FIELDS
    rows = [dict(zip(fields, ["bf16", "2048", "64", "False", ms, "1", "1", other, "0.5", "Xeon, 2 cores", "amx_bf16",
                              "2.14.1", commit, day])) for commit, ms, other, day in
            [("old", "10", "8", "2026-12-05"), ("new", "6", "4", "2026-12-05"), ("old", "12", "20", "2026-12-05"),
             ("new", "7", "5", "2026-12-05"), ("old", "11", "9", "2026-12-05"),
             ("old", "30", "30", "2026-12-06"), ("newer", "20", "15", "2026-12-06")]]
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
    # Each run against the old run just before it: 4/8 and 5/20, median 0.375 (not 4.5/9 of the medians).
    assert "| bf16 | 2048 | new | 2 | 6.5 | 1.0 | 4.5 | 0.38 |" in text
    # Another day is a table of its own: its runs are not pooled with the first day's.
    assert text.count("| precision | units |") == 2 and "| bf16 | 2048 | newer | 1 | 20.0 | 1.0 | 15.0 | 0.50 |" in text


def test_the_throughput_render_shows_compiled_over_eager_where_a_run_measured_it(tmp_path):
    module = load_benchmark("pretrain_throughput")
    base = {f: "1" for f in module.FIELDS} | {"machine": "Xeon, 2 cores", "cpu_flags": "amx_bf16", "torch": "2.14.1",
                                              "allocator": "glibc", "commit": "abc", "precision": "bf16",
                                              "batch_size": "64", "mi_units": "2048", "date": "2026-12-05"}
    rows = [base | {"steady_eager_img_s": "400", "steady_compiled_img_s": "440"},
            base | {"steady_eager_img_s": "", "steady_compiled_img_s": ""},  # a run without --compile-rows
            base | {"mi_units": "256", "steady_eager_img_s": "", "steady_compiled_img_s": ""}]
    results, doc = tmp_path / "r.csv", tmp_path / "doc.md"
    with open(results, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=module.FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    doc.write_text(f"before\n{module.BEGIN}\n{module.END}\nafter\n")
    table = [line for line in module.render(results, doc).splitlines() if line.startswith("| abc")]
    assert table[0].endswith("| 1.10 |") and table[1].endswith("|  |")  # the median of the runs that measured it

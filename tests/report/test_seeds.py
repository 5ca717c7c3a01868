"""Seed aggregation: runs that differ only in --seed share one row of the results tables, the
mean ± standard deviation of their results over the seeds; every run keeps its own section."""

import json
from statistics import mean, stdev

import pytest

from dimctl.report.document import ReportOptions, build
from dimctl.report.inputs import collect
from tests.report.tiny import TINY, dimctl, lines


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """Three random encoders that differ only in --seed, and one that also differs in --mi-units;
    each extracted and probed (logreg on y, deterministic)."""
    root = tmp_path_factory.mktemp("seeds")
    accuracy = {}
    for name, flags in (("s0", ["--seed", "0"]), ("s1", ["--seed", "1"]), ("s2", ["--seed", "2"]),
                        ("wide", ["--seed", "0", "--mi-units", "32"])):
        # A bookkeeping setting that differs (log-every) does not split the group.
        extra = ["--log-every", "7"] if name == "s1" else []
        dimctl("pretrain", *TINY, "--epochs", "0", *flags, *extra, "--out", root / name)
        dimctl("extract", root / name / "encoder.safetensors", "--layer", "y", "-o", root / f"{name}.h5")
        (row,) = lines(dimctl("probe", root / f"{name}.h5", "--classifier", "logreg", "--json"))
        accuracy[name] = row["accuracy"]
        (root / f"{name}.probe.jsonl").write_text(json.dumps(row) + "\n")
    return root, accuracy


def _table1(document):
    return next(t for t in document.tables if t.title.startswith("Table 1"))


def test_runs_that_differ_only_in_seed_are_one_row_with_mean_and_std(seeded):
    root, accuracy = seeded
    document = build(collect([root]))
    table = _table1(document)
    labels = table.column("run")
    assert len(labels) == 2
    (pooled,) = [label for label in labels if "seeds" in label]
    assert pooled.endswith("(seeds 0, 1, 2)")
    values = [100 * accuracy[name] for name in ("s0", "s1", "s2")]
    assert len(set(values)) > 1  # three different encoders, three different accuracies
    assert table.cell(pooled, "y logreg") == f"{mean(values):.2f} ± {stdev(values):.2f} (n=3)"
    assert table.cell("wide", "y logreg") == f"{100 * accuracy['wide']:.2f}"  # another setting: its own row
    assert any("differ only in --seed" in note for note in table.notes)
    # The Runs section still describes every run.
    headings = [b.text for b in document.blocks if type(b).__name__ == "Heading"]
    assert {"s0", "s1", "s2", "wide"} <= set(headings)


def test_per_seed_keeps_a_row_per_run(seeded):
    root, accuracy = seeded
    table = _table1(build(collect([root]), ReportOptions(pool_seeds=False)))
    assert sorted(table.column("run")) == ["s0", "s1", "s2", "wide"]
    assert table.cell("s1", "y logreg") == f"{100 * accuracy['s1']:.2f}"


def test_a_pooled_cell_spreads_over_pretrain_seeds_never_probe_seeds(seeded, tmp_path):
    """The mlp probed with --seed 0 on every pretrain seed and also with --seed 1 on seed 0: the pooled
    row's cell is the spread over the three encoders; the probe seed 1 result stands alone."""
    root, _ = seeded
    mlp = ["--classifier", "mlp", "--mlp-epochs", "2", "--json"]
    first = {name: lines(dimctl("probe", root / f"{name}.h5", *mlp))[0] for name in ("s0", "s1", "s2")}
    again = lines(dimctl("probe", root / "s0.h5", *mlp, "--seed", "1"))[0]
    rows = [*first.values(), again]
    (tmp_path / "mlp.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = _table1(build(collect([root / n for n in ("s0", "s1", "s2")] + [tmp_path / "mlp.jsonl"])))
    (pooled,) = table.column("run")
    values = [100 * first[name]["accuracy"] for name in ("s0", "s1", "s2")]
    assert table.cell(pooled, "y mlp epochs=2") == f"{mean(values):.2f} ± {stdev(values):.2f} (n=3)"
    assert table.cell(pooled, "y mlp epochs=2 probe-seed=1") == f"{100 * again['accuracy']:.2f}"
    assert again["accuracy"] != first["s0"]["accuracy"]  # the probe seed matters: pooled, it would widen the spread

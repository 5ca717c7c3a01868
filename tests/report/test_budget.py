"""The budget view: runs that differ only in --epochs (and --seed) form one curve of accuracy against
epochs, each point the mean ± standard deviation over seeds with the runs' wall time; untrained
encoders are the floor. Real tiny runs, one extended from a copy of a shorter one as
examples/Makefile's budget target does."""

import json
import shutil
from statistics import mean, stdev

import pytest

from dimctl.report.budget import curve_series, find_budgets
from dimctl.report.document import build
from dimctl.report.inputs import collect
from dimctl.report.measures import group, pool_seeds
from tests.report.tiny import TINY, dimctl, lines


@pytest.fixture(scope="module")
def budget_runs(tmp_path_factory):
    """DIM(L) JSD at 1 and 2 epochs and untrained, seeds 0 and 1; y probed by logreg (deterministic)."""
    root = tmp_path_factory.mktemp("budget")
    flags = [f for f in TINY if f not in ("--epochs", "1")]
    for seed in (0, 1):
        dimctl("pretrain", *flags, "--epochs", "1", "--seed", seed, "--out", root / f"e1-s{seed}")
        dimctl("pretrain", *flags, "--epochs", "0", "--seed", seed, "--out", root / f"e0-s{seed}")
    shutil.copytree(root / "e1-s0", root / "e2-s0")  # extended, as the Makefile does …
    dimctl("pretrain", "--out", root / "e2-s0", "--resume", "--epochs", "2")
    dimctl("pretrain", *flags, "--epochs", "2", "--seed", "1", "--out", root / "e2-s1")  # … or afresh
    accuracy = {}
    for name in ("e0-s0", "e0-s1", "e1-s0", "e1-s1", "e2-s0", "e2-s1"):
        dimctl("extract", root / name / "encoder.safetensors", "--layer", "y", "-o", root / f"{name}.h5")
        (row,) = lines(dimctl("probe", root / f"{name}.h5", "--classifier", "logreg", "--json"))
        (root / f"{name}.probe.jsonl").write_text(json.dumps(row) + "\n")
        accuracy[name] = 100 * row["accuracy"]
    return root, accuracy


@pytest.fixture(scope="module")
def report(budget_runs):
    """The report of those runs, and the budget found among them."""
    root, _ = budget_runs
    (budget,) = find_budgets(pool_seeds(group(collect([root])).models))
    return build(collect([root])), budget


def _elapsed(run):
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["elapsed_s"]


def test_epochs_form_one_curve_of_seed_means_over_an_untrained_floor(budget_runs, report):
    _, accuracy = budget_runs
    document, budget = report
    assert budget.dataset == "digits" and budget.probes == [("y", "logreg")]
    (curve,) = budget.curves
    assert curve.label == "DIM(L) JSD" and sorted(curve.points) == [1, 2]
    assert [m.seeds for m in budget.floor] == [[0, 1]]

    table = next(t for t in document.tables if t.title.startswith("Budget"))
    assert [r[:3] for r in table.rows] == [["random init", "0", "0, 1"], ["DIM(L) JSD", "1", "0, 1"],
                                           ["DIM(L) JSD", "2", "0, 1"]]
    for row, epochs in zip(table.rows, (0, 1, 2)):
        values = [accuracy[f"e{epochs}-s0"], accuracy[f"e{epochs}-s1"]]
        assert row[table.header.index("y logreg")] == f"{mean(values):.2f} ± {stdev(values):.2f} (n=2)"
    series, floor = curve_series(budget, "y", "logreg")
    assert [(e, round(m, 9)) for e, m, _ in series["DIM(L) JSD"]] == [
        (e, round(mean([accuracy[f"e{e}-s0"], accuracy[f"e{e}-s1"]]), 9)) for e in (1, 2)]
    assert sorted(floor) == sorted([accuracy["e0-s0"], accuracy["e0-s1"]])
    assert any(p.name == "budget-digits" and p.png.startswith(b"\x89PNG") for p in document.pictures)


def test_wall_time_counts_a_run_extended_by_resume_from_its_start(budget_runs, report):
    root, _ = budget_runs
    document, budget = report
    table = next(t for t in document.tables if t.title.startswith("Budget"))
    two = next(r for r in table.rows if r[1] == "2")[table.header.index("wall time (min)")]
    minutes = [_elapsed(root / "e2-s0") / 60, _elapsed(root / "e2-s1") / 60]
    assert two == f"{mean(minutes):.1f} ± {stdev(minutes):.1f} (n=2)"
    # The extended run's clock ran on from its 1-epoch copy.
    assert _elapsed(root / "e2-s0") > _elapsed(root / "e1-s0")
    assert budget.curves[0].points[2].seeds == [0, 1]


def test_an_objective_at_one_budget_is_a_point_beside_the_curves(budget_runs, tmp_path):
    # An objective too slow to train longer (the AE beside DIM on a CPU) still belongs in the view.
    root, _ = budget_runs
    flags = [f for f in TINY if f not in ("--epochs", "1")]
    dimctl("pretrain", *flags, "--estimator", "infonce", "--epochs", "1", "--seed", "0", "--out", tmp_path / "nce")
    dimctl("extract", tmp_path / "nce" / "encoder.safetensors", "--layer", "y", "-o", tmp_path / "nce.h5")
    (tmp_path / "nce.probe.jsonl").write_text(dimctl("probe", tmp_path / "nce.h5", "--classifier", "logreg", "--json"))
    (budget,) = find_budgets(pool_seeds(group(collect([root, tmp_path])).models))
    assert {c.label: sorted(c.points) for c in budget.curves} == {"DIM(L) JSD": [1, 2], "DIM(L) infoNCE": [1]}
    series, _ = curve_series(budget, "y", "logreg")
    assert len(series["DIM(L) infoNCE"]) == 1
    # One budget for every objective is Table 1's business: no budget view.
    one_budget = [root / n for n in ("e0-s0", "e1-s0", "e0-s0.probe.jsonl", "e1-s0.probe.jsonl")] + [tmp_path]
    assert find_budgets(pool_seeds(group(collect(one_budget)).models)) == []

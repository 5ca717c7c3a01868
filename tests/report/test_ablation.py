"""α/β/γ sweeps (App. A.5): found among real runs, their grids hold the runs' measurements."""

import json
import shutil

import numpy as np

from dimctl.report.ablation import find_sweeps
from dimctl.report.inputs import collect
from dimctl.report.measures import group
from tests.report.tiny import dimctl, lines


def test_sweep_grid_holds_each_runs_probe_accuracy(sweep):
    root, rows = sweep
    models = group(collect([root])).models
    (found,) = find_sweeps(models)
    assert (found.y, found.x, found.fixed) == ("alpha", "beta", {"gamma": 0.1})
    assert found.ys == [0.0, 1.0] and found.xs == [0.0, 1.0]
    assert found.runs == {(1.0, 0.0): "a0-b1", (0.0, 1.0): "a1-b0", (1.0, 1.0): "a1-b1"}
    grid = found.metrics["accuracy y svm (%)"]
    by_run = {r["features"].rsplit("/", 1)[-1].removesuffix(".h5"): 100 * r["accuracy"] for r in rows}
    assert grid[0, 1] == by_run["a0-b1"] and grid[1, 0] == by_run["a1-b0"] and grid[1, 1] == by_run["a1-b1"]
    assert np.isnan(grid[0, 0])  # α = β = 0 has no run
    assert "estimator jsd" in found.title and "γ=0.1" in found.title


def test_runs_that_differ_in_more_than_the_weights_are_not_a_sweep(sweep, tmp_path):
    root, _ = sweep
    # Two of the three runs, and a copy of the third that claims other epochs: no three comparable settings.
    for name in ("a0-b1", "a1-b0"):
        shutil.copytree(root / name, tmp_path / name, ignore=shutil.ignore_patterns("checkpoints"))
    shutil.copytree(root / "a1-b1", tmp_path / "a1-b1", ignore=shutil.ignore_patterns("checkpoints"))
    config = json.loads((tmp_path / "a1-b1" / "config.json").read_text())
    config["config"]["epochs"] = 2
    (tmp_path / "a1-b1" / "config.json").write_text(json.dumps(config))
    assert find_sweeps(group(collect([tmp_path, root / "probe.jsonl"])).models) == []
    # Bookkeeping settings do not split a sweep.
    config["config"].update(epochs=1, log_every=99, data_root="/elsewhere")
    (tmp_path / "a1-b1" / "config.json").write_text(json.dumps(config))
    assert len(find_sweeps(group(collect([tmp_path, root / "probe.jsonl"])).models)) == 1


def test_a_third_varying_weight_splits_the_grid(made, sweep):
    root, _ = sweep
    # DIM(G) (α=1, β=0, γ=1) beside the γ = 0.1 grid: one grid at γ = 0.1; γ = 1 has one run, no grid.
    (found,) = find_sweeps(group(collect([root, made.runs["dim-g"]])).models)
    assert found.fixed == {"gamma": 0.1} and len(found.runs) == 3


def test_heat_maps_of_one_unit_share_one_colour_scale(sweep, tmp_path):
    """Accuracies of two classifiers on one scale and one colour bar (a per-panel scale makes 98.6
    against 98.9 span every colour); NDM, another unit, on its own."""
    from dimctl.report.plots import sweep_heatmap_figure

    root, _ = sweep
    rows = []
    for name in ("a0-b1", "a1-b0", "a1-b1"):
        rows += lines(dimctl("probe", root / f"{name}.h5", "--classifier", "logreg", "--json"))
        rows += lines(dimctl("ndm", root / f"{name}.h5", "--steps", "10"))
    (tmp_path / "more.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (found,) = find_sweeps(group(collect([root, tmp_path / "more.jsonl"])).models)
    accuracy = ["accuracy y svm (%)", "accuracy y logreg (%)"]
    assert set(accuracy) | {"NDM"} <= set(found.metrics)

    fig = sweep_heatmap_figure(found)
    axes = [ax for part in fig.subfigs for ax in part.axes]
    norms = {ax.get_title(): (ax.images[0].norm.vmin, ax.images[0].norm.vmax) for ax in axes if ax.images}
    both = np.concatenate([found.metrics[name][np.isfinite(found.metrics[name])] for name in accuracy])
    assert norms[accuracy[0]] == norms[accuracy[1]] == (both.min(), both.max())
    ndm = found.metrics["NDM"][np.isfinite(found.metrics["NDM"])]
    assert norms["NDM"] == (ndm.min(), ndm.max())
    bars = [ax for ax in axes if not ax.images]
    assert len(bars) == 2  # one colour bar per unit, not one per panel

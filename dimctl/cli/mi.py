"""`dimctl mi`: mutual information between two arrays of a feature file, with a trained critic."""

from typing import Annotated

import typer

from dimctl.cli.common import Pace, ResultsDirOpt, Tenths, check_results_dir, emit, note, save_results, result_line
from dimctl.cli.progress import announce, interval, seconds_since_last_line
from dimctl.cli.deprecations import warn
from dimctl.cli.sources import feature_layer, open_features
from dimctl.errors import DimctlError, UsageError
from dimctl.evaluate.heldout import standardise
from dimctl.evaluate.mi import MIConfig, correlated_gaussians, estimate_mi, selftest_band
from dimctl.objectives.bounds import ESTIMATORS

# (dimension, true MI in nats) of the self-test's correlated Gaussians.
SELFTEST_CASES = ((2, 0.5), (5, 2.0), (10, 4.0))


def mi(
    features: Annotated[str | None, typer.Argument(help="HDF5 feature file from `dimctl extract`, or - for stdin (another tool's HDF5, .npz or VISSL folder: read unverified).")] = None,
    layer: Annotated[str, typer.Option(help="The two arrays X,Y: layers of the file (conv, fc, y, …) or `labels` (one-hot).")] = "y,labels",
    estimator: Annotated[str, typer.Option(help=f"Bound: {', '.join(ESTIMATORS)}.")] = "smile",
    steps: Annotated[int, typer.Option(help="Critic training steps.")] = 2000,
    batch_size: Annotated[int, typer.Option(help="Pairs per step; infoNCE cannot exceed log(batch size).")] = 128,
    lr: Annotated[float, typer.Option(help="Adam learning rate of the critic.")] = 5e-4,
    seed: Annotated[int, typer.Option(help="Seed of the critic and the batches.")] = 0,
    selftest: Annotated[bool, typer.Option("--selftest", help="Estimate the MI of correlated Gaussians whose MI is known, with every estimator.")] = False,
    results_dir: ResultsDirOpt = None,
    old_x: Annotated[str | None, typer.Option("--x", hidden=True)] = None,  # deprecated: --layer X,Y
    old_y: Annotated[str | None, typer.Option("--y", hidden=True)] = None,
):
    """Estimate I(X; Y) in nats between two arrays of a feature file; one JSON line.

    A separable critic (two MLPs, dot product) is trained on the train split and the bound is
    evaluated on the test split. dv uses MINE's moving-average gradient; jsd reports the DV bound
    of its critic; smile is DV with clipped negatives (lower variance). The JSON line holds the
    estimate, its standard error over the evaluation batches, the estimator and the steps.

    Examples:

      dimctl mi features.h5 --layer y,labels

      dimctl extract runs/demo/encoder.safetensors \\
          | dimctl mi - --layer conv,y --estimator infonce

      dimctl mi --selftest --steps 1000
    """
    if steps < 1 or batch_size < 2:
        raise UsageError("--steps must be ≥ 1 and --batch-size ≥ 2")
    check_results_dir(results_dir)
    x, y = _two_layers(layer, old_x, old_y)
    if estimator not in ESTIMATORS:
        raise UsageError(f"--estimator {estimator!r} is not one of: {', '.join(ESTIMATORS)}")
    if selftest:
        _selftest(steps, batch_size, lr, seed)
        return
    if features is None:
        raise UsageError("give a FEATURES file (or - for stdin), or --selftest")
    feats = open_features(features, (x, y))  # only these two layers are read
    a, b = feature_layer(feats, x), feature_layer(feats, y)
    train_x, test_x = standardise(a.train, a.test)
    train_y, test_y = standardise(b.train, b.test)
    config = MIConfig(estimator=estimator, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    result = estimate_mi(train_x, train_y, test_x, test_y, config, on_step=_progress("mi", steps))
    row = {
        "command": "mi", "x": x, "y": y, "estimate": round(result.estimate, 6), "stderr": round(result.stderr, 6),
        "unit": "nats", "estimator": estimator, "steps": steps, "batch_size": batch_size,
        "eval_batches": result.eval_batches, "features": feats.name, "encoder": a.encoder, "dataset": a.dataset,
    }
    save_results(results_dir, "mi", [row])
    emit(result_line(row, feats.name))


def _two_layers(layer: str, old_x: str | None, old_y: str | None) -> tuple[str, str]:
    """X and Y from --layer X,Y; the deprecated --x/--y replace their half of it."""
    parts = [p.strip() for p in layer.split(",")]
    if len(parts) != 2 or not all(parts):
        raise UsageError(f"--layer takes two arrays, X,Y (e.g. y,labels), not {layer!r}")
    if old_x is not None or old_y is not None:
        given = " ".join(f"--{k} {v}" for k, v in (("x", old_x), ("y", old_y)) if v is not None)
        parts = [old_x or parts[0], old_y or parts[1]]
        warn(f"dimctl mi {given}", f"--layer {','.join(parts)}", "--layer chooses layers everywhere")
    return parts[0], parts[1]


def _selftest(steps: int, batch_size: int, lr: float, seed: int) -> None:
    """One JSON line per (setting, estimator), with the band a working estimator lands in; exit 1
    when any estimate misses its band (the bands hold at the default --steps and --batch-size)."""
    missed = []
    for dim, truth in SELFTEST_CASES:
        train_x, train_y = correlated_gaussians(20_000, dim, truth, seed)
        test_x, test_y = correlated_gaussians(4_096, dim, truth, seed + 1)
        for name in ESTIMATORS:
            config = MIConfig(estimator=name, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
            result = estimate_mi(train_x, train_y, test_x, test_y, config)
            low, high = selftest_band(name, truth, batch_size)
            passed = low <= result.estimate <= high
            if not passed:
                missed.append(f"{name} at {truth:g} nats: {result.estimate:.3f} not in [{low:.2f}, {high:.2f}]")
            emit(result_line({"command": "mi", "selftest": True, "dim": dim, "truth": truth,
                             "estimate": round(result.estimate, 4), "stderr": round(result.stderr, 4),
                             "error": round(result.estimate - truth, 4), "band": [round(low, 4), round(high, 4)],
                             "passed": passed, "estimator": name, "steps": steps, "batch_size": batch_size},
                             f"mi --selftest ({dim} dimensions, {name})"))
    if missed:
        raise DimctlError(f"mi --selftest: {len(missed)} of {len(SELFTEST_CASES) * len(ESTIMATORS)} estimates "
                          f"missed their known-MI band ({'; '.join(missed)})")


def _progress(label: str, total: int):
    """A callback that notes the critic's progress on stderr at every tenth of the steps (a terminal
    or a log alike: an estimate takes minutes), with the elapsed time and the time left."""
    pace, due = Pace(start_step=0), Tenths(total, first=max(total // 10, 1))

    def report(step: int, value: float) -> None:
        if due(step) or seconds_since_last_line() >= interval():
            announce()
            note(f"{label} step {step}/{total} train estimate {value:.4g} {pace(step, total)}")

    return report

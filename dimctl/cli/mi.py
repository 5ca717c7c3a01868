"""`dimctl mi`: mutual information between two arrays of a feature file, with a trained critic."""

from dataclasses import replace
from typing import Annotated

import typer

from dimctl.cli.output import emit, note
from dimctl.cli.progress import Pace, Tenths, announce, interval, seconds_since_last_line
from dimctl.cli.results import ResultsDirOpt, check_results_dir, result_line, save_results
from dimctl.cli.deprecations import warn
from dimctl.cli.settings_options import with_settings
from dimctl.cli.sources import feature_layer, open_features
from dimctl.errors import DimctlError, UsageError
from dimctl.evaluate.known_mi import FAST_SUBSET, TASKS
from dimctl.evaluate.mi import MI_ESTIMATORS, MIConfig, MIResult, estimate_mi, selftest_band
from dimctl.settings import updated
from dimctl.text import one_line

SELFTEST_PAIRS = 10_000  # training pairs, and as many test pairs, of each self-test task
# KSG is checked on the 1 + 1 tasks only: at 5 + 5 with sparse interactions or heavy tails it lands
# 20-45 % low (benchmarks/mi_known.py), a known limit of nearest-neighbour estimators, not a fault.
KSG_SELFTEST_DIMS = 2

def estimate_config(config_class, settings: dict):
    """A critic-based estimate's config (mi, ndm, mine) from its derived options, checked: a usage
    error names the first option outside its declared range."""
    try:
        return updated(config_class(), **settings).validate()
    except ValueError as e:
        raise UsageError(str(e)) from None


def fit_fields(result) -> dict:
    """How a critic was fitted, for the JSON line: the ceiling, the steps run, the step of the critic
    kept, and whether the validation estimate had stopped rising."""
    return {"steps": result.steps, "steps_used": result.steps_used, "best_step": result.best_step,
            "stopped_improving": result.stopped_improving}


@with_settings(MIConfig, after="layer")  # every estimate setting's option, default, help and range: evaluate/mi.py
def mi(
    ctx: typer.Context,
    features: Annotated[str | None, typer.Argument(help="HDF5 feature file from `dimctl extract`, or - for stdin (another tool's HDF5, .npz or VISSL folder: read unverified).")] = None,
    layer: Annotated[str, typer.Option(help="The two arrays X,Y: layers of the file (conv, fc, y, …) or `labels` (one-hot).")] = "y,labels",
    selftest: Annotated[bool, typer.Option("--selftest", help="Estimate the MI of known-MI distributions (Gaussian, Student-t, sparse, transformed) with every estimator, or the one --estimator names; exit 1 if one leaves its band.")] = False,
    results_dir: ResultsDirOpt = None,
    old_x: Annotated[str | None, typer.Option("--x", hidden=True)] = None,  # deprecated: --layer X,Y
    old_y: Annotated[str | None, typer.Option("--y", hidden=True)] = None,
    **settings,
):
    """Estimate I(X; Y) in nats between two arrays of a feature file; one JSON line.

    A separable critic (two MLPs, dot product) is trained on the train split, less a validation
    part that stops training when its estimate stops rising and picks the critic kept; the bound is
    evaluated on the test split. dv uses MINE's moving-average gradient; jsd reports the DV bound
    of its critic; smile is DV with clipped negatives (lower variance); ksg counts neighbours and
    trains nothing. The JSON line holds the estimate, its standard error over the evaluation
    batches, the steps used, the critic's estimate on its own training pairs, and a warning when
    the estimate cannot be taken at face value (negative, or a critic that learnt its pairs).

    Examples:

      dimctl mi features.h5 --layer y,labels

      dimctl extract runs/demo/encoder.safetensors \\
          | dimctl mi - --layer conv,y --estimator infonce

      dimctl mi pairs.npz --layer x,y --estimator ksg

      dimctl mi --selftest
    """
    config = estimate_config(MIConfig, settings)
    estimator, marginals, steps, batch_size = config.estimator, config.marginals, config.steps, config.batch_size
    check_results_dir(results_dir)
    x, y = _two_layers(layer, old_x, old_y)
    if selftest:
        given = getattr(ctx.get_parameter_source("estimator"), "name", "DEFAULT") != "DEFAULT"
        _selftest(config, [estimator] if given else list(MI_ESTIMATORS))
        return
    if features is None:
        raise UsageError("give a FEATURES file (or - for stdin), or --selftest")
    feats = open_features(features, (x, y))  # only these two layers are read
    a, b = feature_layer(feats, x), feature_layer(feats, y)
    result = estimate_mi(a.train, b.train, a.test, b.test, config, on_step=_progress("mi", steps))
    _warn(result, "mi")
    row = {
        "command": "mi", "x": x, "y": y, "estimate": round(result.estimate, 6), "stderr": round(result.stderr, 6),
        "unit": "nats", "estimator": estimator, "marginals": marginals, **_fit_fields(result),
        "batch_size": batch_size, "eval_batches": result.eval_batches, "features": feats.name, "encoder": a.encoder,
        "dataset": a.dataset, "warning": result.warning,
    }
    save_results(results_dir, "mi", [row])
    emit(result_line(row, feats.name))


def _fit_fields(result: MIResult) -> dict:
    """How the critic was fitted, and its estimate on its own training pairs (KSG fits nothing)."""
    if result.steps_used is None:
        return {"steps": 0}
    return {**fit_fields(result), "train_estimate": round(result.train_estimate, 6)}


def _warn(result: MIResult, label: str) -> None:
    if result.warning:
        note(f"{label}: warning: {one_line(result.warning)}")


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


def _selftest(config: MIConfig, estimators: list[str]) -> None:
    """One JSON line per (task, estimator) of the known-MI benchmark's fast subset (KSG on the 1 + 1
    tasks), with the band a working estimator lands in; exit 1 when any estimate misses its band."""
    missed, total = [], 0
    for task_name in FAST_SUBSET:
        task = TASKS[task_name]
        x, y = task.pairs(2 * SELFTEST_PAIRS, config.seed)
        for name in estimators:
            if name == "ksg" and task.x_dim + task.y_dim > KSG_SELFTEST_DIMS:
                continue
            result = estimate_mi(x[:SELFTEST_PAIRS], y[:SELFTEST_PAIRS], x[SELFTEST_PAIRS:], y[SELFTEST_PAIRS:],
                                 replace(config, estimator=name))
            low, high = selftest_band(name, task.mi)
            passed, total = low <= result.estimate <= high, total + 1
            if not passed:
                missed.append(f"{name} on {task_name}: {result.estimate:.3f} not in [{low:.2f}, {high:.2f}]")
            emit(result_line({"command": "mi", "selftest": True, "task": task_name, "dims": [task.x_dim, task.y_dim],
                              "truth": round(task.mi, 4), "estimate": round(result.estimate, 4),
                              "stderr": round(result.stderr, 4), "error": round(result.estimate - task.mi, 4),
                              "band": [round(low, 4), round(high, 4)], "passed": passed, "estimator": name,
                              "marginals": config.marginals, **_fit_fields(result), "warning": result.warning},
                             f"mi --selftest ({task_name}, {name})"))
    if missed:
        raise DimctlError(f"mi --selftest: {len(missed)} of {total} estimates missed their known-MI band "
                          f"({'; '.join(missed)})")


def _progress(label: str, total: int):
    """A callback that notes the critic's progress on stderr at every tenth of the steps (a terminal
    or a log alike: an estimate takes minutes), with the elapsed time and the time left."""
    pace, due = Pace(start_step=0), Tenths(total, first=max(total // 10, 1))

    def report(step: int, value: float) -> None:
        if due(step) or seconds_since_last_line() >= interval():
            announce()
            note(f"{label} step {step}/{total} train estimate {value:.4g} {pace(step, total)}")

    return report

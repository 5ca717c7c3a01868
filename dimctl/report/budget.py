"""Accuracy against training budget: runs that differ only in --epochs (and --seed) as one curve.

    make -f examples/Makefile -j2 budget DATASET=fashion-mnist     # the runs, the probes, this report

A *curve* is the models (after report/measures.py's ``pool_seeds``) whose pretrain settings agree
but for the number of epochs. A dataset gets a budget view when some curve there has two budgets
or more; then every curve on it is shown, one trained to a single budget as one point (an
objective too slow to train longer still sits beside the others at the budget it reached). Each
point is the mean ± standard deviation over seeds of every probe, and the wall time its runs took
to reach that budget: the last ``elapsed_s`` of their metrics.jsonl, which runs on across
``--resume``, so a run extended from a shorter one is timed from its start. Untrained encoders
(``--epochs 0``) are the floor every curve is drawn against. Nothing is selected: every curve the
runs form is shown.
"""

from dataclasses import dataclass
from statistics import mean, stdev

from dimctl.report.inputs import RunFolder
from dimctl.report.measures import (BOOKKEEPING, CLASSIFIER_ORDER, LAYER_ORDER, EncoderRecord, objective, ordered,
                                    pretrain_settings, probe_accuracy)
from dimctl.report.tables import Table, number

FLOOR = "random init"


@dataclass
class Curve:
    label: str  # the objective, in the paper's words: "DIM(L) infoNCE", "AE"
    points: dict[int, EncoderRecord]  # epochs → model, in increasing epochs


@dataclass
class Budget:
    """The curves of one dataset, the floor (untrained encoders) and the probes both have."""
    dataset: str
    curves: list[Curve]
    floor: list[EncoderRecord]
    probes: list[tuple[str, str]]  # (layer, classifier)


def find_budgets(models: list[EncoderRecord]) -> list[Budget]:
    """One Budget per dataset on which some settings were trained to two or more epoch counts, with
    every curve on that dataset (one-budget curves included)."""
    groups: dict[str, dict[int, EncoderRecord]] = {}
    floor: list[EncoderRecord] = []
    for m in models:
        settings = pretrain_settings(m)
        if settings is None or not isinstance(settings.get("epochs"), int) or not probe_accuracy(m):
            continue
        if settings["epochs"] == 0:
            floor.append(m)
            continue
        key = repr(sorted((k, v) for k, v in settings.items() if k not in BOOKKEEPING | {"seed", "epochs"}))
        groups.setdefault(key, {})[settings["epochs"]] = m
    curves = [Curve(objective(points[min(points)]), dict(sorted(points.items()))) for points in groups.values()]
    budgets = []
    for dataset in dict.fromkeys(k[0] for c in curves for m in c.points.values() for k in probe_accuracy(m)):
        here = [c for c in curves if any(k[0] == dataset for m in c.points.values() for k in probe_accuracy(m))]
        if all(len(c.points) < 2 for c in here):
            continue  # one budget each: Table 1 shows them, there is no curve to draw
        keys = {k[1:] for c in here for m in c.points.values() for k in probe_accuracy(m) if k[0] == dataset}
        probes = [(layer, clf) for layer in ordered({k[0] for k in keys}, LAYER_ORDER)
                  for clf in ordered({k[1] for k in keys}, CLASSIFIER_ORDER) if (layer, clf) in keys]
        on_dataset = [m for m in floor if any(k[0] == dataset for k in probe_accuracy(m))]
        budgets.append(Budget(dataset, sorted(here, key=lambda c: c.label), on_dataset, probes))
    return budgets


def accuracies(model: EncoderRecord, dataset: str, layer: str, classifier: str) -> list[float]:
    """Test accuracies (%) of one probe over the model's results (one per seed when pooled)."""
    return [100 * a for a in probe_accuracy(model).get((dataset, layer, classifier), [])]


def wall_minutes(model: EncoderRecord) -> list[float]:
    """Minutes each of the model's runs trained for, from the start (resumes included)."""
    runs = model.runs or ([model.run] if model.run is not None else [])
    return [seconds / 60 for seconds in map(_elapsed, runs) if seconds is not None]


def _elapsed(run: RunFolder) -> float | None:
    timed = [m["elapsed_s"] for m in run.metrics if isinstance(m.get("elapsed_s"), (int, float))]
    return float(timed[-1]) if timed else None


def budget_table(budget: Budget) -> Table:
    header = ["objective", "epochs", "seeds", "wall time (min)", *(f"{layer} {clf}" for layer, clf in budget.probes)]
    rows = []
    points = [(FLOOR, 0, m) for m in budget.floor] + [(c.label, e, m) for c in budget.curves for e, m in c.points.items()]
    for label, epochs, m in points:
        seeds = ", ".join(map(str, m.seeds)) if m.seeds else str(pretrain_settings(m).get("seed", "-"))
        rows.append([label, str(epochs), seeds, number(wall_minutes(m), 1),
                     *(number(accuracies(m, budget.dataset, layer, clf), 2) for layer, clf in budget.probes)])
    notes = ["Each row: the runs that differ only in --seed, as mean ± sample standard deviation over the seeds "
             "(n = seeds); wall time is each run's training from its start to that budget (metrics.jsonl's "
             "elapsed_s, resumes included), extraction and probing not counted."]
    return Table(f"Budget — test accuracy (%) against training epochs, {budget.dataset}", header, rows,
                 [False, True, False, *[True] * (1 + len(budget.probes))], notes)


def curve_series(budget: Budget, layer: str, classifier: str) -> tuple[dict[str, list[tuple[int, float, float]]],
                                                                        list[float]]:
    """For one probe: each curve's (epochs, mean, std) points, and the floor's accuracies."""
    series = {}
    for curve in budget.curves:
        points = []
        for epochs, m in curve.points.items():
            values = accuracies(m, budget.dataset, layer, classifier)
            if values:
                points.append((epochs, mean(values), stdev(values) if len(values) > 1 else 0.0))
        if points:
            series[curve.label] = points
    floor = [a for m in budget.floor for a in accuracies(m, budget.dataset, layer, classifier)]
    return series, floor

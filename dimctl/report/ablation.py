"""α/β/γ sweeps among the runs (paper App. A.5, Figures 10 and 12).

A sweep is a set of pretraining runs whose settings differ only in the objective's weights α
(global MI), β (local MI) and γ (prior). Runs that also differ in anything that changes what is
learned — dataset, estimator, epochs, widths, seed — belong to different sweeps. Settings that
only change bookkeeping (where checkpoints go, how often metrics are logged) are ignored.
"""

from dataclasses import dataclass, field

import numpy as np

from dimctl.report.measures import (BOOKKEEPING, CLASSIFIER_ORDER, LAYER_ORDER, EncoderRecord, pretrain_settings,
                                    summary)

WEIGHTS = ("alpha", "beta", "gamma")
SYMBOLS = {"alpha": "α", "beta": "β", "gamma": "γ"}
# Settings that do not change what a run learns; `preset` only names the weights.
MIN_SETTINGS = 3  # fewer distinct weight settings make a comparison, not a sweep


@dataclass
class Sweep:
    dataset: str
    x: str  # the weight along the columns
    y: str  # the weight along the rows
    xs: list[float]
    ys: list[float]
    fixed: dict[str, float]  # the weights that are the same for every run of this grid
    held: dict[str, object]  # the other settings every run shares (estimator, epochs, …)
    metrics: dict[str, np.ndarray] = field(default_factory=dict)  # name → (len(ys), len(xs)), NaN: no run
    runs: dict[tuple[float, float], str] = field(default_factory=dict)  # (x, y) → run label

    @property
    def title(self) -> str:
        fixed = ", ".join(f"{SYMBOLS[k]}={v:g}" for k, v in self.fixed.items())
        shared = ", ".join(f"{k} {self.held[k]}" for k in ("estimator", "epochs") if k in self.held)
        return f"{self.dataset}: {SYMBOLS[self.y]} × {SYMBOLS[self.x]}" + "".join(f"; {s}" for s in (fixed, shared) if s)


def find_sweeps(models: list[EncoderRecord]) -> list[Sweep]:
    """Every grid of runs that differ only in α, β and γ, with at least three weight settings."""
    groups: dict[str, list[tuple[EncoderRecord, dict]]] = {}
    for m in models:
        settings = pretrain_settings(m)
        if settings is None or not all(isinstance(settings.get(w), (int, float)) for w in WEIGHTS):
            continue
        held = {k: v for k, v in settings.items() if k not in BOOKKEEPING and k not in WEIGHTS}
        groups.setdefault(repr(sorted(held.items())), []).append((m, settings))
    sweeps = []
    for members in groups.values():
        points = {tuple(float(s[w]) for w in WEIGHTS) for _, s in members}
        if len(points) < MIN_SETTINGS:
            continue
        x, y, split = _axes(points)
        for third in sorted({p[WEIGHTS.index(split)] for p in points}):
            chosen = [(m, s) for m, s in members if float(s[split]) == third]
            if len({tuple(float(s[w]) for w in WEIGHTS) for _, s in chosen}) >= MIN_SETTINGS:
                sweeps.append(_grid(chosen, x, y, {split: third}))
    return sweeps


def _axes(points: set[tuple[float, float, float]]) -> tuple[str, str, str]:
    """(columns, rows, held) weights: hold the weight whose every-value slices keep the most runs
    together (γ first on ties, as the paper's α × β maps); rows are the earlier weight of the other two."""
    def largest_slice(split: int) -> int:
        values = [p[split] for p in points]
        return max(values.count(v) for v in values)

    split = max((2, 1, 0), key=largest_slice)  # max keeps the first of equals: γ, then β, then α
    y, x = [w for i, w in enumerate(WEIGHTS) if i != split]
    return x, y, WEIGHTS[split]


def _grid(members: list[tuple[EncoderRecord, dict]], x: str, y: str, fixed: dict[str, float]) -> Sweep:
    settings = members[0][1]
    held = {k: v for k, v in settings.items() if k not in BOOKKEEPING and k not in WEIGHTS}
    xs = sorted({float(s[x]) for _, s in members})
    ys = sorted({float(s[y]) for _, s in members})
    sweep = Sweep(str(settings.get("dataset")), x, y, xs, ys, fixed, held)
    values: dict[str, dict[tuple[float, float], list[float]]] = {}
    for m, s in members:
        point = (float(s[x]), float(s[y]))
        sweep.runs[point] = m.label
        for name, value in summary(m, sweep.dataset).items():
            values.setdefault(name, {}).setdefault(point, []).append(value)
    for name in sorted(values, key=_metric_order):
        grid = np.full((len(ys), len(xs)), np.nan)
        for (px, py), vs in values[name].items():
            grid[ys.index(py), xs.index(px)] = sum(vs) / len(vs)
        sweep.metrics[name] = grid
    return sweep


def _metric_order(name: str) -> tuple:
    """Accuracies first (by layer, then classifier, as in Table 1), then MS-SSIM, I(X;Y), NDM."""
    order = ["accuracy", "MS-SSIM", "I(X;Y)", "NDM"]
    kind = next((i for i, p in enumerate(order) if name.startswith(p)), len(order))
    words = name.split()
    if kind == 0 and len(words) >= 3:
        layer, clf = words[1], words[2]
        return (0, _rank(layer, LAYER_ORDER), _rank(clf, CLASSIFIER_ORDER), name)
    return (kind, 0, 0, name)


def _rank(name: str, order: tuple[str, ...]) -> int:
    return order.index(name) if name in order else len(order)


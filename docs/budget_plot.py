"""Redraw the README's budget plot from recorded results, with the report's own plot function.

    .venv/bin/python docs/budget_plot.py docs/budget-fashion-mnist.tsv docs/budget-fashion-mnist.png

`dimctl report` draws this plot from the runs' folders. The Fashion-MNIST runs were spread over
several machines, and the folders of some of them were lost when their machine was replaced. So the
plot is drawn from the recorded per-probe results instead: the mean, sample standard deviation and
seed count of each objective at each budget, in the same numbers as the README's tables. An
objective at epochs 0 is the untrained floor.
"""

import csv
import sys
from pathlib import Path

from dimctl.report.plots import budget_curves

FLOOR = "random init"


def read_panels(tsv: Path) -> dict[str, tuple[dict[str, list[tuple[int, float, float]]], list[float]]]:
    """`budget_curves`' input from the table: per probe, each objective's (epochs, mean, std) points
    in epoch order, objectives in name order as the report lists them, and the floor's mean."""
    panels: dict[str, tuple[dict[str, list[tuple[int, float, float]]], list[float]]] = {}
    with tsv.open(newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            series, floor = panels.setdefault(row["probe"], ({}, []))
            if row["objective"] == FLOOR:
                floor.append(float(row["mean"]))
            else:
                series.setdefault(row["objective"], []).append(
                    (int(row["epochs"]), float(row["mean"]), float(row["std"])))
    return {probe: ({label: sorted(series[label]) for label in sorted(series)}, floor)
            for probe, (series, floor) in panels.items()}


def main(tsv: str, png: str, title: str = "accuracy against epochs, fashion-mnist") -> None:
    Path(png).write_bytes(budget_curves(read_panels(Path(tsv)), title))


if __name__ == "__main__":
    main(*sys.argv[1:])

"""The report's figures as PNG bytes (matplotlib's object API: no pyplot state, no display needed)."""

import io
import math

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from dimctl.io.images import GRID_PADDING  # the pixels between a grid's images
from dimctl.report.ablation import SYMBOLS, Sweep
from dimctl.report.tables import metrics_keys

DPI = 90  # small files: every figure is embedded in the HTML as a data URI
PANEL = (3.4, 2.4)  # inches per subplot
LINE_STYLES = ("-", "--", ":", "-.")


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    # No "Software" entry: the same data gives the same bytes on every matplotlib version.
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _panels(count: int, columns: int = 3) -> tuple[Figure, list]:
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    fig = Figure(figsize=(PANEL[0] * columns, PANEL[1] * rows), layout="constrained")
    axes = [fig.add_subplot(rows, columns, i + 1) for i in range(count)]
    return fig, axes


def training_curves(metrics: list[dict], title: str) -> bytes | None:
    """One panel per logged number (loss terms, images/s, …) against the step (or epoch)."""
    keys = metrics_keys(metrics)
    if not keys:
        return None
    x_key = next((k for k in ("step", "epoch") if all(k in m for m in metrics)), None)
    fig, axes = _panels(len(keys))
    for ax, key in zip(axes, keys):
        points = [(m[x_key] if x_key else i, m[key]) for i, m in enumerate(metrics) if isinstance(m.get(key), (int, float))]
        xs, ys = zip(*points)
        ax.plot(xs, ys, linewidth=1.2, marker="." if len(xs) < 30 else None)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel(x_key or "line", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def accuracy_per_layer(series: dict[str, dict[str, dict[str, float]]], layers: list[str], title: str) -> bytes:
    """Test accuracy (%) per layer: ``series[run][classifier][layer]``; a colour per run, a line style per classifier."""
    fig = Figure(figsize=(max(4.0, 1.2 * len(layers) + 2.5), 3.2), layout="constrained")
    ax = fig.add_subplot()
    classifiers = list(dict.fromkeys(c for by_clf in series.values() for c in by_clf))
    for k, (run, by_clf) in enumerate(series.items()):
        colour = f"C{k % 10}"
        for clf, by_layer in by_clf.items():
            xs = [i for i, layer in enumerate(layers) if layer in by_layer]
            ax.plot(xs, [by_layer[layers[i]] for i in xs], color=colour, marker="o", linewidth=1.2,
                    linestyle=LINE_STYLES[classifiers.index(clf) % len(LINE_STYLES)], label=f"{run} {clf}")
    ax.set_xticks(range(len(layers)), layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(fig)


def budget_curves(panels: dict[str, tuple[dict[str, list[tuple[int, float, float]]], list[float]]],
                  title: str) -> bytes:
    """Test accuracy (%) against training epochs (log scale), a panel per probe (``panels["y svm"]``):
    a line per objective with the seeds' standard deviation as error bars, and the untrained
    encoders' mean as a dashed floor."""
    fig, axes = _panels(len(panels))
    for ax, (name, (series, floor)) in zip(axes, panels.items()):
        for k, (label, points) in enumerate(series.items()):
            epochs, means, stds = zip(*points)
            ax.errorbar(epochs, means, yerr=stds, color=f"C{k % 10}", marker="o", markersize=3, linewidth=1.2,
                        capsize=2, label=label)
        if floor:
            ax.axhline(float(np.mean(floor)), color="0.4", linestyle="--", linewidth=1, label="random init")
        ax.set_xscale("log")
        ticks = sorted({e for points in series.values() for e, _, _ in points})
        ax.set_xticks(ticks, [str(e) for e in ticks])  # the budgets themselves, not powers of ten
        ax.minorticks_off()
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epochs", fontsize=8)
        ax.set_ylabel("test accuracy (%)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="outside lower center", ncols=min(len(labels), 4))
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def mapped_metrics(sweep: Sweep) -> list[str]:
    """The measurements worth a heat map: those made on at least two runs of the sweep."""
    return [name for name, grid in sweep.metrics.items() if np.isfinite(grid).sum() >= 2]


def sweep_heatmaps(sweep: Sweep) -> bytes:
    """``sweep_heatmap_figure`` as PNG bytes."""
    return _png(sweep_heatmap_figure(sweep))


def _scale(name: str) -> str:
    """The colour scale a measurement shares: every accuracy one (they are all %), else its kind
    (MS-SSIM of y and of conv), never two units on one scale."""
    return "test accuracy (%)" if name.startswith("accuracy ") else name.split(" (")[0]


def sweep_heatmap_figure(sweep: Sweep) -> Figure:
    """One heat map per measurement made on two or more runs of the sweep, each cell annotated with
    its value. Panels of one unit share one colour scale and one colour bar (a row of panels of
    their own): scaled per panel, 98.6 against 98.9 would span the whole range and read as a gulf."""
    names = mapped_metrics(sweep)
    scales: dict[str, list[str]] = {}
    for name in names:
        scales.setdefault(_scale(name), []).append(name)
    columns = min(4, max(len(group) for group in scales.values()))
    rows = [math.ceil(len(group) / columns) for group in scales.values()]
    fig = Figure(figsize=(PANEL[0] * columns + 0.6, PANEL[1] * sum(rows)), layout="constrained")
    parts = fig.subfigures(len(scales), 1, height_ratios=rows, squeeze=False)[:, 0]
    for part, height, (scale, group) in zip(parts, rows, scales.items()):
        finite = np.concatenate([sweep.metrics[name][np.isfinite(sweep.metrics[name])] for name in group])
        low, high = float(finite.min()), float(finite.max())
        norm = Normalize(low, high)
        middle = (low + high) / 2
        axes = [part.add_subplot(height, columns, i + 1) for i in range(len(group))]
        for ax, name in zip(axes, group):
            grid = sweep.metrics[name]
            image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", norm=norm, origin="lower", aspect="auto")
            ax.set_xticks(range(len(sweep.xs)), [f"{v:g}" for v in sweep.xs])
            ax.set_yticks(range(len(sweep.ys)), [f"{v:g}" for v in sweep.ys])
            ax.set_xlabel(SYMBOLS[sweep.x])
            ax.set_ylabel(SYMBOLS[sweep.y])
            ax.set_title(name, fontsize=9)
            ax.tick_params(labelsize=7)
            for (row, col), value in np.ndenumerate(grid):
                if np.isfinite(value):
                    ax.text(col, row, f"{value:.3g}", ha="center", va="center", fontsize=7,
                            color="black" if value > middle else "white")
        bar = part.colorbar(image, ax=axes, shrink=0.8)
        bar.set_label(f"{scale}: {low:.4g} to {high:.4g}", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    fig.suptitle(sweep.title, fontsize=10)
    return fig


SHOWN_WIDTH = 640  # about how wide a grid is shown, in screen pixels: 32-pixel images are too small to judge


def labelled_grid(png: bytes, rows: int, columns: int, row_labels: list[str] | None = None,
                  column_labels: list[str] | None = None) -> bytes:
    """A PNG grid of rows × columns images (2-pixel gaps) enlarged by a whole factor with
    nearest-neighbour pixels (no blur: the picture is the encoder's evidence), labelled per row and
    column. ValueError when the picture is not such a grid."""
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    height, width = image.shape[:2]
    cell_h, cell_w = (height - GRID_PADDING) / rows - GRID_PADDING, (width - GRID_PADDING) / columns - GRID_PADDING
    if cell_h < 1 or cell_w < 1 or cell_h != int(cell_h) or cell_w != int(cell_w):
        raise ValueError(f"a {width}×{height} picture is not a grid of {rows}×{columns} images")
    scale = max(1, SHOWN_WIDTH // width)
    # Margins in pixels at DPI: the labels' room, from their length at 9 pt.
    left = 12 + 6 * max((len(s) for s in row_labels or []), default=0)
    top = 22 if column_labels else 6
    fig_w, fig_h = width * scale + left + 6, height * scale + top + 6
    fig = Figure(figsize=(fig_w / DPI, fig_h / DPI))
    ax = fig.add_axes((left / fig_w, 6 / fig_h, width * scale / fig_w, height * scale / fig_h))
    ax.imshow(image, interpolation="nearest")

    def centres(count: int, cell: float) -> list[float]:
        return [GRID_PADDING + i * (cell + GRID_PADDING) + cell / 2 - 0.5 for i in range(count)]

    ax.set_yticks(centres(rows, cell_h) if row_labels else [], row_labels or [], fontsize=9)
    ax.xaxis.tick_top()
    ax.set_xticks(centres(columns, cell_w) if column_labels else [], column_labels or [], fontsize=9)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})  # exact size: whole-pixel scaling
    return buffer.getvalue()


def enlarged(png: bytes) -> bytes:
    """A small picture (a generator's 32-pixel samples) enlarged by a whole factor, nearest-neighbour."""
    from PIL import Image

    picture = Image.open(io.BytesIO(png))
    scale = SHOWN_WIDTH // picture.width
    if scale < 2:
        return png
    buffer = io.BytesIO()
    picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()

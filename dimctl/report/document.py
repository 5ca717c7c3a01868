"""The report as an ordered list of blocks — headings, text, tables, pictures — independent of format."""

import math
import re
from pathlib import Path
from dataclasses import dataclass, field

from dimctl.report.ablation import SYMBOLS, Sweep, find_sweeps
from dimctl.report.budget import budget_table, curve_series, find_budgets
from dimctl.report.inputs import Inputs, RunFolder
from dimctl.report.measures import (CLASSIFIER_ORDER, LAYER_ORDER, EncoderRecord, group, objective, ordered, pool_seeds,
                                    probe_accuracy)
from dimctl.report.tables import (MISSING, Table, classification_table, config_table, neighbors_table, other_results_tables,
                                  representation_table, training_table)


@dataclass
class Heading:
    text: str
    level: int


@dataclass
class Text:
    text: str


@dataclass
class Picture:
    png: bytes
    name: str  # a file name stem, unique in the document
    caption: str


Block = Heading | Text | Table | Picture


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, block: Block) -> None:
        if isinstance(block, Picture):  # file names of pictures must be unique (Markdown writes them as files)
            taken = {b.name for b in self.blocks if isinstance(b, Picture)}
            base, k = _slug(block.name), 1
            block.name = base
            while block.name in taken:
                k += 1
                block.name = f"{base}-{k}"
        self.blocks.append(block)

    @property
    def tables(self) -> list[Table]:
        return [b for b in self.blocks if isinstance(b, Table)]

    @property
    def pictures(self) -> list[Picture]:
        return [b for b in self.blocks if isinstance(b, Picture)]


def _plots():
    """matplotlib is imported when a report draws, not at the start of every dimctl command."""
    from dimctl.report import plots

    return plots


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.").lower() or "figure"


@dataclass(frozen=True)
class ReportOptions:
    title: str = "dimctl report"
    paper: bool = False  # the paper's numbers beside the measured ones
    sweeps: bool = True  # α/β/γ heat maps when the runs form a sweep
    pool_seeds: bool = True  # runs that differ only in --seed as one row: mean ± std over the seeds


def build(inputs: Inputs, options: ReportOptions = ReportOptions()) -> Document:
    grouped = group(inputs)
    doc = Document(options.title)
    doc.add(Text(f"Built by `dimctl report` from {len(inputs.runs)} run folder(s) and {len(inputs.rows)} result line(s)."))
    # The results tables pool seeds; the Runs section below still shows every run.
    models = pool_seeds(grouped.models) if options.pool_seeds else grouped.models
    pooled = {m.label for m in models if m.seeds}

    def note_pooled(table: Table) -> None:
        rows = pooled & set(table.column("run"))
        if rows:
            table.notes.append(f"{len(rows)} row(s) pool runs that differ only in --seed: mean ± sample standard "
                               f"deviation over the seeds (n = results).")

    doc.add(Heading("Results", 2))
    table1 = classification_table(models, options.paper)
    if table1:
        note_pooled(table1)
        doc.add(table1)
        for picture in _accuracy_pictures(models):
            doc.add(picture)
    for found in find_budgets(models if options.pool_seeds else pool_seeds(grouped.models)):  # over seeds, always
        doc.add(budget_table(found))
        panels = {f"{layer} {clf}": curve_series(found, layer, clf) for layer, clf in found.probes}
        doc.add(Picture(_plots().budget_curves(panels, f"accuracy against epochs, {found.dataset}"),
                        f"budget-{found.dataset}", f"Test accuracy against training epochs, {found.dataset}: "
                        f"mean over seeds, error bars one standard deviation; dashed: untrained encoders."))
    table4 = representation_table(models, options.paper)
    if table4:
        note_pooled(table4)
        doc.add(table4)
    neighbours = neighbors_table(models)
    if neighbours:
        doc.add(neighbours)
    for table in other_results_tables(models, grouped.loose_rows, grouped.artifacts):
        doc.add(table)
    if not (table1 or table4 or neighbours or grouped.loose_rows or any(m.rows for m in models)):
        doc.add(Text("No result lines were given: only the runs below."))

    sweeps = find_sweeps(models) if options.sweeps else []
    if sweeps:
        doc.add(Heading("Ablation: α, β, γ (paper App. A.5)", 2))
        for sweep in sweeps:
            if _plots().mapped_metrics(sweep):
                held = "-".join(f"{k}{v:g}" for k, v in sweep.fixed.items())
                doc.add(Picture(_plots().sweep_heatmaps(sweep), f"ablation-{sweep.dataset}-{held}",
                                f"Measurements over the sweep {sweep.title} (blank: no run or no result)."))
            doc.add(_sweep_table(sweep))

    runs = [m for m in grouped.models if m.run is not None or m.attached]
    if runs or grouped.other_runs:
        doc.add(Heading("Runs", 2))
    for model in runs:
        _model_section(doc, model)
    for run in grouped.other_runs:
        _run_section(doc, run, run.name, level=3)
    return doc


def _accuracy_pictures(models: list[EncoderRecord]) -> list[Picture]:
    """Probe accuracy per layer, one figure per dataset: a line per (run, classifier)."""
    pictures = []
    by_dataset: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for m in models:
        for (dataset, layer, clf), values in probe_accuracy(m).items():
            by_dataset.setdefault(dataset, {}).setdefault(m.label, {}).setdefault(clf, {})[layer] = (
                100 * sum(values) / len(values))
    for dataset, series in by_dataset.items():
        layers = ordered({layer for by_clf in series.values() for s in by_clf.values() for layer in s}, LAYER_ORDER)
        if len(layers) < 2:
            continue  # one layer: the table says it all
        series = {run: {c: by_clf[c] for c in ordered(by_clf, CLASSIFIER_ORDER)} for run, by_clf in series.items()}
        pictures.append(Picture(_plots().accuracy_per_layer(series, layers, f"probe accuracy per layer, {dataset}"),
                                f"accuracy-per-layer-{dataset}", f"Test accuracy per layer and classifier, {dataset}."))
    return pictures


def _sweep_table(sweep: Sweep) -> Table:
    names = list(sweep.metrics)
    header = [SYMBOLS[sweep.y], SYMBOLS[sweep.x], "run", *names]
    body = []
    for (x, y), label in sorted(sweep.runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        i, j = sweep.ys.index(y), sweep.xs.index(x)
        body.append([f"{y:g}", f"{x:g}", label,
                     *(MISSING if math.isnan(sweep.metrics[n][i, j]) else f"{sweep.metrics[n][i, j]:.3g}" for n in names)])
    return Table(f"Sweep {sweep.title}", header, body, [True, True, False, *[True] * len(names)])


def _model_section(doc: Document, model: EncoderRecord) -> None:
    doc.add(Heading(model.label, 3))
    facts = [f"encoder sha256 `{model.sha256[:16]}…`"]
    if objective(model) != "-":
        facts.insert(0, f"objective: {objective(model)}")
    if model.run is not None:
        facts.append(f"folder `{model.run.path}`")
    doc.add(Text("; ".join(facts) + "."))
    if model.run is not None:
        _run_body(doc, model.run, model.label)
    for run in model.attached:
        _run_section(doc, run, f"{model.label} › {run.name} ({run.command or 'measurement'})", level=4)


def _run_section(doc: Document, run: RunFolder, title: str, level: int) -> None:
    doc.add(Heading(title, level))
    doc.add(Text(f"folder `{run.path}`" + (f"; made by `dimctl {run.command}`" if run.command else "") + "."))
    _run_body(doc, run, run.name)


def _run_body(doc: Document, run: RunFolder, label: str) -> None:
    if run.config:
        doc.add(config_table(run.config, f"Configuration of {label} (config.json)"))
    if run.metrics:
        table = training_table(run.metrics, f"Training of {label} (metrics.jsonl)")
        if table:
            if run.bad_metric_lines:
                table.notes.append(f"{run.bad_metric_lines} unreadable line(s) of metrics.jsonl left out.")
            doc.add(table)
        curves = _plots().training_curves(run.metrics, f"{label}: metrics.jsonl")
        if curves:
            doc.add(Picture(curves, f"curves-{label}", f"Training curves of {label}."))
    for path in run.pictures:
        name = path.relative_to(run.path).as_posix()
        png, what = _shown(run, path)
        doc.add(Picture(png, f"{label}-{name.removesuffix('.png')}", f"{label}: {name}{what}"))
    if run.pictures_left_out:
        doc.add(Text(f"{run.pictures_left_out} more picture(s) of a series in `{run.path}` left out "
                     f"(shown: the first and the last ones)."))



def _shown(run: RunFolder, path: Path) -> tuple[bytes, str]:
    """A run's picture as the report shows it, enlarged with nearest-neighbour pixels, and what its
    rows and columns are where the command that drew it is known; the caption's addition."""
    png = path.read_bytes()
    try:
        if path.name == "neighbors.png" and path.parent == run.path:
            queries = [r for r in run.rows if r.get("command") == "neighbors"]
            n = max((len(r.get("neighbors", [])) for r in queries), default=0)
            if queries and n:
                labels = [f"{r.get('class_name', r.get('class'))} {round(float(r.get('same_class', 0)) * n)}/{n}"
                          for r in queries]
                return (_plots().labelled_grid(png, len(queries), 1 + n, labels, ["query", *map(str, range(1, n + 1))]),
                        f" — a row per query: the query, then its {n} nearest test images, nearest first; "
                        f"left: its class and how many neighbours share it")
        if path.name == "reconstructions.png" and path.parent == run.path and run.command == "reconstruct":
            from PIL import Image

            from dimctl.io.images import GRID_PADDING

            with Image.open(path) as image:  # two rows of square images: the columns follow from the height
                columns = (image.width - GRID_PADDING) // ((image.height - GRID_PADDING) // 2)
            return (_plots().labelled_grid(png, 2, columns, ["original", "reconstruction"]),
                    " — test images above, the decoder's reconstructions from the frozen features below")
        return _plots().enlarged(png), ""
    except (ValueError, OSError):  # not the grid it is named as, or not readable as an image: shown as it is
        return png, ""

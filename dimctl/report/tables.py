"""The report's tables as plain data (title, header, rows of strings); render.py lays them out.

Table 1 style: rows are encoders; columns are dataset × layer × classifier; cells are test accuracy (%).
Table 4 style: linear-SVM accuracy on conv/fc/y, MS-SSIM of a decoder from y, MINE's I(X;Y), NDM.
"""

import json
import re
from dataclasses import dataclass, field
from statistics import mean, stdev

from dimctl.report import paper
from dimctl.report.measures import (CLASSIFIER_ORDER, LAYER_ORDER, SCALAR_NAMES, SCALAR_RESULTS, EncoderRecord, family,
                                    objective, ordered, paper_name, pretrain_settings, probe_accuracy, scalar_results,
                                    variants)

MISSING = "-"
RECALLED_MARK = "†"  # a paper number remembered rather than seen again (paper.py)
TABLE_COMMANDS = {"probe", *SCALAR_RESULTS, "neighbors"}  # commands with a table of their own
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    numeric: list[bool]  # per column: right-aligned numbers
    notes: list[str] = field(default_factory=list)
    main: bool = True  # a results table (also printed as text), not a run's details

    def column(self, name: str) -> list[str]:
        i = self.header.index(name)
        return [r[i] for r in self.rows]

    def cell(self, row_label: str, column: str) -> str:
        """The cell of the first row whose first column is ``row_label``."""
        for r in self.rows:
            if r[0] == row_label:
                return r[self.header.index(column)]
        raise KeyError(row_label)


def number(values: list[float], digits: int, scale: float = 1.0) -> str:
    """One value, or the mean ± standard deviation of repeats with their count."""
    if not values:
        return MISSING
    m = mean(values) * scale
    if len(values) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {stdev(values) * scale:.{digits}f} (n={len(values)})"


def estimate(values: list[tuple[float, float | None]], digits: int) -> str:
    """One estimate with its standard error, or repeats as mean ± standard deviation."""
    if len(values) == 1 and values[0][1] is not None:
        v, err = values[0]
        return f"{v:.{digits}f} ± {err:.{digits}f}"
    return number([v for v, _ in values], digits)


def paper_cell(value: paper.PaperNumber | None) -> str:
    """The paper's number as published; † marks a recalled one."""
    if value is None:
        return MISSING
    return value.text + (RECALLED_MARK if value.status == "recalled" else "")


def _paper_note(used: list[paper.PaperNumber]) -> list[str]:
    if not used:
        return []
    tables = ", ".join(sorted({p.table for p in used}))
    note = (f"(paper) columns: the published numbers of {paper.CITATION} ({tables}), not measurements; shown where "
            f"dataset, objective, estimator, architecture, layer and classifier match. Epochs, head and encoder "
            f"widths and the probe's own settings may differ: see each run's configuration.")
    if any(p.status == "recalled" for p in used):
        note += f" {RECALLED_MARK}: recalled from the paper, not re-checked against a source."
    return [note, *dict.fromkeys(p.caveat for p in used if p.caveat)]


def _paper_name(model: EncoderRecord) -> tuple[str, str, str] | None:
    """(family, Table-1 model name, arch) of a trained DIM(G)/DIM(L)/DIM(L+G) run or comparison
    method, else None."""
    settings = pretrain_settings(model)
    if settings is None or not settings.get("epochs") or variants(settings):
        return None  # untrained, or with options the paper's Tables 1, 2 and 4 did not use
    fam, name = family(settings), paper_name(settings)
    if fam is None or name is None:
        return None
    return fam, name, str(settings.get("arch", "dcgan"))


def classification_table(models: list[EncoderRecord], with_paper: bool = False) -> Table | None:
    """Table 1: test accuracy (%) per encoder and (dataset, layer, classifier)."""
    accuracy = {m.sha256: probe_accuracy(m) for m in models}
    models = [m for m in models if accuracy[m.sha256]]
    if not models:
        return None
    keys = [k for m in models for k in accuracy[m.sha256]]
    datasets = list(dict.fromkeys(k[0] for k in keys))
    columns = []
    for dataset in datasets:
        layers = ordered({k[1] for k in keys if k[0] == dataset}, LAYER_ORDER)
        classifiers = ordered({k[2] for k in keys if k[0] == dataset}, CLASSIFIER_ORDER)
        columns += [(dataset, layer, clf) for layer in layers for clf in classifiers
                    if any((dataset, layer, clf) in accuracy[m.sha256] for m in models)]

    def looked_up(model: EncoderRecord, key) -> paper.PaperNumber | None:
        names = _paper_name(model)
        # by the classifier's name: the paper's probes ran their own settings (the note says so)
        return paper.classification(key[0], names[1], names[2], key[1], key[2].split(" ")[0]) if names else None

    header, numeric, cells = ["run", "objective"], [False, False], {m.sha256: [m.label, objective(m)] for m in models}
    used = []
    for key in columns:
        name = " ".join(key[1:]) if len(datasets) == 1 else " ".join(key)
        header.append(name)
        numeric.append(True)
        for m in models:
            cells[m.sha256].append(number(accuracy[m.sha256].get(key, []), 2, 100))
        published = {m.sha256: looked_up(m, key) for m in models} if with_paper else {}
        if any(published.values()):
            header.append(f"{name} (paper)")
            numeric.append(True)
            for m in models:
                cells[m.sha256].append(paper_cell(published[m.sha256]))
            used += [p for p in published.values() if p]
    title = "Table 1 — classification accuracy (%)" + (f", {datasets[0]}" if len(datasets) == 1 else "")
    return Table(title, header, [cells[m.sha256] for m in models], numeric,
                 _classifier_notes([k[2] for k in columns], accuracy) + _paper_note(used))


def _classifier_notes(classifiers: list[str], accuracy: dict) -> list[str]:
    """What each classifier of the columns is, and that a cell holds one protocol only."""
    names = {c.split(" ")[0] for c in classifiers}
    described = {"svm": "svm = linear SVM (C=1)", "svm-torch": "svm-torch = linear SVM by ADMM (C=1)",
                 "mlp": "mlp = the paper's non-linear probe network (trained by Adam 1e-3, not the paper's 1e-4; "
                        "50 epochs, probe seed 0)",
                 "logreg": "logreg = logistic regression",
                 "knn": "knn = cosine k-nearest neighbours among the training split's features, a majority vote of "
                        "the 10 nearest; `knn k=200 weights=distance T=0.07` weights each vote exp(cosine / T) (the "
                        "protocol of self-supervised papers), `bank=N` keeps only the first N training samples as "
                        "neighbours (pretrain's online kNN)"}
    shown = [described[n] for n in described if n in names] + sorted(names - set(described))
    notes = ["Test accuracy of classifiers trained on the frozen features of each layer (`dimctl probe`): "
             + ", ".join(shown) + "."]
    if any(" " in c for c in classifiers):
        notes.append("A column name gives every probe setting off `dimctl probe`'s defaults (C, epochs, lr, "
                     "probe-seed = `dimctl probe --seed`, knn's k, vote and bank).")
    if any(len(v) > 1 for a in accuracy.values() for v in a.values()):
        notes.append("Cells with several results show mean ± standard deviation (n = results). A cell pools only "
                     "results of one probe protocol and probe seed: its spread is over pretrain seeds (or repeats of "
                     "the same probe), never over probe settings.")
    return notes


# Table 4's columns: (header, command, layer, paper key, digits); probe columns use the svm classifier.
TABLE4_COLUMNS = [
    ("SVM conv", "probe", "conv", "svm_conv", 2),
    ("SVM fc", "probe", "fc", "svm_fc", 2),
    ("SVM y", "probe", "y", "svm_y", 2),
    ("MS-SSIM", "reconstruct", "y", "ms_ssim", 3),
    ("I(X;Y)", "mine", "y", "mine", 2),
    ("NDM", "ndm", "y", "ndm", 3),
]
DIGITS = {"reconstruct": 3, "mine": 2, "ndm": 3}


def representation_table(models: list[EncoderRecord], with_paper: bool = False) -> Table | None:
    """Table 4: what else a representation holds, beside its linear separability.

    Shown when some encoder has an MS-SSIM, I(X;Y) or NDM result; rows are (encoder, dataset) pairs with one.
    """
    scalars = {m.sha256: scalar_results(m) for m in models}
    if not any(scalars.values()):
        return None
    accuracy = {m.sha256: probe_accuracy(m) for m in models}
    # Rows: encoders with an MS-SSIM, I(X;Y) or NDM result (the others are all in Table 1 already).
    rows_of = [(m, d) for m in models for d in dict.fromkeys(k[0] for k in scalars[m.sha256])]
    datasets = list(dict.fromkeys(d for _, d in rows_of))
    columns = list(TABLE4_COLUMNS)
    # Measurements of other layers (a decoder from conv, NDM of fc) get columns of their own.
    extra = sorted({(c, layer) for s in scalars.values() for (_, c, layer) in s if layer != "y"})
    columns += [(f"{SCALAR_NAMES[c]} ({layer})", c, layer, None, DIGITS[c]) for c, layer in extra]

    header = ["run", "objective"] + (["dataset"] if len(datasets) > 1 else [])
    numeric = [False] * len(header)
    body = [[m.label, objective(m)] + ([d] if len(datasets) > 1 else []) for m, d in rows_of]
    used = []
    for title, command, layer, paper_key, digits in columns:
        header.append(title)
        numeric.append(True)
        for row, (m, d) in zip(body, rows_of):
            if command == "probe":
                row.append(number(accuracy[m.sha256].get((d, layer, "svm"), []), digits, 100))
            else:
                values = scalars[m.sha256].get((d, command, layer), [])
                row.append(estimate(values, digits) if values else MISSING)
        if with_paper and paper_key:
            published = []
            for m, d in rows_of:
                setting = _paper_name(m)  # (family, Table-1 name, arch)
                published.append(paper.table4(d, setting[0], setting[2], paper_key) if setting else None)
            if any(published):
                header.append(f"{title} (paper)")
                numeric.append(True)
                for row, p in zip(body, published):
                    row.append(paper_cell(p))
                used += [p for p in published if p]
    title = "Table 4 — what the representation holds" + (f", {datasets[0]}" if len(datasets) == 1 else "")
    notes = ["SVM: linear-SVM test accuracy (%) on conv, fc and y. MS-SSIM: a decoder trained on the frozen y "
             "(`dimctl reconstruct`), test split. I(X;Y): MINE's estimate between images and y (`dimctl mine`). "
             "NDM: dependence between y's dimensions (`dimctl ndm`). Estimates in nats ± standard error."]
    return Table(title, header, body, numeric, notes + _paper_note(used))


def neighbors_table(models: list[EncoderRecord]) -> Table | None:
    """How often the nearest neighbours of each query share its class (App. A.4): a row per
    neighbours folder, so two runs of `dimctl neighbors` are two rows, never one pooled one."""
    body = []
    for m in models:
        folder_of = {id(r): run.name for run in [*([m.run] if m.run else []), *m.attached] for r in run.rows}
        groups: dict[tuple, list[dict]] = {}
        for r in m.results("neighbors"):
            key = (folder_of.get(id(r), "-"), str(r.get("dataset")), str(r.get("space", r.get("layer"))),
                   str(r.get("distance")), r.get("n", len(r.get("neighbors", []))))
            groups.setdefault(key, []).append(r)
        for (folder, dataset, space, distance, n), rows in groups.items():
            same = [float(r["same_class"]) for r in rows if isinstance(r.get("same_class"), (int, float))]
            body.append([m.label, folder, dataset, space, distance, str(n), str(len(rows)),
                         f"{100 * mean(same):.1f}" if same else MISSING])
    if not body:
        return None
    header = ["run", "folder", "dataset", "space", "distance", "neighbours", "queries", "same class (%)"]
    return Table("Nearest neighbours — share of neighbours in the query's class", header, body,
                 [False, False, False, False, False, True, True, True],
                 ["One random test image per class, its nearest test images (`dimctl neighbors`); folder: where its "
                  "grid and rows are (- for result lines given apart); the grids are in the runs' sections."])


def _scalar(value, artifacts: dict[str, str]) -> str | None:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and SHA256.match(value):  # a file's sha256: the run file it is, if given
        return artifacts.get(value, value[:12] + "…")
    if isinstance(value, str):
        return value
    return None  # lists and objects: in the JSON file, not in a table cell


def other_results_tables(models: list[EncoderRecord], loose_rows: list[dict],
                         artifacts: dict[str, str] | None = None) -> list[Table]:
    """One table per remaining command (mi, finetune, a generator's scores, …), every scalar key a column.

    A sha256 value that is an artifact of a given run folder shows as RUN/FILE (a generator's run, …).
    """
    artifacts = artifacts or {}
    labelled = [(m.label, r) for m in models for r in m.rows] + [(MISSING, r) for r in loose_rows]
    commands = list(dict.fromkeys(r["command"] for _, r in labelled if r["command"] not in TABLE_COMMANDS))
    tables = []
    for command in commands:
        rows = [(label, r) for label, r in labelled if r["command"] == command]
        keys = list(dict.fromkeys(k for _, r in rows for k, v in r.items()
                                  if k not in ("command", "encoder") and _scalar(v, artifacts) is not None))
        body = [[label] + [_scalar(r[k], artifacts) if k in r and _scalar(r[k], artifacts) is not None else MISSING
                           for k in keys] for label, r in rows]
        numeric = [False] + [all(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)
                                 for _, r in rows if k in r) for k in keys]
        tables.append(Table(f"Results of `dimctl {command}`", ["encoder", *keys], body, numeric))
    return tables


def flatten(value, prefix: str = "") -> list[tuple[str, str]]:
    """Nested settings as (dotted key, value) pairs."""
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [(prefix, value if isinstance(value, str) else json.dumps(value))]


def config_table(config: dict, title: str) -> Table:
    pairs = flatten(config)
    return Table(title, ["setting", "value"], [[k, v] for k, v in pairs], [False, False], main=False)


def metrics_keys(metrics: list[dict]) -> list[str]:
    """The logged numbers worth a curve: every numeric key but the step counters."""
    keys = dict.fromkeys(k for m in metrics for k, v in m.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "epoch", "elapsed_s"))
    return [k for k in keys if any(m.get(k) for m in metrics)]  # leave out all-zero counters


def training_table(metrics: list[dict], title: str) -> Table | None:
    keys = metrics_keys(metrics)
    if not keys:
        return None
    body = []
    for k in keys:
        values = [float(m[k]) for m in metrics if isinstance(m.get(k), (int, float))]
        body.append([k, f"{values[0]:.4g}", f"{values[-1]:.4g}", f"{min(values):.4g}", f"{max(values):.4g}", str(len(values))])
    return Table(title, ["metric", "first", "last", "min", "max", "points"], body,
                 [False, True, True, True, True, True], main=False)

"""The numbers of each encoder: results grouped by the encoder they measure, and its objective.

An encoder record (``EncoderRecord``) is one encoder file, known by its sha256: its run folder
(when given), the folders of measurements made on it (decoders, MINE curves, neighbour grids), and
every result row that names it.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean

from dimctl.evaluate.knn import protocol as knn_protocol
from dimctl.evaluate.probes import ProbeConfig
from dimctl.methods import METHODS
from dimctl.report.inputs import Inputs, RunFolder

# The measurement commands whose rows the paper's tables lay out, and the key of each one's number.
SCALAR_RESULTS = {"reconstruct": "ms_ssim", "mine": "estimate", "ndm": "ndm"}
LAYER_ORDER = ("conv", "fc", "y", "local", "pixels")
CLASSIFIER_ORDER = ("svm", "mlp", "logreg", "knn")
# How the report names each scalar measurement (SCALAR_RESULTS' commands).
SCALAR_NAMES = {"reconstruct": "MS-SSIM", "mine": "I(X;Y)", "ndm": "NDM"}
# The settings a probe row records beside its classifier (evaluate/probes.py), as a column shows them
# when off `dimctl probe`'s defaults; each is the ProbeConfig field of the same name (probe_seed: seed).
PROBE_SETTINGS = {"svm": (("svm_c", "C"), ("svm_tol", "tol"), ("svm_max_iter", "max-iter")),
                  "mlp": (("mlp_epochs", "epochs"), ("mlp_lr", "lr"), ("mlp_batch_size", "batch"),
                          ("probe_seed", "probe-seed"))}
PROBE_SETTINGS["svm-torch"] = PROBE_SETTINGS["svm"]
DEFAULT_PROBE = ProbeConfig()
DEFAULT_KNN = knn_protocol(DEFAULT_PROBE.knn_k, DEFAULT_PROBE.knn_weights, DEFAULT_PROBE.knn_temperature)
# Settings that do not change what a run learns: runs that differ only in them are the same experiment.
BOOKKEEPING = {"preset", "data_root", "download", "checkpoint_every", "keep_checkpoints", "log_every", "cpu",
               "workers", "nan_policy", "compile", "channels_last", "stream", "deterministic"}


@dataclass
class EncoderRecord:
    sha256: str
    label: str
    run: RunFolder | None = None
    attached: list[RunFolder] = field(default_factory=list)  # measurement folders about this encoder
    rows: list[dict] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)  # set when it pools runs that differ only in --seed
    runs: list[RunFolder] = field(default_factory=list)  # the pretrain runs it pools, when it pools some

    def results(self, command: str) -> list[dict]:
        return [r for r in self.rows if r.get("command") == command]


@dataclass
class Grouped:
    models: list[EncoderRecord]
    other_runs: list[RunFolder]  # folders about no encoder (generators, …)
    loose_rows: list[dict]  # rows that name no encoder (mi --selftest, …)
    artifacts: dict[str, str] = field(default_factory=dict)  # sha256 → "RUN/FILE" of every artifact given


def group(inputs: Inputs) -> Grouped:
    models: dict[str, EncoderRecord] = {}
    for run in inputs.runs:
        if run.encoder_sha256 and run.encoder_sha256 not in models:
            models[run.encoder_sha256] = EncoderRecord(run.encoder_sha256, run.name, run)
        elif run.encoder_sha256:  # a copy of the same encoder file: shown with the first folder that holds it
            models[run.encoder_sha256].attached.append(run)
    loose = []
    for row in inputs.rows:
        sha = row.get("encoder")
        if not isinstance(sha, str):
            loose.append(row)
            continue
        if sha not in models:
            models[sha] = EncoderRecord(sha, _label_from_row(row, sha))
        models[sha].rows.append(row)
    others = []
    for run in inputs.runs:
        if run.encoder_sha256:
            continue
        if run.about:
            if run.about not in models:
                label = Path(run.about_path).parent.name if run.about_path else f"encoder {run.about[:8]}"
                models[run.about] = EncoderRecord(run.about, label)
            models[run.about].attached.append(run)
        else:
            others.append(run)
    ordered = sorted(models.values(), key=lambda m: (m.run is None, m.label))
    _disambiguate(ordered)
    artifacts = {sha: f"{run.name}/{name}" for run in inputs.runs for name, sha in run.artifact_sha256.items()}
    return Grouped(ordered, others, loose, artifacts)


def pool_seeds(models: list[EncoderRecord]) -> list[EncoderRecord]:
    """Runs that differ only in ``--seed`` (and bookkeeping) as one model: their result rows
    together, so a table cell is the mean ± standard deviation over the seeds, labelled with them.
    Models without a pretrain run, and runs with no other seed, stay as they are."""
    groups: dict[str, list[tuple[int, EncoderRecord]]] = {}
    order: list[EncoderRecord | str] = []
    for m in models:
        settings = pretrain_settings(m)
        if settings is None or not isinstance(settings.get("seed"), int):
            order.append(m)
            continue
        key = repr(sorted((k, v) for k, v in settings.items() if k not in BOOKKEEPING and k != "seed"))
        if key not in groups:
            order.append(key)
        groups.setdefault(key, []).append((settings["seed"], m))
    pooled = []
    for entry in order:
        members = [(0, entry)] if isinstance(entry, EncoderRecord) else sorted(groups[entry], key=lambda s_m: s_m[0])
        if len(members) == 1:
            pooled.append(members[0][1])
            continue
        seeds = [seed for seed, _ in members]
        first = members[0][1]
        attached = [run for _, m in members for run in m.attached]
        rows = [row for _, m in members for row in m.rows]
        pooled.append(EncoderRecord(first.sha256, f"{first.label} (seeds {', '.join(map(str, seeds))})", first.run,
                            attached, rows, seeds, [m.run for _, m in members]))
    return pooled


def _label_from_row(row: dict, sha: str) -> str:
    """A name for an encoder seen only through result rows: the feature file it was extracted to."""
    features = row.get("features") or row.get("source")
    if isinstance(features, str) and features not in ("<stdin>", "-") and not features.endswith(".safetensors"):
        return Path(features).stem
    return f"encoder {sha[:8]}"


def _disambiguate(models: list[EncoderRecord]) -> None:
    counts: dict[str, int] = {}
    for m in models:
        counts[m.label] = counts.get(m.label, 0) + 1
    for m in models:
        if counts[m.label] > 1 and m.run is None:
            m.label = f"{m.label} ({m.sha256[:8]})"


def pretrain_settings(model_or_run: EncoderRecord | RunFolder | None) -> dict | None:
    """The resolved `dimctl pretrain` settings of a model's run, if it has one."""
    run = model_or_run.run if isinstance(model_or_run, EncoderRecord) else model_or_run
    if run is None or not run.config or run.config.get("command") != "pretrain":
        return None
    settings = run.config.get("config")
    return settings if isinstance(settings, dict) else None


def family(settings: dict) -> str | None:
    """The paper's name of a run's method (its entry's ``family``: DIM(G), DIM(L), DIM(L+G), AE, …),
    or None for DIM weights of no preset; a method this dimctl does not know, by its name."""
    method = settings.get("method", "dim")
    return METHODS[method].family(settings) if method in METHODS else method


def objective(model: EncoderRecord) -> str:
    """The training objective in the paper's words: `DIM(L) JSD`, `α=0.5 β=1 γ=0 infoNCE`, `random init`."""
    settings = pretrain_settings(model)
    if settings is None:
        return "-"
    if settings.get("epochs") == 0:
        return "random init (untrained)"
    return method_objective(settings)


def method_objective(settings: dict) -> str:
    """A run's method with the settings that tell its runs apart (its entry's ``describe``):
    `DIM(L) JSD +occlusion`, `β-VAE β=4`, `CPC infoNCE 3 rows`."""
    method = settings.get("method", "dim")
    return METHODS[method].describe(settings, _weight) if method in METHODS else method


def variants(settings: dict) -> list[str]:
    """The options a run turned on beyond its method's plain objective (`+occlusion`, `+coord abs`, …)."""
    method = settings.get("method", "dim")
    return METHODS[method].variants(settings) if method in METHODS else []


def paper_name(settings: dict) -> str | None:
    """The paper's Table 1 row a run sits beside (its entry's ``paper_name``), or None."""
    method = settings.get("method", "dim")
    return METHODS[method].paper_name(settings) if method in METHODS else method


def _weight(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def ordered(values, order: tuple[str, ...]) -> list:
    """Known names in their conventional order (a probe column "knn k=200 …" with its classifier,
    after the plain one), then the rest alphabetically."""
    def key(value: str) -> tuple:
        head = value.split(" ", 1)[0]
        return (order.index(head), value) if head in order else (len(order), value)
    return sorted(set(values), key=key)


def probe_classifier(row: dict) -> str:
    """A probe row's classifier with every recorded setting off `dimctl probe`'s defaults:
    "svm", "svm C=0.1", "knn k=200 weights=distance T=0.07", "mlp epochs=3 probe-seed=1". Results
    share a cell only under one name, so two protocols (or two probe seeds) never read as one
    number ± a spread. A row that records no settings (older dimctl) gets the bare name."""
    name = str(row.get("classifier"))
    shown = []
    for key, label in PROBE_SETTINGS.get(name, ()):
        default = getattr(DEFAULT_PROBE, "seed" if key == "probe_seed" else key)
        if key in row and row[key] != default:
            shown.append(f"{label}={_setting(row[key])}")
    knn = row.get("knn")
    if name == "knn" and knn is not None and knn != DEFAULT_KNN:
        shown.append(knn.removeprefix("cosine ") if isinstance(knn, str) else _setting(knn))
    return " ".join([name, *shown])


def _setting(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return value if isinstance(value, str) else json.dumps(value)


def probe_accuracy(model: EncoderRecord) -> dict[tuple[str, str, str], list[float]]:
    """(dataset, layer, classifier) → test accuracies of every probe row (several: repeated probes,
    or pooled seeds); the classifier is named with its protocol (``probe_classifier``)."""
    out: dict[tuple[str, str, str], list[float]] = {}
    for row in model.results("probe"):
        if isinstance(row.get("accuracy"), (int, float)):
            out.setdefault((str(row.get("dataset")), str(row.get("layer")), probe_classifier(row)), []).append(
                float(row["accuracy"]))
    return out


def scalar_results(model: EncoderRecord) -> dict[tuple[str, str, str], list[tuple[float, float | None]]]:
    """(dataset, command, layer) → (value, standard error) of every reconstruct, mine and ndm row. A
    decoder narrower or wider than the paper's (`reconstruct --decoder-width`) is a layer of its own,
    "y, decoder width 0.25": its MS-SSIM is neither averaged with nor set beside the paper's."""
    out: dict[tuple[str, str, str], list[tuple[float, float | None]]] = {}
    for command, key in SCALAR_RESULTS.items():
        for row in model.results(command):
            if isinstance(row.get(key), (int, float)):
                err = row.get("stderr")
                layer, width = str(row.get("layer", "y")), row.get("decoder_width", 1)
                if isinstance(width, (int, float)) and width != 1:
                    layer += f", decoder width {width:g}"
                out.setdefault((str(row.get("dataset")), command, layer), []).append(
                    (float(row[key]), float(err) if isinstance(err, (int, float)) else None))
    return out


def summary(model: EncoderRecord, dataset: str) -> dict[str, float]:
    """One number per measurement on ``dataset`` (means over repeats): `accuracy y svm (%)`, `MS-SSIM`, …"""
    out = {}
    for (data, layer, clf), values in probe_accuracy(model).items():
        if data == dataset:
            out[f"accuracy {layer} {clf} (%)"] = 100 * mean(values)
    for (data, command, layer), values in scalar_results(model).items():
        if data != dataset:
            continue
        name = SCALAR_NAMES[command] if layer == "y" else f"{SCALAR_NAMES[command]} ({layer})"
        out[name] = mean(v for v, _ in values)
    return out

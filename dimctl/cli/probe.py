"""`dimctl probe`: how well classifiers read labels off frozen features; test accuracy per layer."""

from pathlib import Path
from typing import Annotated

import typer

from dimctl.cli.options import split_list
from dimctl.cli.output import emit, note, note_unverified
from dimctl.cli.results import ResultsDirOpt, check_results_dir, result_line, save_results
from dimctl.cli.settings_options import with_settings
from dimctl.cli.stdin_frames import read_stdin_bytes
from dimctl.errors import UsageError
from dimctl.evaluate.probe_names import CLASSIFIER_NAMES
from dimctl.evaluate.probe_settings import ProbeConfig

# numpy, h5py (io/features.py) and torch (evaluate/probes.py) are imported when the command runs,
# so that `dimctl probe --help` starts in milliseconds.


@with_settings(ProbeConfig, after="as_json")  # every probe setting's option, default, help and range
def probe(
    features: Annotated[list[str] | None, typer.Argument(help="HDF5 feature files from `dimctl extract`; none or - reads stdin. Another tool's HDF5 (train/test groups), .npz or a folder of VISSL's exported .npy files is read unverified.")] = None,
    layer: Annotated[str, typer.Option(help="Comma-separated layers to probe, or `all` (every layer in the file).")] = "all",
    classifier: Annotated[str, typer.Option(help=f"Comma-separated: {', '.join(CLASSIFIER_NAMES)}, or `all`.")] = "svm",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per (file, layer, classifier) on stdout.")] = False,
    results_dir: ResultsDirOpt = None,
    **settings,
):
    """Train classifiers on the train split's features and report test accuracy.

    svm: linear SVM on standardised features (libsvm up to 20,000 training samples, LinearSVC's
    model by ADMM above; svm-torch: ADMM at every size). mlp: the paper's probe network (200
    units, dropout 0.1, BN, ReLU) trained by Adam 1e-3 (the paper's optimiser: 1e-4 with step
    decay over a longer run, which reads Y 1.4 points worse at these 50 epochs; --mlp-lr 1e-4 for
    it). logreg: logistic regression. knn: cosine k-nearest neighbours (--knn-weights distance
    --knn-k 200: the weighted kNN that self-supervised papers report; with --knn-bank 10000, what
    pretrain --eval-every logs).
    --json rows name the solver and its iterations and say whether it converged.

    Multi-label files (CelebA's 40 attributes) get one binary classifier per attribute; the
    accuracy is their mean, and --json adds each attribute's accuracy.

    Examples:

      dimctl probe features.h5 --layer y --classifier svm,mlp

      dimctl extract runs/demo/encoder.safetensors | dimctl probe --json

      dimctl probe features.h5 --results-dir runs/demo \\
          && dimctl report runs/demo -o report.html
    """
    import numpy as np

    from dimctl import progress
    from dimctl.evaluate.probes import CLASSIFIERS, probe_attribute_results, probe_result
    from dimctl.io.feature_reader import read_features, require_classes, require_rows

    try:
        config = ProbeConfig(**settings).validate()
    except ValueError as e:
        raise UsageError(str(e)) from None
    classifiers = list(CLASSIFIERS) if classifier == "all" else split_list(classifier, list(CLASSIFIERS), "--classifier")
    check_results_dir(results_dir)
    sources = features or ["-"]
    if sources.count("-") > 1:
        raise UsageError("stdin (-) can be read only once")
    rows, runs = [], {}  # runs: each source's encoder run, which names a piped file's column
    try:  # an interrupted or failed call keeps the lines it completed (they were printed already)
        for source in sources:
            def wanted(available: list[str], name: str = "<stdin>" if source == "-" else source) -> list[str]:
                return available if layer == "all" else split_list(layer, available, f"--layer (in {name})")

            # Only the layers asked for are read from the file.
            feats = read_features(read_stdin_bytes() if source == "-" else Path(source), select=wanted)
            require_rows(feats, "a probe", train=2, test=1)  # two rows of two classes to fit, one to score
            runs[feats.name] = encoder_run(feats.encoder)
            layers = feats.layers
            train_y, test_y = feats.layer("train", "labels"), feats.layer("test", "labels")
            multi_label = train_y.ndim == 2
            if multi_label and not (np.isin(train_y, (0, 1)).all() and np.isin(test_y, (0, 1)).all()):
                raise UsageError(f"{feats.name} has (N, K) labels that are not all 0/1 attributes; nothing to probe")
            if (train_y < 0).any() or (test_y < 0).any():
                raise UsageError(f"{feats.name} has no class labels for every image (an unlabelled folder?); nothing to probe")
            require_classes(feats)
            note_unverified(feats)  # after the refusals: a refused file's one line is its error
            for name in layers:
                for clf in classifiers:
                    arrays = (feats.layer("train", name), train_y, feats.layer("test", name), test_y)
                    extra = {}
                    label = f"probe {feats.name}: {name} with {clf} ({arrays[0].shape[0]} training samples)"
                    with progress.activity(label):
                        if multi_label:  # one binary classifier per attribute; their mean accuracy leads
                            results = probe_attribute_results(*arrays, clf, config)
                            per_attribute = [r.accuracy for r in results]
                            accuracy = sum(per_attribute) / len(per_attribute)
                            names = feats.dataset.get("attributes") or [str(k) for k in range(len(per_attribute))]
                            extra = {"multi_label": True, "n_attributes": len(per_attribute),
                                     "attribute_accuracy": {n: round(a, 6) for n, a in zip(names, per_attribute)},
                                     **_solver_summary([r.info for r in results])}
                        else:
                            result = probe_result(*arrays, clf, config)
                            accuracy, extra = result.accuracy, dict(result.info)
                    if extra.get("solver_converged") is False:  # the library reports; the command warns
                        hint = "; raise --svm-max-iter or --svm-tol" if "admm" in extra["solver"] else ""
                        note(f"probe {feats.name}: {name} with {clf}: {extra['solver']} stopped at its iteration cap "
                             f"({extra['solver_iterations']}) before its tolerance{hint}")
                    row = {
                        "command": "probe", "features": feats.name, "layer": name, "classifier": clf,
                        "accuracy": round(accuracy, 6), "encoder": feats.encoder.get("sha256"),
                        "dataset": feats.dataset.get("name"), "n_train": int(train_y.shape[0]),
                        "n_test": int(test_y.shape[0]), "dim": int(feats.layer("train", name)[0].size), **extra,
                    }
                    if as_json:
                        emit(result_line(row, feats.name))
                    rows.append(row)
    finally:
        if rows:
            save_results(results_dir, "probe", rows)
    if not as_json:
        _table(rows, runs)


def _solver_summary(infos: list[dict]) -> dict:
    """One row's solver fields for per-attribute fits: the solvers used, the most iterations any
    took, whether all converged (attributes constant in training have no solver and are left out)."""
    protocol = next(({"knn": i["knn"]} for i in infos if "knn" in i), {})
    infos = [i for i in infos if "solver" in i]
    if not infos:
        return protocol
    return {"solver": ",".join(dict.fromkeys(i["solver"] for i in infos)),
            "solver_iterations": max(i["solver_iterations"] for i in infos),
            "solver_converged": all(i["solver_converged"] for i in infos)}


def encoder_run(encoder: dict) -> str | None:
    """The run an encoder came from, as a feature file records it (`dimctl extract` writes the
    encoder's path as given: RUN/encoder.safetensors is RUN's folder name, another file its stem);
    None where nothing is recorded (another tool's file)."""
    path = encoder.get("path")
    if not isinstance(path, str) or not path.strip():
        return None
    path = Path(path)
    return path.parent.name if path.stem == "encoder" and path.parent.name not in ("", ".", "..") else path.stem


def _table(rows: list[dict], runs: dict[str, str | None] | None = None) -> None:
    """Rows (layer, classifier); one accuracy column per feature file, so files sit side by side.
    A column is named by its file's stem (its path where stems repeat); a piped file (<stdin>) by
    its encoder's run in ``runs``, <stdin> only where the file records none."""
    runs = runs or {}
    sources = list(dict.fromkeys(r["features"] for r in rows))
    piped = {s: runs.get(s) or s for s in sources if s == "<stdin>"}
    stems = [piped.get(s) or Path(s).stem for s in sources]
    labels = stems if len(set(stems)) == len(stems) else [piped.get(s) or s for s in sources]
    keys = list(dict.fromkeys((r["layer"], r["classifier"]) for r in rows))
    cells = {(r["layer"], r["classifier"], r["features"]): f"{100 * r['accuracy']:.2f}" for r in rows}
    header = ("layer", "classifier", *labels)
    body = [(layer, clf, *(cells.get((layer, clf, s), "-") for s in sources)) for layer, clf in keys]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    emit("test accuracy (%)")
    for line in (header, tuple("-" * w for w in widths), *body):
        emit("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())

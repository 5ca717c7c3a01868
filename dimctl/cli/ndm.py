"""`dimctl ndm`: Neural Dependency Measure of a representation (paper App. A.6)."""

from pathlib import Path
from typing import Annotated

import typer

from dimctl.cli.options import DataRootOpt, DownloadOpt, EncoderDatasetOpt, SkipBadImagesOpt
from dimctl.cli.output import emit
from dimctl.cli.results import ResultsDirOpt, check_results_dir, result_line, save_results
from dimctl.cli.mi import PatienceOpt, ValidationOpt, _progress, early_stopping, fit_fields
from dimctl.cli.sources import (ENCODER_FILE, encoder_and_dataset, encoder_file, encoder_layer, feature_layer,
                                open_features, pick_device)
from dimctl.errors import UsageError
from dimctl.evaluate.marginals import standardise
from dimctl.io.features import looks_like_features
from dimctl.io.reading import check_regular
from dimctl.evaluate.heldout import EarlyStopping
from dimctl.evaluate.ndm import NDMConfig, neural_dependency


def ndm(
    source: Annotated[str, typer.Argument(help="A feature file (or - for stdin; another tool's HDF5, .npz or VISSL folder, unverified) or an encoder.safetensors (or its run folder).")] = "-",
    layer: Annotated[str, typer.Option(help="The representation to measure.")] = "y",
    dataset: EncoderDatasetOpt = None,
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    skip_bad_images: SkipBadImagesOpt = False,
    steps: Annotated[int, typer.Option(help="Most discriminator training steps; training stops earlier when the validation estimate stops rising.")] = NDMConfig.steps,
    batch_size: Annotated[int, typer.Option(help="Samples per step (each shuffled per dimension for the negatives).")] = 128,
    lr: Annotated[float, typer.Option(help="Adam learning rate of the discriminator.")] = 1e-4,
    validation: ValidationOpt = EarlyStopping.fraction,
    patience: PatienceOpt = EarlyStopping.patience,
    seed: Annotated[int, typer.Option(help="Seed of the discriminator and the shuffles.")] = 0,
    cpu: Annotated[bool, typer.Option("--cpu", help="Run the encoder on the CPU even when a GPU is present.")] = False,
    results_dir: ResultsDirOpt = None,
):
    """Estimate KL(joint ‖ product of marginals) of a representation's dimensions, in nats; one JSON line.

    Near 0: independent factors. Larger: dimensions that depend on each other. Dimensions are
    shuffled independently across the batch to sample the product of marginals; a 1000 → 200 → 1
    discriminator is trained on the train split; the DV bound is evaluated on the test split.

    Examples:

      dimctl ndm features.h5 --layer y

      dimctl ndm runs/demo/encoder.safetensors --dataset digits

      dimctl extract runs/demo/encoder.safetensors --layer y | dimctl ndm -
    """
    if steps < 1 or batch_size < 2:
        raise UsageError("--steps must be ≥ 1 and --batch-size ≥ 2")
    stopping = early_stopping(validation, patience)
    check_results_dir(results_dir)
    if source != "-" and (Path(source) / ENCODER_FILE).is_file():  # a run folder: its encoder, not VISSL's .npy
        source = str(encoder_file(Path(source)))
    if source != "-" and not Path(source).exists():
        raise UsageError(f"{source}: no such file")
    if source != "-" and not Path(source).is_dir():
        check_regular(source)  # before its first bytes are read: a FIFO would block that read forever
    if source == "-" or Path(source).is_dir() or looks_like_features(Path(source)):  # a folder: VISSL's .npy
        feats = open_features(source, (layer,))
        arrays, name = feature_layer(feats, layer), feats.name
    else:
        device = pick_device(cpu)
        artifact, data = encoder_and_dataset(Path(source), dataset, data_root, download, device, skip_bad_images)
        arrays, name = encoder_layer(artifact, data, layer, device), source
    train, test = standardise(arrays.train, arrays.test)
    config = NDMConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, early_stopping=stopping)
    result = neural_dependency(train, test, config, on_step=_progress("ndm", steps))
    row = {
        "command": "ndm", "layer": layer, "ndm": round(result.ndm, 6), "stderr": round(result.stderr, 6),
        "unit": "nats", **fit_fields(result), "batch_size": batch_size, "eval_batches": result.eval_batches,
        "source": name, "encoder": arrays.encoder, "dataset": arrays.dataset,
    }
    save_results(results_dir, "ndm", [row])
    emit(result_line(row, name))

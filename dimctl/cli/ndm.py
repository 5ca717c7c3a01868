"""`dimctl ndm`: Neural Dependency Measure of a representation (paper App. A.6)."""

from pathlib import Path
from typing import Annotated

import typer

from dimctl.cli.options import DataRootOpt, DownloadOpt, EncoderDatasetOpt, SkipBadImagesOpt
from dimctl.cli.output import emit
from dimctl.cli.results import ResultsDirOpt, check_results_dir, result_line, save_results
from dimctl.cli.settings_options import with_settings
from dimctl.cli.mi import _progress, estimate_config, fit_fields
from dimctl.cli.sources import (ENCODER_FILE, encoder_and_dataset, encoder_file, encoder_layer, feature_layer,
                                open_features, pick_device)
from dimctl.errors import UsageError
from dimctl.evaluate.marginals import standardise
from dimctl.io.features import looks_like_features
from dimctl.io.reading import check_regular
from dimctl.evaluate.ndm import NDMConfig, neural_dependency


@with_settings(NDMConfig, after="skip_bad_images")  # every estimate setting's option, default, help and range
def ndm(
    source: Annotated[str, typer.Argument(help="A feature file (or - for stdin; another tool's HDF5, .npz or VISSL folder, unverified) or an encoder.safetensors (or its run folder).")] = "-",
    layer: Annotated[str, typer.Option(help="The representation to measure.")] = "y",
    dataset: EncoderDatasetOpt = None,
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    skip_bad_images: SkipBadImagesOpt = False,
    cpu: Annotated[bool, typer.Option("--cpu", help="Run the encoder on the CPU even when a GPU is present.")] = False,
    results_dir: ResultsDirOpt = None,
    **settings,
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
    config = estimate_config(NDMConfig, settings)
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
    result = neural_dependency(train, test, config, on_step=_progress("ndm", config.steps))
    row = {
        "command": "ndm", "layer": layer, "ndm": round(result.ndm, 6), "stderr": round(result.stderr, 6),
        "unit": "nats", **fit_fields(result), "batch_size": config.batch_size, "eval_batches": result.eval_batches,
        "source": name, "encoder": arrays.encoder, "dataset": arrays.dataset,
    }
    save_results(results_dir, "ndm", [row])
    emit(result_line(row, name))

"""`dimctl extract`: features of the train and test splits under a frozen encoder, as HDF5."""

import io
from pathlib import Path
from typing import Annotated

import h5py
import typer

from dimctl.cli.common import (DataRootOpt, DatasetOpt, DownloadOpt, SkipBadImagesOpt, check_encoder_fits,
                               progress_enabled, split_list, stdout_is_terminal, write_stdout_bytes)
from dimctl.cli.sources import pick_device
from dimctl.data.registry import load_dataset
from dimctl.errors import UsageError
from dimctl.evaluate.extract import PIXELS, iter_features
from dimctl.io.artifacts import describe_metadata, load_encoder
from dimctl.io.atomic import atomic_path
from dimctl.io.features import SPLITS, USERBLOCK, create_feature_file, init_feature_file, seal_block, seal_file
from dimctl.models.encoders import tap_shapes


def extract(
    encoder: Annotated[Path, typer.Argument(help="An encoder.safetensors made by `dimctl pretrain`.")],
    dataset: DatasetOpt = "digits",
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    skip_bad_images: SkipBadImagesOpt = False,
    layers: Annotated[str, typer.Option(help="Comma-separated taps: conv, fc, y, local, and `pixels` (the input itself, a baseline).")] = "conv,fc,y",
    output: Annotated[str | None, typer.Option("--output", "-o", help="HDF5 file to write, or - for stdout. Default: stdout when it is a pipe.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 256,
    cpu: Annotated[bool, typer.Option("--cpu", help="Run on the CPU even when a GPU is present.")] = False,
):
    """Extract features of the train and test splits into one HDF5 file.

    Examples:

      dimctl extract runs/demo/encoder.safetensors -o features.h5

      dimctl extract runs/demo/encoder.safetensors --dataset digits | dimctl probe --json
    """
    if output is None and stdout_is_terminal():
        raise UsageError("stdout is a terminal; pass -o FILE.h5 or pipe into `dimctl probe`")
    if batch_size < 1:
        raise UsageError("--batch-size must be positive")
    device = pick_device(cpu)
    artifact = load_encoder(encoder, device=device)
    shapes = tap_shapes(artifact.config)
    wanted = split_list(layers, [*shapes, PIXELS], "--layers")
    data = load_dataset(dataset, data_root, download, image_size=artifact.config.image_size,
                        skip_bad_images=skip_bad_images)
    check_encoder_fits(encoder, artifact.config, dataset, data)
    shapes[PIXELS] = tuple(data.train_images.shape[1:])
    encoder_meta = {**describe_metadata(artifact.metadata), "sha256": artifact.sha256, "path": str(encoder)}
    sizes = {split: data.split(split)[0].shape[0] for split in SPLITS}

    def fill(f: h5py.File) -> None:
        init_feature_file(f, encoder_meta, data.describe(), wanted, sizes, shapes, tuple(data.train_labels.shape[1:]))
        bar = _bar(sum(sizes.values()))
        for split in SPLITS:
            images, labels = data.split(split)
            f[split]["labels"][:] = labels.numpy()
            for start, batch in iter_features(artifact.encoder, images, wanted, batch_size, device):
                for layer, values in batch.items():
                    f[split][layer][start:start + values.shape[0]] = values
                if bar is not None:
                    bar.update(next(iter(batch.values())).shape[0])
        if bar is not None:
            bar.close()

    if output is None or output == "-":
        buffer = io.BytesIO()  # h5py cannot seek a pipe: build the file in memory, then copy bytes
        with create_feature_file(buffer) as f:
            fill(f)
        data = buffer.getbuffer()  # a view: a 1.5 GB file is not copied
        write_stdout_bytes(seal_block(data))
        write_stdout_bytes(data[USERBLOCK:])
    else:
        with atomic_path(output) as tmp:
            with create_feature_file(tmp) as f:
                fill(f)
            seal_file(tmp)


def _bar(total: int):
    if not progress_enabled():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="extract", dynamic_ncols=True)

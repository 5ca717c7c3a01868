"""`dimctl extract`: features of the train and test splits under a frozen encoder, as HDF5."""

import ctypes
import io
import os
import stat
import sys
from typing import Annotated

import typer

from dimctl import progress
from dimctl.cli.options import (CpuOpt, DataRootOpt, DownloadOpt, EncoderArg, EncoderDatasetOpt, ForwardBatchOpt,
                                ReplaceOpt, SkipBadImagesOpt, refuse_to_replace, split_list)
from dimctl.cli.output import stdout_is_terminal, write_stdout_bytes
from dimctl.cli.sources import check_encoder_fits, dataset_for, pick_device
from dimctl.data.registry import load_dataset
from dimctl.errors import UsageError
from dimctl.evaluate.extract import PIXELS, iter_features
from dimctl.io.artifacts import describe_metadata, load_encoder
from dimctl.io.atomic import atomic_path
from dimctl.io.features import SPLITS, FeatureWriter, FileSink, MemorySink, layout_feature_file
from dimctl.models.encoders import tap_shapes
from dimctl.precision import resolve_precision

PRECISIONS = ("fp32", "bf16", "auto")


def extract(
    encoder: EncoderArg,
    dataset: EncoderDatasetOpt = None,
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    skip_bad_images: SkipBadImagesOpt = False,
    layer: Annotated[str, typer.Option(help="Comma-separated layers: conv, fc, y, local, and `pixels` (the input itself, a baseline).")] = "conv,fc,y",
    output: Annotated[str | None, typer.Option("--output", "-o", help="HDF5 file to write, or - for stdout. Default: stdout when it is a pipe.")] = None,
    batch_size: ForwardBatchOpt = 256,
    cpu: CpuOpt = False,
    precision: Annotated[str, typer.Option(help="fp32, bf16 or auto: the encoder's forward in fp32 or under bf16 autocast "
                                                "(auto: as in pretrain — bf16 where the device runs it fast, fp32 elsewhere). "
                                                "Features are float32 on disk either way; the choice is recorded in the file.")] = "fp32",
    force: ReplaceOpt = False,
):
    """Extract features of the train and test splits into one HDF5 file.

    Examples:

      dimctl extract runs/demo/encoder.safetensors -o features.h5

      dimctl extract runs/demo/encoder.safetensors --dataset digits \\
          | dimctl probe --json
    """
    if output is None and stdout_is_terminal():
        raise UsageError("stdout is a terminal; pass -o FILE.h5 or pipe into `dimctl probe`")
    if output not in (None, "-"):
        refuse_to_replace([output], force, "-o ")
    if batch_size < 1:
        raise UsageError("--batch-size must be positive")
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    device = pick_device(cpu)
    precision = resolve_precision(precision, device.type)
    _keep_freed_memory()
    artifact = load_encoder(encoder, device=device)
    shapes = tap_shapes(artifact.config)
    wanted = split_list(layer, [*shapes, PIXELS], "--layer")
    dataset, data_root = dataset_for(artifact, dataset, data_root)
    data = load_dataset(dataset, data_root, download, image_size=artifact.config.image_size,
                        skip_bad_images=skip_bad_images)
    check_encoder_fits(encoder, artifact.config, dataset, data)
    shapes[PIXELS] = tuple(data.train_images.shape[1:])
    # The header's keys in a fixed order (safetensors gives them in any): the same inputs, the same bytes.
    encoder_meta = {**dict(sorted(describe_metadata(artifact.metadata).items())), "sha256": artifact.sha256,
                    "path": str(encoder)}
    sizes = {split: data.split(split)[0].shape[0] for split in SPLITS}

    layout = layout_feature_file(encoder_meta, data.describe(), wanted, sizes, shapes, tuple(data.train_labels.shape[1:]),
                                 precision=precision)

    def fill(sink: FileSink | MemorySink) -> None:
        # The writer thread writes and hashes batch i while the encoder computes batch i+1
        # (DIMCTL_INLINE_WRITER=1: the same work in this thread, between batches, for comparison).
        with FeatureWriter(layout, sink, threaded=os.environ.get("DIMCTL_INLINE_WRITER", "") in ("", "0")) as writer:
            for split in SPLITS:
                images, labels = data.split(split)
                writer.write(split, "labels", 0, labels.numpy())
                with progress.activity(f"extract {split}"):  # the encoder's batches show inside it
                    for start, batch in iter_features(artifact.encoder, images, wanted, batch_size, device, precision):
                        for layer, values in batch.items():
                            writer.write(split, layer, start, values)
            writer.seal()

    if output is None or output == "-":
        # A pipe cannot seek and the checksum block comes first: build the file in memory, then copy it out.
        sink = MemorySink(layout)
        fill(sink)
        _widen_stdout_pipe()
        for piece in sink.pieces():
            write_stdout_bytes(piece)
    else:
        with atomic_path(output) as tmp:
            with FileSink(tmp, layout) as sink:
                fill(sink)


def _widen_stdout_pipe() -> None:
    """A 1 MiB pipe buffer (Linux's default limit for anyone) instead of 64 KiB: a gigabyte goes
    through in a sixteenth of the context switches with the reader."""
    try:
        import fcntl

        if stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode):
            fcntl.fcntl(sys.stdout.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass  # not a pipe, no fcntl, or a limit below 1 MiB: the default size works too


def _keep_freed_memory() -> None:
    """Let glibc's malloc keep freed batches' memory for the next batches. By default it gives each
    batch's large blocks back to the kernel (they outlive the next forward here, in the writer's
    queue) and then faults fresh zeroed pages in for every batch: ~10% of a CPU forward. No-op
    where the C library has no mallopt."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD: blocks up to 256 MB come from the heap (and return to it)
    mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD: keep up to 512 MB free at the heap's top


"""`dimctl export`: an encoder as ONNX, TorchScript or a Hugging Face Hub folder (dimctl/io/export.py)."""

from pathlib import Path
from typing import Annotated

import typer

from dimctl.cli.options import EncoderArg, ReplaceOpt, refuse_to_replace, split_list
from dimctl.cli.output import emit, note
from dimctl.errors import UsageError

# torch and the exporters are imported when the command runs, so that `dimctl export --help` starts in milliseconds.
TAPS = ["local", "conv", "fc", "y"]


def export(
    encoder: EncoderArg,
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx, torchscript, or hf (a Hugging Face Hub folder).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The file to write (onnx, torchscript) or the folder (hf).")],
    layer: Annotated[str | None, typer.Option(
        help="onnx, torchscript: comma-separated taps to output, in order: local, conv, fc, y. Default: y.")] = None,
    results: Annotated[Path | None, typer.Option(
        help="hf: a JSON-lines file of `dimctl probe --json` rows of this encoder, shown as a table in the model card.")] = None,
    push_to_hub: Annotated[str | None, typer.Option(
        "--push-to-hub", metavar="REPO",
        help="hf: then upload the folder to this Hub repository (needs the hf extra, the network and a Hub login).")] = None,
    force: ReplaceOpt = False,
):
    """Export an encoder as ONNX, TorchScript or a Hugging Face Hub folder, with its preprocessing.

    Examples:

      dimctl export runs/demo --format onnx --layer conv,fc,y -o encoder.onnx

      dimctl export runs/demo --format torchscript -o encoder.pt

      dimctl export runs/demo --format hf --results probe.jsonl -o hub/demo
    """
    from dimctl.io import export as exporting

    if fmt not in exporting.FORMATS:
        raise UsageError(f"--format must be one of {', '.join(exporting.FORMATS)}, not {fmt!r}")
    if fmt == "hf":
        if layer is not None:
            raise UsageError("--layer is for onnx and torchscript; an hf folder holds the whole encoder")
    elif results is not None or push_to_hub is not None:
        raise UsageError(f"--{'results' if results is not None else 'push-to-hub'} is for --format hf")
    layers = split_list(layer or "y", TAPS, "--layer")
    if len(set(layers)) != len(layers):
        raise UsageError("--layer names a tap twice")
    refuse_to_replace([output], force, "-o ")
    if fmt == "hf":
        from dimctl.io.atomic import check_folder_target

        check_folder_target(output, exporting.HF_FILES, "-o ")
        if push_to_hub is not None:
            exporting.require_hub()  # before the work, not after it
    if results is not None:
        from dimctl.io.reading import require_file

        require_file(results, f"--results {results}")  # a FIFO is refused here, before the export's work

    from dimctl.io.artifacts import load_encoder

    artifact = load_encoder(encoder, device="cpu")  # exported from the CPU: the formats are device-independent
    if fmt == "onnx":
        exporting.export_onnx(artifact, layers, output)
    elif fmt == "torchscript":
        exporting.export_torchscript(artifact, layers, output)
    else:
        rows = exporting.read_probe_rows(results, artifact.sha256) if results is not None else None
        exporting.export_hf(artifact, output, rows)
        if push_to_hub is not None:
            note(f"export: uploaded to {exporting.push_to_hub(output, push_to_hub)}")
    emit(str(output))

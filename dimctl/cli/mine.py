"""`dimctl mine`: MINE's estimate of I(X; Y) between images and an encoder's representation."""

import json
from pathlib import Path
from typing import Annotated

import typer

from dimctl.cli.options import (CpuOpt, DataRootOpt, DownloadOpt, EncoderArg, EncoderDatasetOpt, ReplaceOpt,
                                SkipBadImagesOpt, refuse_to_replace)
from dimctl.cli.output import emit
from dimctl.cli.results import result_line
from dimctl.cli.settings_options import with_settings
from dimctl.cli.mi import _progress, estimate_config, fit_fields
from dimctl.cli.sources import encoder_and_dataset, encoder_layer, pick_device
from dimctl.evaluate.marginals import standardise
from dimctl.evaluate.mine import MINEConfig, estimate_image_mi
from dimctl.io.atomic import atomic_folder, check_folder_target, owned_names, write_text

OUTPUTS = ("metrics.jsonl", "result.json")
# The run folder is made whole beside itself and renamed into place (a full disk leaves no empty
# or half-written folder), so it may hold only these files: any other is refused.
_is_output = owned_names(r"metrics\.jsonl|result\.json")


@with_settings(MINEConfig, after="layer")  # every estimate setting's option, default, help and range
def mine(
    encoder: EncoderArg,
    dataset: EncoderDatasetOpt = None,
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    skip_bad_images: SkipBadImagesOpt = False,
    layer: Annotated[str, typer.Option(help="The representation Y (y, fc or conv).")] = "y",
    out: Annotated[Path | None, typer.Option("--out", help="Folder for the training curve and result, made beside itself and renamed into place whole (so it may hold only those). Default runs/mine-<encoder's folder>-<layer>.")] = None,
    cpu: CpuOpt = False,
    force: ReplaceOpt = False,
    **settings,
):
    """Estimate I(X; Y) in nats between images X and the encoder's frozen Y, as MINE does; one JSON line.

    A statistics network (conv net on the image, joined with Y, then 512 → 512 → 1) is trained with
    the DV bound and MINE's moving-average gradient; negatives pair an image with another image's Y.
    The estimate is the DV bound on the test split. The curve goes to OUT/metrics.jsonl.

    Example:

      dimctl mine runs/demo/encoder.safetensors --dataset digits --steps 2000
    """
    config = estimate_config(MINEConfig, settings)
    run_dir = out or Path("runs") / f"mine-{encoder.resolve().parent.name}-{layer}"
    check_folder_target(run_dir, _is_output, "--out: ")
    refuse_to_replace([run_dir / name for name in OUTPUTS], force, "--out: ")
    device = pick_device(cpu)
    artifact, data = encoder_and_dataset(encoder, dataset, data_root, download, device, skip_bad_images)
    arrays = encoder_layer(artifact, data, layer, device)
    train_y, test_y = standardise(arrays.train, arrays.test)
    result = estimate_image_mi(data.train_images.to(device), train_y.to(device), data.test_images.to(device),
                               test_y.to(device), config, on_step=_progress("mine", config.steps), device=device)
    row = {
        "command": "mine", "layer": layer, "estimate": round(result.estimate, 6), "stderr": round(result.stderr, 6),
        "unit": "nats", **fit_fields(result), "batch_size": config.batch_size,
        "eval_batches": result.eval_batches, "encoder": artifact.sha256, "dataset": data.name, "run": str(run_dir),
    }
    line = result_line(row, str(encoder))
    with atomic_folder(run_dir, _is_output) as folder:
        write_text(folder / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in result.curve))
        write_text(folder / "result.json", line + "\n")
    emit(line)

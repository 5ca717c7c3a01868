"""`dimctl reconstruct`: decode a frozen encoder's layer back to images; MS-SSIM of the test split."""

import json
from pathlib import Path
from typing import Annotated

import typer

from dimctl.cli.options import (CpuOpt, DataRootOpt, DownloadOpt, EncoderArg, EncoderDatasetOpt, ReplaceOpt,
                                SkipBadImagesOpt, refuse_to_replace)
from dimctl.cli.output import emit
from dimctl.cli.progress import TrainingProgress
from dimctl.cli.results import result_line
from dimctl.cli.sources import encoder_and_dataset, pick_device
from dimctl.errors import ArtifactError, UsageError
from dimctl.evaluate.msssim import describe_setting, ms_ssim_setting
from dimctl.evaluate.reconstruct import DEFAULT_LR, SOURCE_LAYERS, train_decoder
from dimctl.io.artifacts import load_decoder, save_decoder
from dimctl.io.atomic import atomic_folder, check_folder_target, owned_names, write_text
from dimctl.io.images import save_image_rows

GRID_IMAGES = 8  # test images shown in reconstructions.png
OUTPUTS = ("decoder.safetensors", "reconstructions.png", "metrics.jsonl", "result.json")  # what a run folder gets
# The run folder is made whole beside itself and renamed into place (a full disk leaves no empty
# or half-written folder), so it may hold only these files: any other is refused.
_is_output = owned_names("|".join(name.replace(".", r"\.") for name in OUTPUTS))


def reconstruct(
    encoder: EncoderArg,
    dataset: EncoderDatasetOpt = None,
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    skip_bad_images: SkipBadImagesOpt = False,
    layer: Annotated[str, typer.Option("--layer", help=f"The layer to decode: {', '.join(SOURCE_LAYERS)}.")] = "y",
    decoder: Annotated[Path | None, typer.Option("--decoder", help="Score (and with --epochs, train further) this decoder of the encoder instead of a fresh one: the decoder.safetensors that `dimctl pretrain --method ae|vae|beta-vae|aae` trained with it.")] = None,
    decoder_width: Annotated[float, typer.Option("--decoder-width", help="A fresh decoder's channel multiplier: 1 is the paper's 512-256-128-64 (Table 4); 0.25 leaves a sixteenth of its convolutions' work, for a quick look on a CPU.")] = 1.0,
    epochs: Annotated[int | None, typer.Option(help="Passes over the training split. Default 10, or 0 with --decoder (score it as trained). 0 without --decoder scores the untrained decoder, a floor.", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option(help="Images per decoder training step (at least 2, for BatchNorm).")] = 64,
    lr: Annotated[float, typer.Option(help="Adam learning rate (default betas).")] = DEFAULT_LR,
    seed: Annotated[int, typer.Option(help="Seed for the decoder's initialisation and the data order.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder, made beside itself and renamed into place whole (so it may hold only what reconstruct writes). Default runs/reconstruct-ENCODER_FOLDER-LAYER.")] = None,
    cpu: CpuOpt = False,
    force: ReplaceOpt = False,
):
    if layer not in SOURCE_LAYERS:
        raise UsageError(f"--layer: unknown layer {layer!r}; choose from {', '.join(SOURCE_LAYERS)}")
    if epochs is None:
        epochs = 0 if decoder is not None else 10
    if epochs < 0:
        raise UsageError("--epochs must be 0 or more")
    if batch_size < 2:
        raise UsageError("--batch-size must be at least 2 (the decoder's BatchNorm needs two images)")
    if lr <= 0:
        raise UsageError("--lr must be positive")
    if decoder_width <= 0:
        raise UsageError("--decoder-width must be positive")
    if decoder is not None and decoder_width != 1.0:
        raise UsageError("--decoder-width sets a fresh decoder; the --decoder given has its own width")
    run_dir = out or Path("runs") / f"reconstruct-{encoder.resolve().parent.name}-{layer}"
    check_folder_target(run_dir, _is_output, "--out: ")
    refuse_to_replace([run_dir / name for name in OUTPUTS], force, "--out: ")

    device = pick_device(cpu)
    artifact, data = encoder_and_dataset(encoder, dataset, data_root, download, device, skip_bad_images)
    if artifact.config.image_size != 32:
        raise UsageError(f"{encoder} takes {artifact.config.image_size}×{artifact.config.image_size} images; "
                         f"the paper's decoder, and so reconstruct, is for 32×32 encoders")
    setting = ms_ssim_setting(data.image_size)
    start = None
    if decoder is not None:
        given = load_decoder(decoder, device)
        if given.encoder["sha256"] != artifact.sha256:
            raise ArtifactError(f"{decoder} decodes the encoder {given.encoder['path']} (sha256 {given.encoder['sha256'][:12]}…), "
                                f"not {encoder}")
        if given.config.source_layer != layer:
            raise UsageError(f"{decoder} decodes {given.config.source_layer}, not {layer}; pass --layer {given.config.source_layer}")
        start = given.decoder

    progress = TrainingProgress("reconstruct", ("train_mse",), hint="fewer --epochs make it shorter")
    try:
        result = train_decoder(artifact.encoder, data, layer, epochs=epochs, batch_size=batch_size, lr=lr,
                               seed=seed, device=device, samples=GRID_IMAGES, decoder=start, width=decoder_width,
                               on_progress=progress)
    finally:
        progress.close()

    decoder_path = run_dir / "decoder.safetensors"
    row = result_line({
        "command": "reconstruct", "layer": layer, "ms_ssim": round(result.ms_ssim, 6), "mse": round(result.mse, 6),
        "ms_ssim_setting": setting, "encoder": artifact.sha256, "dataset": data.name, "epochs": epochs,
        "decoder_width": result.config.width, "decoder": str(decoder_path), **({"started_from": str(decoder)} if decoder is not None else {}),
    }, str(encoder))
    with atomic_folder(run_dir, _is_output) as folder:
        save_decoder(
            folder / decoder_path.name, result.decoder, result.config, artifact.sha256, encoder, layer,
            data.describe(), step=result.steps,
            training={"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimiser": "adam", "seed": seed,
                      "started_from": str(decoder) if decoder is not None else None, "loss": "mse",
                      "test_ms_ssim": result.ms_ssim, "test_mse": result.mse, "ms_ssim_setting": setting})
        save_image_rows(folder / "reconstructions.png", [result.originals, result.reconstructions])
        write_text(folder / "metrics.jsonl", "".join(json.dumps({"epoch": e + 1, "train_mse": mse}) + "\n"
                                                     for e, mse in enumerate(result.train_curve)))
        write_text(folder / "result.json", row + "\n")  # the run folder carries its result: `dimctl report FOLDER`
    emit(row)


# The help states the MS-SSIM setting from the same constants the score uses, so it cannot drift.
# (Typer keeps a docstring's line breaks, hence one line per paragraph.)
reconstruct.__doc__ = f"""Train a decoder on a frozen encoder's layer; score its test reconstructions by MS-SSIM.

The paper's decoder (§4.1, Table 4): linear → 512×4×4, transposed convs to 256, 128, 64 channels (BatchNorm + ReLU), conv3×3, tanh. It learns by MSE against the images in [-1, 1] with Adam; the encoder stays frozen and its features are computed once.

MS-SSIM of 32×32 images: {describe_setting(32)}. The score is the mean over the test split. (pytorch-msssim's defaults, 5 scales and an 11-pixel window, need images over 160 px.)

Writes RUN/decoder.safetensors, RUN/reconstructions.png (first row: {GRID_IMAGES} test images; second row: their reconstructions) RUN/metrics.jsonl (training MSE per epoch) and RUN/result.json (the result line, so `dimctl report RUN` finds it); prints one JSON line with command, layer, ms_ssim, mse, ms_ssim_setting, encoder (sha256), dataset, epochs, decoder_width, decoder (path).

Examples:

  dimctl reconstruct runs/dim-l/encoder.safetensors

  dimctl reconstruct runs/dim-l/encoder.safetensors --layer conv \\
      --epochs 20 --out runs/rec-conv

  dimctl reconstruct runs/c10/encoder.safetensors --dataset cifar10

  dimctl reconstruct runs/vae/encoder.safetensors \\
      --decoder runs/vae/decoder.safetensors          # the VAE's own decoder
"""

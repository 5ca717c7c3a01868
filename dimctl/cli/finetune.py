"""`dimctl finetune`: semi-supervised fine-tuning of a pretrained encoder with a fraction of the labels."""

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from dimctl.cli.options import DataRootOpt, DatasetOpt, DownloadOpt, SkipBadImagesOpt, dataset_label
from dimctl.cli.output import emit
from dimctl.cli.progress import TrainingProgress
from dimctl.cli.results import result_line
from dimctl.cli.run_folder import ForceOpt, ResumeOpt, prepare_run_dir, run_until_stopped, with_saved_settings
from dimctl.cli.settings_options import with_settings
from dimctl.cli.sources import encoder_and_dataset, encoder_argument
from dimctl.io.artifacts import save_encoder, sha256_of
from dimctl.io.atomic import write_text
from dimctl.train.finetune import RESUMABLE, FinetuneConfig
from dimctl.train.finetune import finetune as run_finetune

RUN_FILES = ("config.json", "metrics.jsonl", "encoder.safetensors", "finetune.jsonl", "checkpoints")


@with_settings(FinetuneConfig, after="skip_bad_images")  # the settings' options, defaults and help: train/finetune.py
def finetune(
    ctx: typer.Context,
    encoder: Annotated[Path, typer.Argument(help="An encoder.safetensors made by `dimctl pretrain` (or by finetune), "
                                                 "or its run folder.", callback=encoder_argument)],
    dataset: DatasetOpt = "digits",
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    skip_bad_images: SkipBadImagesOpt = False,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder. Default: under runs/, named finetune-FOLDER-DATA-FRACTION (FOLDER: the encoder's).")] = None,
    resume: ResumeOpt = False,
    force: ForceOpt = False,
    **settings,
):
    """Fine-tune a pretrained encoder with labels (the paper's semi-supervised setting, Table 2 "SS").

    A small classifier (linear 200, dropout 0.1, BatchNorm, ReLU, linear) goes on the encoder's last convolutional layer (the conv tap) and the encoder up to that layer trains with it, by cross-entropy on a seeded, class-balanced --labels-fraction of the training labels (Adam). The layers after conv (fc, Y) keep their weights.

    Writes OUT/encoder.safetensors (the fine-tuned encoder: `dimctl extract` and `probe` take it), OUT/finetune.jsonl, OUT/config.json, OUT/metrics.jsonl (one line per epoch) and resume state in OUT/checkpoints; an existing run folder is refused unless --resume (continue it, same settings and encoder) or --force. SIGINT/SIGTERM save a checkpoint and stop. Prints one JSON line: command, encoder (sha256 of the input encoder), dataset, labels_fraction, n_labels, accuracy (test), train_accuracy, epochs, finetuned (path) and its sha256. Progress goes to stderr.

    Examples:

      dimctl finetune runs/dim-l/encoder.safetensors --labels-fraction 0.1

      dimctl finetune runs/stl/encoder.safetensors --dataset stl10 \\
          --labels-fraction 1 --hflip

      dimctl finetune runs/dim-l/encoder.safetensors --out runs/ft \\
          --resume                                  # after Ctrl-C or a crash
    """
    fraction = settings["labels_fraction"]
    out_dir = out or Path("runs") / f"finetune-{encoder.resolve().parent.name}-{dataset_label(dataset)}-{fraction:g}"
    config = FinetuneConfig(**with_saved_settings(ctx, out_dir, settings, resume)).validate()
    artifact, data = encoder_and_dataset(encoder, dataset, data_root, download, "cpu", skip_bad_images)
    config = replace(config, encoder_sha256=artifact.sha256)  # so --resume refuses another encoder
    prepare_run_dir(out_dir, config.to_dict(), resume, force, RUN_FILES, RESUMABLE)

    progress = TrainingProgress("finetune", ("loss", "images_per_s"), hint="fewer --epochs make it shorter")
    resume_command = f"dimctl finetune {encoder} --out {out_dir} --resume"
    result = run_until_stopped(
        lambda stop: run_finetune(artifact.encoder, data, config, out_dir, resume=resume, on_progress=progress,
                                  should_stop=stop, resume_command=resume_command), resume_command, progress)
    if not result.is_main_process:
        return
    training = {"command": "finetune", **config.to_dict(), "n_labels": result.n_labels,
                "test_accuracy": result.accuracy,
                "pretrained": {"sha256": artifact.sha256, "path": str(encoder),
                               "step": artifact.metadata.get("dimctl.step")}}
    path = save_encoder(out_dir / "encoder.safetensors", result.encoder.cpu(), artifact.config, data.describe(),
                        step=result.steps, training=training)
    row = {
        "command": "finetune", "encoder": artifact.sha256, "dataset": data.name,
        "labels_fraction": config.labels_fraction, "n_labels": result.n_labels, "accuracy": round(result.accuracy, 6),
        "train_accuracy": round(result.train_accuracy, 6), "epochs": config.epochs, "steps": result.steps,
        "arch": artifact.config.arch, "finetuned": str(path), "finetuned_sha256": sha256_of(path),
    }
    line = result_line(row, str(encoder))
    write_text(out_dir / "finetune.jsonl", line + "\n")
    emit(line)

"""`dimctl pretrain`: learn an encoder by Deep InfoMax and publish it as encoder.safetensors."""

from pathlib import Path
from typing import Annotated

import typer

from dimctl.cli.common import DataRootOpt, DatasetOpt, DownloadOpt, SkipBadImagesOpt, TrainingProgress, emit
from dimctl.cli.run_folder import (CheckpointEveryOpt, CpuOpt, ForceOpt, KeepCheckpointsOpt, NanPolicyOpt, ResumeOpt,
                                   prepare_run_dir, run_until_stopped, with_saved_settings)
from dimctl.data.registry import load_dataset
from dimctl.data.streaming import open_streaming_folder
from dimctl.errors import UsageError
from dimctl.methods import METHODS
from dimctl.models.encoders import ENCODERS, INPUT_SIZES
from dimctl.objectives.bounds import ESTIMATORS
from dimctl.objectives.dim import PRESETS
from dimctl.train.config import PretrainConfig, resolve_weights
from dimctl.train.loop import pretrain as run_pretrain

# Settings a resumed run may change; any other difference would silently mix two experiments.
RESUMABLE_CHANGES = {"epochs", "checkpoint_every", "keep_checkpoints", "log_every", "cpu", "data_root", "download",
                     "nan_policy", "channels_last", "compile", "workers"}
PRESET_HELP = "Objective weights: " + ", ".join(
    f"{name} (α={w['alpha']:g}, β={w['beta']:g}, γ={w['gamma']:g})" for name, w in PRESETS.items()) + "."
ARCH_HELP = ("Encoder: " + ", ".join(f"{name} ({size}×{size})" for name, size in INPUT_SIZES.items() if name in ENCODERS)
             + ". Smaller images are resized up to the encoder's size (digits to 64 for alexnet).")
METHOD_HELP = ("What trains the encoder: " + ", ".join(m.help for m in METHODS.values())
               + ". ae/vae/beta-vae/aae also publish RUN/decoder.safetensors, bigan RUN/generator.safetensors.")
RUN_FILES = ("config.json", "metrics.jsonl", "encoder.safetensors", "decoder.safetensors", "generator.safetensors",
             "checkpoints")


def pretrain(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder. Default runs/PRESET-ESTIMATOR-DATASET.")] = None,
    dataset: DatasetOpt = "digits",
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    skip_bad_images: SkipBadImagesOpt = False,
    method: Annotated[str, typer.Option(help=METHOD_HELP)] = "dim",
    preset: Annotated[str | None, typer.Option(help=PRESET_HELP + " Default dim-l.", show_default=False)] = None,
    alpha: Annotated[float | None, typer.Option(help="Global MI weight (overrides the preset).")] = None,
    beta: Annotated[float | None, typer.Option(help="Local MI weight (overrides the preset); with --method beta-vae, the KL weight.")] = None,
    gamma: Annotated[float | None, typer.Option(help="Prior-matching weight (overrides the preset); with --method aae, the weight of matching Y to N(0, I).")] = None,
    estimator: Annotated[str | None, typer.Option(help=f"MI estimator: {', '.join(ESTIMATORS)}. Default jsd (cpc: infonce, as in the paper's Table 3).", show_default=False)] = None,
    mi_units: Annotated[int, typer.Option(help="Width of the MI heads' embeddings (paper: 2048; smaller is much faster on CPU).")] = 2048,
    y_dim: Annotated[int, typer.Option(help="Size of the representation Y.")] = 64,
    local_critic: Annotated[str, typer.Option(help="Local MI critic: dot (encode-and-dot-product, every pair in the batch) or concat (Y tiled and concatenated to the local map, 1×1 convs 512-512-1; one shuffled negative image, as in the paper).")] = "dot",
    occlude: Annotated[bool, typer.Option("--occlude", help="Compute the global feature from a randomly occluded copy of each image (blocks the size of a local feature's receptive field; locals see the full image).")] = False,
    coord: Annotated[str, typer.Option(help="Coordinate prediction from local + global features: none, abs (where a local feature is), rel (offset between two), both.")] = "none",
    coord_abs_weight: Annotated[float, typer.Option(help="Weight of the absolute-coordinate cross-entropy.")] = 1.0,
    coord_rel_weight: Annotated[float, typer.Option(help="Weight of the relative-coordinate cross-entropy.")] = 1.0,
    globals_: Annotated[int, typer.Option("--globals", help="Extra less-global features, each summarising a random block of the local map, scored by the same local estimator (paper Table 3; best with the folded encoders).")] = 0,
    cpc_rows: Annotated[int, typer.Option(help="--method cpc: predict 1 to this many rows ahead, one network per offset.")] = 3,
    arch: Annotated[str, typer.Option(help=ARCH_HELP)] = "dcgan",
    width: Annotated[float, typer.Option(help="Multiply the encoder's conv channels (1: the paper's; e.g. 0.25 for quick CPU runs).")] = 1.0,
    fc_dim: Annotated[int | None, typer.Option(help="Width of the encoder's fully connected layers (default: the paper's, 1024 or 4096 for AlexNet).")] = None,
    image_size: Annotated[int | None, typer.Option(help="Load images at this size (default: the --arch's input size). Only with --crop-size may it differ from that.")] = None,
    crop_size: Annotated[int, typer.Option(help="Random crop-size × crop-size windows of the loaded images feed the encoder (STL-10 as in the paper: --image-size 96 --crop-size 64 --hflip). 0: off.")] = 0,
    epochs: Annotated[int, typer.Option(help="Passes over the training split (0 publishes the initial, random encoder).")] = 10,
    batch_size: Annotated[int, typer.Option(help="Images per step per process; negatives come from the batch.")] = 64,
    lr: Annotated[float, typer.Option(help="Adam learning rate (encoder, heads and prior discriminator).")] = 1e-4,
    seed: Annotated[int, typer.Option(help="Seed for initialisation, data order and augmentation.")] = 0,
    crop_padding: Annotated[int, typer.Option(help="Random-crop augmentation padding in pixels (0: off, as in the paper for CIFAR).")] = 0,
    hflip: Annotated[bool, typer.Option("--hflip/--no-hflip", help="Random horizontal flips.")] = False,
    checkpoint_every: CheckpointEveryOpt = 500,
    keep_checkpoints: KeepCheckpointsOpt = 3,
    log_every: Annotated[int, typer.Option(help="Write metrics.jsonl every N steps.")] = 10,
    nan_policy: NanPolicyOpt = "stop",
    cpu: CpuOpt = False,
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16 (autocast; fp16 adds loss scaling and needs a GPU). auto: bf16 on a CUDA GPU with bf16, a CPU with AMX, or a CPU with AVX512-BF16 where a timed bf16 matmul beats fp32 by 1.3×; fp32 elsewhere; the choice is recorded in config.json and the encoder. The MI bounds are computed in fp32 either way.")] = "auto",
    channels_last: Annotated[bool, typer.Option("--channels-last", help="Channels-last memory format for the convolutions (faster on most CPUs and tensor-core GPUs).")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the encoder and heads (inductor). Pays off on GPUs over long runs; compiling takes a minute.")] = False,
    sync_bn: Annotated[bool, typer.Option("--sync-bn", help="With several GPU processes: BatchNorm statistics over the global batch (SyncBatchNorm).")] = False,
    stream: Annotated[bool, typer.Option("--stream", help="--dataset folder only: decode images batch by batch in worker processes instead of loading the folder into memory (for folders larger than RAM).")] = False,
    workers: Annotated[int, typer.Option(help="Decoding worker processes with --stream.")] = 4,
    resume: ResumeOpt = False,
    force: ForceOpt = False,
):
    """Pretrain an encoder with Deep InfoMax (or a comparison method); print the published encoder's path.

    Writes RUN/config.json, RUN/metrics.jsonl, RUN/checkpoints/ and RUN/encoder.safetensors (with --method ae, vae, beta-vae or aae also RUN/decoder.safetensors; bigan: RUN/generator.safetensors). --resume continues a run with its saved settings: `dimctl pretrain --out RUN --resume` alone continues it, `--epochs N` extends it; a setting that cannot change is refused by name.

    Examples:

      dimctl pretrain --out runs/dim-l                       # DIM(L), JSD, digits

      dimctl pretrain --preset dim-g --estimator infonce --dataset cifar10 --data-root data --out runs/c10-g

      dimctl pretrain --arch alexnet --dataset stl10 --image-size 96 --crop-size 64 --hflip --out runs/stl

      dimctl pretrain --method vae --out runs/vae                 # a comparison method of the paper

      dimctl pretrain --method cpc --arch folded-resnet --out runs/cpc

      accelerate launch -m dimctl pretrain --dataset cifar10 --data-root data --out runs/c10
    """
    weights = resolve_weights(method, preset, alpha, beta, gamma)
    explicit = {k for k, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)) if v is not None}
    preset = None if method != "dim" or explicit else (preset or "dim-l")
    estimator = estimator or ("infonce" if method == "cpc" else "jsd")
    config = PretrainConfig(
        dataset=dataset, data_root=str(data_root) if data_root else None, download=download, method=method,
        preset=preset, **weights, estimator=estimator, mi_units=mi_units, y_dim=y_dim,
        local_critic=local_critic, occlude=occlude, coord=coord, coord_abs_weight=coord_abs_weight,
        coord_rel_weight=coord_rel_weight, globals=globals_, cpc_rows=cpc_rows,
        arch=arch, width=width, fc_dim=fc_dim, image_size=image_size, crop_size=crop_size,
        epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, crop_padding=crop_padding, hflip=hflip,
        checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints, log_every=log_every,
        nan_policy=nan_policy, cpu=cpu, precision=precision, channels_last=channels_last, compile=compile,
        sync_bn=sync_bn, stream=stream, workers=workers,
    ).validate().resolved()  # config.json and --resume's comparison hold what ran, not `auto`
    run_dir = out or Path("runs") / (f"{preset or 'custom'}-{estimator}-{dataset}" if method == "dim" else f"{method}-{dataset}")
    config = with_saved_settings(ctx, run_dir, config, resume, {"globals": "globals_"}).validate()
    _prepare_run_dir(run_dir, config, resume, force)

    if config.stream:
        if config.data_root is None:
            raise UsageError("--dataset folder needs --data-root DIR (a folder of images, class sub-folders optional)")
        data = open_streaming_folder(Path(config.data_root).expanduser(), config.load_size(), skip_bad_images)
    else:  # unlabelled images (STL-10's) join the training split: pretraining needs no labels
        data = load_dataset(config.dataset, config.data_root, config.download, image_size=config.load_size(),
                            skip_bad_images=skip_bad_images).pretraining_pool()
    progress = TrainingProgress("pretrain", ("loss", "local_mi", "global_mi", "images_per_s"))
    result = run_until_stopped(
        lambda stop: run_pretrain(config, data, run_dir, resume=resume, on_progress=progress, should_stop=stop),
        f"dimctl pretrain --out {run_dir} --resume", progress)
    if result.is_main_process:
        emit(str(result.encoder_path))


def _prepare_run_dir(run_dir: Path, config, resume: bool, force: bool) -> None:
    prepare_run_dir(run_dir, config.to_dict(), resume, force, RUN_FILES, ("metrics.jsonl", "checkpoints"), RESUMABLE_CHANGES)

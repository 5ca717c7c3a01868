"""`dimctl pretrain`: learn an encoder by Deep InfoMax and publish it as encoder.safetensors."""

from pathlib import Path
from typing import Annotated

import typer

from dimctl.cli.options import SkipBadImagesOpt, dataset_label
from dimctl.cli.output import emit
from dimctl.cli.progress import TrainingProgress
from dimctl.cli.run_folder import ForceOpt, ResumeOpt, prepare_run_dir, run_until_stopped, with_saved_settings
from dimctl.cli.settings_options import with_settings
from dimctl.data.hf import is_hf, open_streaming_hf
from dimctl.data.registry import load_dataset
from dimctl.data.streaming import open_streaming_folder
from dimctl.errors import UsageError
from dimctl.methods import METHODS, WEIGHTS, companion_files
from dimctl.train.config import RESUMABLE, PretrainConfig
from dimctl.train.pretrain import pretrain as run_pretrain

RUN_FILES = ("config.json", "metrics.jsonl", "encoder.safetensors", "checkpoints")  # and every method's companions


@with_settings(PretrainConfig, after="out")  # every setting's option, default and help: train/config.py
def pretrain(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder. Default: under runs/, named preset-estimator-dataset (runs/dim-l-jsd-digits).")] = None,
    skip_bad_images: SkipBadImagesOpt = False,
    resume: ResumeOpt = False,
    force: ForceOpt = False,
    **settings,
):
    """Pretrain an encoder with Deep InfoMax (or a comparison method); print the published encoder's path.

    Writes RUN/config.json, RUN/metrics.jsonl, RUN/checkpoints/ and RUN/encoder.safetensors (with --method ae, vae, beta-vae or aae also RUN/decoder.safetensors; bigan: RUN/generator.safetensors). --resume continues a run with its saved settings: `dimctl pretrain --out RUN --resume` alone continues it, `--epochs N` extends it; a setting that cannot change is refused by name.

    Examples:

      dimctl pretrain --out runs/dim-l                  # DIM(L), JSD, digits

      dimctl pretrain --preset dim-g --estimator infonce --dataset cifar10 \\
          --out runs/c10-g

      dimctl pretrain --arch alexnet --dataset stl10 --image-size 96 \\
          --crop-size 64 --hflip --out runs/stl

      dimctl pretrain --method vae --out runs/vae       # a baseline of the paper

      dimctl pretrain --method cpc --arch folded-resnet --out runs/cpc

      accelerate launch -m dimctl pretrain --dataset cifar10 --out runs/c10
    """
    if out is None:  # named by the method, from what the flags resolve to
        run_dir = Path("runs") / _method(settings).run_name({**settings, **_objective(settings)},
                                                             dataset_label(settings["dataset"]))
    else:
        run_dir = out
    settings = with_saved_settings(ctx, run_dir, settings, resume)
    # Resolved once, here: config.json and --resume's comparison hold what runs (the method's
    # weights, preset and estimator; the precision `auto` chose), and nothing downstream changes it.
    config = PretrainConfig.of(**{**settings, **_objective(settings)}).validate().resolved()
    _prepare_run_dir(run_dir, config, resume, force)

    source = config.data
    if source.stream and is_hf(source.dataset):  # a Hugging Face dataset's rows stream as a folder's files do
        data = open_streaming_hf(source.dataset, config.load_size(), skip_bad_images, source.download)
    elif source.stream:
        if source.data_root is None:
            raise UsageError("--dataset folder needs --data-root DIR (a folder of images, class sub-folders optional)")
        data = open_streaming_folder(Path(source.data_root).expanduser(), config.load_size(), skip_bad_images)
    else:  # unlabelled images (STL-10's) join the training split: pretraining needs no labels
        data = load_dataset(source.dataset, source.data_root, source.download, image_size=config.load_size(),
                            skip_bad_images=skip_bad_images).pretraining_pool()
    progress = TrainingProgress("pretrain", ("loss", "local_mi", "global_mi", "images_per_s"),
                                hint="--mi-units 256 (narrower MI heads) or fewer --epochs (e.g. --epochs 1) make it shorter")
    result = run_until_stopped(
        lambda stop: run_pretrain(config, data, run_dir, resume=resume, on_progress=progress, should_stop=stop),
        f"dimctl pretrain --out {run_dir} --resume", progress)
    if result.is_main_process:
        emit(str(result.encoder_path))


def _method(settings: dict):
    if settings["method"] not in METHODS:
        raise UsageError(f"--method {settings['method']!r} is not one of: {', '.join(METHODS)}")
    return METHODS[settings["method"]]


def _objective(settings: dict) -> dict:
    """The weights, preset and estimator the method resolves from the flags (methods/base.py ``resolve``)."""
    return _method(settings).resolve(settings["preset"], settings["estimator"], {k: settings[k] for k in WEIGHTS})


def _prepare_run_dir(run_dir: Path, config, resume: bool, force: bool) -> None:
    prepare_run_dir(run_dir, config.to_dict(), resume, force, (*RUN_FILES, *sorted(companion_files())), RESUMABLE)

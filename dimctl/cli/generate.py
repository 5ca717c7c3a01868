"""`dimctl generate train|sample|score`: an image generator trained by implicit prior matching
(paper App. A.8) or as a GAN (NS-GAN-CP, WGAN-GP), its samples, and their scores."""

from pathlib import Path
from typing import Annotated

import torch
import typer

from dimctl.cli.options import (CpuOpt, DataRootOpt, DownloadOpt, ForwardBatchOpt, ReplaceOpt, dataset_label,
                                refuse_to_replace)
from dimctl.cli.output import emit, stdout_is_terminal, write_stdout_bytes
from dimctl.cli.progress import TrainingProgress
from dimctl.cli.results import result_line
from dimctl.cli.run_folder import ForceOpt, ResumeOpt, prepare_run_dir, run_until_stopped, with_saved_settings
from dimctl.cli.settings_options import with_settings
from dimctl.cli.sources import encoder_argument, pick_device
from dimctl.cli.stdin_frames import read_stdin_bytes
from dimctl.data.registry import load_dataset
from dimctl.errors import ArtifactError, UsageError
from dimctl.evaluate.frechet import DEFAULT_SPLITS, load_fid_inception
from dimctl.evaluate.generated import encoder_frechet_distances, inception_scores
from dimctl.io.artifacts import load_encoder, load_generator, sha256_of
from dimctl.io.atomic import atomic_folder, check_folder_target, owned_names
from dimctl.io.features import looks_like_features
from dimctl.io.reading import require_file
from dimctl.io.samples import read_samples, samples_bytes, write_samples
from dimctl.io.images import save_grid, save_png
from dimctl.models.generators import fixed_noise, generate_images
from dimctl.train.generate import RESUMABLE, GenerateConfig, train_generator

app = typer.Typer(
    name="generate",
    help="Train an image generator by implicit prior matching (paper App. A.8) or as a GAN, sample it, score it.\n\n"
         "Example:\n\n"
         "  dimctl generate train --method ie --steps 2000 --out runs/gen-ie\n"
         "  dimctl generate sample runs/gen-ie/generator.safetensors -n 64 -o grid.png",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

RUN_FILES = ("config.json", "metrics.jsonl", "generator.safetensors", "checkpoints", "samples", "samples.png")


@app.command("train")
@with_settings(GenerateConfig, after="out")  # every setting's option, default and help: train/generate.py
def train(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder. Default runs/gen-METHOD-DATASET.")] = None,
    resume: ResumeOpt = False,
    force: ForceOpt = False,
    **settings,
):
    """Train a generator; print the path of RUN/generator.safetensors.

    The generator and critic/encoder are the ResNets of Gulrajani et al. (2017), batch norm in the generator only (App. A.9). ie trains an encoder, through two 1-D JSD f-GAN discriminators (gradients clipped), to map real images to N(mu-real, 1) and generated ones to N(mu-fake, 1), with the contractive penalty; the generator moves the mean of the encoder's output on its samples to mu-real (Eq. 13–15) — no minimax game between generator and encoder.

    Writes RUN/config.json, RUN/metrics.jsonl (losses; mode_overlap: the Bhattacharyya coefficient of the real and generated output distributions — App. A.8 names their separation the sign of failing training), RUN/checkpoints/, RUN/samples/step_N.png, RUN/samples.png and RUN/generator.safetensors. --resume continues a run with its saved settings (`--steps N` extends it).

    Examples:

      dimctl generate train --method ie --steps 2000 --out runs/gen-ie

      dimctl generate train --method wgan-gp --width 32 --steps 500 \\
          --out runs/gen-wgan

      dimctl generate train --dataset celeba --image-size 64 --method nsgan-cp \\
          --out runs/celeba
    """
    run_dir = out or Path("runs") / f"gen-{settings['method']}-{dataset_label(settings['dataset'])}"
    # resolved once: config.json and --resume's comparison hold every number that runs
    config = GenerateConfig(**with_saved_settings(ctx, run_dir, settings, resume)).validate().resolved()
    _prepare_run_dir(run_dir, config, resume, force)
    data = load_dataset(config.dataset, config.data_root, config.download, image_size=config.image_size)
    progress = TrainingProgress("generate", ("critic_loss", "generator_loss", "mode_overlap", "images_per_s"),
                                per_epoch=False, hint="fewer --steps make it shorter")
    result = run_until_stopped(
        lambda stop: train_generator(config, data, run_dir, resume=resume, on_progress=progress, should_stop=stop),
        f"dimctl generate train --out {run_dir} --resume", progress)
    if result.is_main_process:
        emit(str(result.generator_path))


@app.command("sample")
def sample(
    generator: Annotated[Path, typer.Argument(help="A generator.safetensors made by `dimctl generate train`.")],
    n: Annotated[int, typer.Option("-n", "--num", help="How many images.")] = 64,
    output: Annotated[str | None, typer.Option("--output", "-o", help="FILE.png: one grid; FILE.h5: the images as HDF5 (for `generate score`); -: HDF5 on stdout. Default: stdout when it is a pipe.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write each image as DIR/sample_NNNNNN.png instead. DIR is made beside itself and renamed into place whole (its parent must be writable), so it may hold only earlier samples: any other file is refused, never deleted.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the noise: the same seed and -n give the same images.")] = 0,
    batch_size: ForwardBatchOpt = 256,
    cpu: CpuOpt = False,
    force: ReplaceOpt = False,
):
    """Draw images from a trained generator, seeded; print the path written.

    Examples:

      dimctl generate sample runs/gen-ie/generator.safetensors -n 64 -o grid.png

      dimctl generate sample runs/gen-ie/generator.safetensors -n 5000 -o samples.h5

      dimctl generate sample runs/gen-ie/generator.safetensors -n 100 --out samples/

      dimctl generate sample runs/gen-ie/generator.safetensors -n 2000 \\
          | dimctl generate score - --features runs/dim/encoder.safetensors
    """
    if n < 1 or batch_size < 1:
        raise UsageError("-n and --batch-size must be positive")
    if output is not None and out_dir is not None:
        raise UsageError("pass either -o FILE or --out DIR, not both")
    kind = _output_kind(output, out_dir)
    if kind == "folder":
        check_folder_target(out_dir, _is_sample, "--out: ")
        refuse_to_replace(sorted(out_dir.glob("sample_*.png"))[:1], force, "--out: ")
    elif kind != "stdout":
        refuse_to_replace([output], force, "-o ")
    artifact = load_generator(generator, device=pick_device(cpu))
    images = generate_images(artifact.generator, fixed_noise(n, artifact.config.z_dim, seed), batch_size)
    if kind == "grid":
        emit(str(save_grid(output, images)))
    elif kind == "folder":
        # The set replaces the folder whole: a reader never finds part of it, or a mix with an
        # earlier, larger -n; a failure leaves the old folder as it was.
        with atomic_folder(out_dir, _is_sample) as folder:
            for i, image in enumerate(images):
                save_png(folder / f"sample_{i:06d}.png", image)
        emit(str(out_dir))
    else:
        described = {"sha256": artifact.sha256, "path": str(generator), "method": artifact.training.get("method")}
        if kind == "h5":
            emit(str(write_samples(output, images, described, artifact.dataset, seed)))
        else:
            write_stdout_bytes(samples_bytes(images, described, artifact.dataset, seed))


@app.command("score")
def score(
    source: Annotated[str, typer.Argument(help="A generator.safetensors, a samples .h5 from `generate sample`, or - (samples on stdin).")],
    features: Annotated[Path | None, typer.Option("--features", help="A DIM encoder.safetensors (or its run folder): report the Fréchet distance in its feature space (named fd_dim, not FID).", callback=encoder_argument)] = None,
    layer: Annotated[str, typer.Option(help="With --features: the encoder's layers to compare in, comma-separated (y, fc, conv).")] = "y",
    inception_weights: Annotated[Path | None, typer.Option("--inception-weights", help="The FID Inception weights (pytorch-fid's pt_inception-2015-12-05-6726825d.pth, or as .safetensors): report FID and Inception score. Read as tensors only; never downloaded.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Real images to compare with. Default: the dataset the generator was trained on.")] = None,
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    split: Annotated[str, typer.Option(help="Which split of the dataset: test or train.")] = "test",
    n: Annotated[int, typer.Option("-n", "--num", help="Images to draw from a GENERATOR (a samples file is used whole).")] = 5000,
    seed: Annotated[int, typer.Option(help="Seed of the noise when drawing from a GENERATOR.")] = 0,
    splits: Annotated[int, typer.Option(help="Inception score: mean and std over this many parts of the samples.")] = DEFAULT_SPLITS,
    batch_size: ForwardBatchOpt = 128,
    cpu: CpuOpt = False,
):
    """Score generated images against real ones: one JSON line per number.

    --features ENCODER: the Fréchet distance between Gaussians fitted to a DIM encoder's features of the generated and of the real images (metric fd_dim, with the layer and the encoder's sha256). It is not FID: its scale depends on the encoder.

    --inception-weights FILE: the standard FID (Inception pool3 features, metric fid) and Inception score (metric inception_score, with std over --splits parts). Images are resized to 299×299; grey images repeated to RGB. FID and IS are biased at small sample counts: compare numbers made from the same count (the common standard is 50,000).

    Keys of each line: command, metric, value, features, layer, samples, dataset, split, reference_images, source, generator (sha256 or null), and encoder or inception_weights (sha256).

    Examples:

      dimctl generate score runs/gen-ie/generator.safetensors -n 2000 \\
          --features runs/dim/encoder.safetensors

      dimctl generate score samples.h5 --dataset cifar10 --split train \\
          --inception-weights pt_inception-2015-12-05-6726825d.pth
    """
    if features is None and inception_weights is None:
        raise UsageError("nothing to score with: pass --features ENCODER and/or --inception-weights FILE")
    if split not in ("train", "test"):
        raise UsageError(f"--split {split!r} is not one of: train, test")
    if n < 2 or batch_size < 1 or splits < 1:
        raise UsageError("-n must be at least 2, --batch-size and --splits positive")
    if inception_weights is not None:
        require_file(inception_weights)  # before drawing or reading any image: a FIFO is refused at once
    layers = [v.strip() for v in layer.split(",") if v.strip()]
    device = pick_device(cpu)
    images, origin = _images_to_score(source, n, seed, batch_size, device)
    name = dataset or origin["dataset"].get("name") or "digits"
    size = images.shape[-1]
    data = load_dataset(name, data_root, download, image_size=size)
    if data.channels != images.shape[1]:
        raise ArtifactError(f"{source} holds {images.shape[1]}×{size}×{size} images but {name} has "
                            f"{data.channels}×{size}×{size}; score against data of the kind it was trained on")
    reference = data.split(split)[0]
    common = {"samples": int(images.shape[0]), "dataset": data.name, "split": split,
              "reference_images": int(reference.shape[0]), "source": source, "generator": origin.get("sha256")}

    def row(metric: str, value: float, features: str, layer: str, **extra) -> str:
        return result_line({"command": "generate score", "metric": metric, "value": round(value, 6),
                            "features": features, "layer": layer, **common, **extra}, source)

    if features is not None:
        encoder = load_encoder(features, device=device)
        if (encoder.config.in_channels, encoder.config.image_size) != (images.shape[1], size):
            raise ArtifactError(f"{features} takes {encoder.config.in_channels}×{encoder.config.image_size}×"
                                f"{encoder.config.image_size} images but the samples are {images.shape[1]}×{size}×{size}; "
                                f"use an encoder trained on this kind of data")
        for tap in layers:
            try:
                distance = encoder_frechet_distances(encoder.encoder, images, reference, [tap], batch_size, device)[tap]
            except KeyError:
                raise UsageError(f"--layer: the encoder has no layer {tap!r}; choose y, fc or conv") from None
            emit(row("fd_dim", distance, f"dim-encoder:{tap}", tap, encoder=encoder.sha256))

    if inception_weights is not None:
        network = load_fid_inception(inception_weights, device)
        weights = sha256_of(inception_weights)
        scores = inception_scores(network, images, reference, batch_size, device, splits)
        emit(row("fid", scores.fid, "inception-pool3", "pool3", inception_weights=weights))
        emit(row("inception_score", scores.inception_score, "inception-logits", "logits",
                 std=round(scores.inception_score_std, 6), splits=splits, inception_weights=weights))


_is_sample = owned_names(r"sample_\d{6,}\.png")  # what `sample --out` may replace


def _output_kind(output: str | None, out_dir: Path | None) -> str:
    if out_dir is not None:  # sample() then checks the folder (check_folder_target)
        return "folder"
    if output is None or output == "-":
        if stdout_is_terminal():
            raise UsageError("stdout is a terminal; pass -o FILE.png|FILE.h5, --out DIR, or pipe into `dimctl generate score -`")
        return "stdout"
    suffix = Path(output).suffix.lower()
    if suffix == ".png":
        return "grid"
    if suffix in (".h5", ".hdf5"):
        return "h5"
    raise UsageError(f"-o {output}: name a .png (a grid) or an .h5 file (the images, for `generate score`)")


def _images_to_score(source: str, n: int, seed: int, batch_size: int, device: torch.device) -> tuple[torch.Tensor, dict]:
    """uint8 images and where they came from: {"sha256" of the generator or None, "dataset" it learned}."""
    if source == "-":
        samples = read_samples(read_stdin_bytes())
        return samples.images, {"sha256": samples.generator.get("sha256"), "dataset": samples.dataset}
    path = Path(source)
    require_file(path, source)  # a FIFO or device is refused, never read (it would block or never end)
    if looks_like_features(path):
        samples = read_samples(path)
        return samples.images, {"sha256": samples.generator.get("sha256"), "dataset": samples.dataset}
    artifact = load_generator(path, device=device)
    images = generate_images(artifact.generator, fixed_noise(n, artifact.config.z_dim, seed), batch_size)
    return images, {"sha256": artifact.sha256, "dataset": artifact.dataset}


def _prepare_run_dir(run_dir: Path, config, resume: bool, force: bool) -> None:
    prepare_run_dir(run_dir, config.to_dict(), resume, force, RUN_FILES, RESUMABLE)



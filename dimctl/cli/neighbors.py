"""`dimctl neighbors`: the nearest test images of one query per class, in an encoder's representation space."""

from pathlib import Path
from typing import Annotated

import torch
import typer

from dimctl import progress
from dimctl.cli.options import (CpuOpt, DataRootOpt, DownloadOpt, EncoderArg, EncoderDatasetOpt, ForwardBatchOpt,
                                ReplaceOpt, SkipBadImagesOpt, refuse_to_replace)
from dimctl.cli.output import emit
from dimctl.cli.results import result_line
from dimctl.cli.sources import encoder_and_dataset, pick_device
from dimctl.data.transforms import normalise
from dimctl.errors import UsageError
from dimctl.evaluate.extract import extract_layer
from dimctl.evaluate.neighbors import DISTANCES, nearest_neighbors
from dimctl.io.atomic import atomic_folder, check_folder_target, owned_names, write_text
from dimctl.io.images import save_image_rows

LAYERS = ("y", "fc", "conv", "pixels")
OUTPUTS = ("neighbors.png", "neighbors.jsonl")
# The run folder is made whole beside itself and renamed into place (a full disk leaves no grid
# without its lines, no empty folder), so it may hold only these files: any other is refused.
_is_output = owned_names("|".join(name.replace(".", r"\.") for name in OUTPUTS))


def neighbors(
    encoder: EncoderArg,
    dataset: EncoderDatasetOpt = None,
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    skip_bad_images: SkipBadImagesOpt = False,
    layer: Annotated[str, typer.Option(help=f"The representation to search in: {', '.join(LAYERS)} (pixels: the images themselves, a baseline).")] = "y",
    n: Annotated[int, typer.Option("-n", "--num", help="Neighbours per query (the paper shows 4).")] = 4,
    distance: Annotated[str, typer.Option(help=f"Distance: {', '.join(DISTANCES)} (cosine: 1 − cosine similarity).")] = "l1",
    squash: Annotated[bool, typer.Option("--squash/--no-squash", help="For --layer y: compare sigmoid(Y), the space prior matching makes uniform on [0, 1] (the paper orders neighbours 'to reflect the uniform prior').")] = True,
    seed: Annotated[int, typer.Option(help="Seed of the choice of query images.")] = 0,
    batch_size: ForwardBatchOpt = 256,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder for neighbors.png and neighbors.jsonl, made beside itself and renamed into place whole (so it may hold only those). Default: under runs/, named neighbors-FOLDER-LAYER after the encoder's folder.")] = None,
    cpu: CpuOpt = False,
    force: ReplaceOpt = False,
):
    """Nearest neighbours in representation space (paper App. A.4): for one random test image of
    each class, the -n test images closest to it under --distance.

    Writes OUT/neighbors.png (one row per class: the query, then its neighbours, nearest first)
    and OUT/neighbors.jsonl, and prints the same JSON lines: one per query with command, class,
    query (test index), neighbors (test indices), distances, neighbor_labels, same_class (fraction
    of neighbours of the query's class), layer, distance, encoder (sha256), dataset and grid (path).

    Examples:

      dimctl neighbors runs/dim-l/encoder.safetensors --dataset digits

      dimctl neighbors runs/dim-l/encoder.safetensors --layer conv \\
          --distance cosine -n 8 --out runs/nn-conv
    """
    if layer not in LAYERS:
        raise UsageError(f"--layer: unknown layer {layer!r}; choose from {', '.join(LAYERS)}")
    if distance not in DISTANCES:
        raise UsageError(f"--distance: unknown distance {distance!r}; choose from {', '.join(DISTANCES)}")
    if batch_size < 1:
        raise UsageError("--batch-size must be positive")
    run_dir = out or Path("runs") / f"neighbors-{encoder.resolve().parent.name}-{layer}"
    check_folder_target(run_dir, _is_output, "--out: ")
    refuse_to_replace([run_dir / name for name in OUTPUTS], force, "--out: ")

    device = pick_device(cpu)
    artifact, data = encoder_and_dataset(encoder, dataset, data_root, download, device, skip_bad_images)
    images, labels = data.split("test")
    features = extract_layer(artifact.encoder, images, layer, batch_size, device)
    squashed = squash and layer == "y"
    if squashed:
        features = torch.sigmoid(torch.from_numpy(features)).numpy()
    with progress.activity(f"neighbors: the {n} nearest of {len(features)} test images"):
        found = nearest_neighbors(features, labels.numpy(), n, distance, seed)

    grid = run_dir / "neighbors.png"
    rows = [{
        "command": "neighbors", "class": q.label,
        **({"class_name": data.classes[q.label]} if q.label < len(data.classes) else {}),
        "query": q.query, "neighbors": q.neighbors, "distances": [round(d, 6) for d in q.distances],
        "neighbor_labels": q.neighbor_labels, "same_class": round(q.same_class, 6),
        "layer": layer, "space": "sigmoid(y)" if squashed else layer, "distance": distance, "n": n, "seed": seed,
        "encoder": artifact.sha256, "dataset": data.name, "grid": str(grid),
    } for q in found]
    lines = [result_line(r, str(encoder)) for r in rows]
    with atomic_folder(run_dir, _is_output) as folder:
        save_image_rows(folder / grid.name, [normalise(images[[q.query, *q.neighbors]]) for q in found])
        write_text(folder / "neighbors.jsonl", "".join(line + "\n" for line in lines))
    for line in lines:
        emit(line)


"""Real, tiny runs and results for the report tests, made once per session by the dimctl commands
themselves (in this process, to skip ten interpreter start-ups)."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.report.tiny import TINY, dimctl, lines


@dataclass
class Made:
    root: Path
    runs: dict[str, Path]  # name → run folder
    results: Path  # folder of JSON-lines files
    probe: list[dict]
    ndm: list[dict]
    mine: list[dict]
    reconstruct: list[dict]
    neighbors: list[dict]


@pytest.fixture(scope="session")
def made(tmp_path_factory) -> Made:
    """DIM(L) and DIM(G) on digits, 1 epoch: features, probes (svm, mlp), NDM, MINE, a decoder, neighbours."""
    root = tmp_path_factory.mktemp("report")
    runs = {"dim-l": root / "dim-l", "dim-g": root / "dim-g"}
    results = root / "results"
    results.mkdir()
    for name, folder in runs.items():
        dimctl("pretrain", *TINY, "--preset", name, "--out", folder)
        dimctl("extract", folder / "encoder.safetensors", "-o", root / f"{name}.h5")
    probe = dimctl("probe", root / "dim-l.h5", root / "dim-g.h5", "--classifier", "svm,mlp", "--mlp-epochs", "3", "--json")
    ndm = dimctl("ndm", root / "dim-l.h5", "--steps", "20")
    mine = dimctl("mine", runs["dim-l"] / "encoder.safetensors", "--steps", "5", "--out", root / "mine-dim-l")
    reconstruct = dimctl("reconstruct", runs["dim-l"] / "encoder.safetensors", "--epochs", "0", "--out", root / "rec-dim-l")
    neighbors = dimctl("neighbors", runs["dim-l"] / "encoder.safetensors", "--out", root / "nn-dim-l")
    for name, text in (("probe", probe), ("ndm", ndm), ("mine", mine), ("reconstruct", reconstruct)):
        (results / f"{name}.jsonl").write_text(text)
    return Made(root, runs, results, lines(probe), lines(ndm), lines(mine), lines(reconstruct), lines(neighbors))


@pytest.fixture(scope="session")
def sweep(made, tmp_path_factory) -> tuple[Path, list[dict]]:
    """An α × β sweep at γ = 0.1 (α=0, β=1 is DIM(L)'s weights) with the same settings otherwise; svm on y."""
    root = tmp_path_factory.mktemp("sweep")
    rows = []
    for alpha, beta in ((0, 1), (1, 0), (1, 1)):
        folder = root / f"a{alpha}-b{beta}"
        dimctl("pretrain", *TINY, "--alpha", alpha, "--beta", beta, "--gamma", "0.1", "--out", folder)
        dimctl("extract", folder / "encoder.safetensors", "--layer", "y", "-o", root / f"a{alpha}-b{beta}.h5")
        rows += lines(dimctl("probe", root / f"a{alpha}-b{beta}.h5", "--json"))
    (root / "probe.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, rows

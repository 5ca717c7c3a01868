"""Feature files from dimctl and from other tools: only the asked layers are read, another tool's
HDF5, .npz or VISSL export is read unverified (and the CLI says so), and a dimctl file changed after sealing is
told apart from a truncated one."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from dimctl.errors import ArtifactError
from dimctl.io.feature_reader import read_features
from tests.cli.helpers import assert_one_line_error, run_here


def test_only_the_asked_layers_are_read_and_never_the_file_whole(sealed, monkeypatch):
    whole = read_features(sealed)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read the whole file into memory"))
    feats = read_features(sealed, select=lambda available: ["y"])
    assert feats.layers == ["y"] and feats.available == ["conv", "fc", "y"] and feats.verified
    assert set(feats["train"]) == {"y", "labels"}
    assert np.array_equal(feats["test"]["y"], whole["test"]["y"])


def test_another_tools_hdf5_and_npz_are_probed_with_a_note(sealed, tmp_path):
    feats = read_features(sealed)
    foreign = tmp_path / "other.h5"
    with h5py.File(foreign, "w") as f:  # the same arrays as another tool would write them (float64 even)
        for split in ("train", "test"):
            f[f"{split}/embedding"] = feats[split]["y"].astype(np.float64)
            f[f"{split}/labels"] = feats[split]["labels"]
    npz = tmp_path / "other.npz"
    np.savez(npz, train_embedding=feats["train"]["y"], test_embedding=feats["test"]["y"],
             train_labels=feats["train"]["labels"], test_labels=feats["test"]["labels"])
    ours = json.loads(run_here("probe", sealed, "--layer", "y", "--classifier", "logreg", "--json").stdout)
    for path in (foreign, npz):
        result = run_here("probe", path, "--classifier", "logreg", "--json")
        assert result.returncode == 0, result.stderr.decode()
        row = json.loads(result.stdout)
        assert row["layer"] == "embedding" and row["accuracy"] == pytest.approx(ours["accuracy"], abs=1e-9)
        assert "unverified (no checksum)" in result.stderr.decode()
    assert "unverified" not in run_here("probe", sealed, "--layer", "y", "--classifier", "logreg").stderr.decode()


def test_a_folder_of_vissl_npy_exports_is_read_in_index_order(sealed, tmp_path):
    """VISSL writes PREFIX_SPLIT_LAYER_{features,targets,inds}.npy per rank, in its own sample order,
    targets as (N, 1), and the distributed sampler pads a rank with a repeated sample."""
    feats = read_features(sealed)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        n = len(feats[split]["labels"])
        order = rng.permutation(n)
        ranks = [order[: n // 2], np.append(order[n // 2:], order[0])]  # rank 1 repeats a sample of rank 0
        for rank, inds in enumerate(ranks):
            stem = tmp_path / f"rank{rank}_chunk0_{split}_res5avg"
            np.save(f"{stem}_features.npy", feats[split]["y"][inds])
            np.save(f"{stem}_targets.npy", feats[split]["labels"][inds].reshape(-1, 1))
            np.save(f"{stem}_inds.npy", inds)
    vissl = read_features(tmp_path)
    assert vissl.layers == ["res5avg"] and not vissl.verified
    for split in ("train", "test"):
        assert np.array_equal(vissl[split]["res5avg"], feats[split]["y"])
        assert np.array_equal(vissl[split]["labels"], feats[split]["labels"])
    ours = json.loads(run_here("probe", sealed, "--layer", "y", "--classifier", "logreg", "--json").stdout)
    result = run_here("probe", tmp_path, "--classifier", "logreg", "--json")
    assert result.returncode == 0 and "unverified (no checksum)" in result.stderr.decode()
    assert json.loads(result.stdout)["accuracy"] == pytest.approx(ours["accuracy"], abs=1e-9)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run_here("probe", empty), 2)


def test_modified_and_truncated_dimctl_files_are_told_apart(sealed, tmp_path):
    modified = tmp_path / "modified.h5"
    modified.write_bytes(sealed.read_bytes())
    with h5py.File(modified, "a") as f:
        f.attrs["note"] = "added by h5py"
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(sealed.read_bytes()[:-1000])
    with pytest.raises(ArtifactError, match="modified after dimctl wrote it"):
        read_features(modified)
    with pytest.raises(ArtifactError, match="damaged or truncated"):
        read_features(truncated)
    result = run_here("probe", modified)
    assert_one_line_error(result, 3)
    assert "modified after dimctl wrote it (its checksum differs" in result.stderr.decode()

import io
import json

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from dimctl.errors import ArtifactError, UsageError
from dimctl.io.artifacts import load_encoder, read_metadata, save_encoder
from dimctl.io.atomic import atomic_path
from dimctl.io.feature_reader import read_features
from dimctl.io.features import create_feature_file, init_feature_file, seal_bytes
from dimctl.models.encoders import EncoderConfig, build_encoder

DATASET = {"name": "digits", "channels": 1, "image_size": 32}


def test_encoder_round_trip_with_metadata(tmp_path):
    config = EncoderConfig(in_channels=3, y_dim=16)
    encoder = build_encoder(config).eval()
    path = save_encoder(tmp_path / "enc.safetensors", encoder, config, DATASET, step=7, training={"lr": 1e-4})
    loaded = load_encoder(path)
    assert loaded.config == config and loaded.dataset == DATASET
    assert loaded.metadata["dimctl.kind"] == "encoder" and loaded.metadata["dimctl.step"] == "7"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(encoder(x)["y"], loaded.encoder(x)["y"])
    assert len(loaded.sha256) == 64


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_published_files_get_the_umasks_mode_like_any_other_file(tmp_path, umask):
    # safetensors' save_file recreates the file 0600; a colleague on a shared machine must be able to read it.
    import os

    config = EncoderConfig(y_dim=4, width=0.125, fc_dim=8)
    previous = os.umask(umask)
    try:
        encoder = save_encoder(tmp_path / "enc.safetensors", build_encoder(config), config, DATASET, step=0)
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(previous)
    assert encoder.stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_foreign_and_broken_safetensors_are_artifact_errors(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ArtifactError, match="without dimctl metadata"):
        load_encoder(plain)
    other = tmp_path / "dec.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"dimctl.kind": "decoder", "dimctl.schema": "1"})
    with pytest.raises(ArtifactError, match="decoder, not an encoder"):
        load_encoder(other)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    with pytest.raises(ArtifactError):
        load_encoder(junk)
    with pytest.raises(UsageError):
        load_encoder(tmp_path / "missing.safetensors")


def test_weights_that_do_not_fit_the_config_are_artifact_errors(tmp_path):
    config = EncoderConfig()
    path = save_encoder(tmp_path / "enc.safetensors", build_encoder(config), config, DATASET, step=0)
    metadata, _ = read_metadata(path)
    metadata["dimctl.config"] = json.dumps({**config.to_dict(), "y_dim": 99})
    tensors = {k: v for k, v in build_encoder(config).state_dict().items()}
    lying = tmp_path / "lying.safetensors"
    save_file(tensors, str(lying), metadata=metadata)
    with pytest.raises(ArtifactError, match="do not match"):
        load_encoder(lying)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def _feature_bytes(values=None, schema=None) -> bytes:
    buf = io.BytesIO()
    with create_feature_file(buf) as f:
        init_feature_file(f, {"sha256": "ab"}, DATASET, ["y"], {"train": 4, "test": 2}, {"y": (3,)})
        f["train"]["y"][:] = np.arange(12, dtype=np.float32).reshape(4, 3) if values is None else values
        f["train"]["labels"][:] = [0, 1, 0, 1]
        if schema is not None:
            f.attrs["dimctl.schema"] = schema
    return seal_bytes(buf.getvalue())


def test_features_round_trip_from_bytes_and_file(tmp_path):
    data = _feature_bytes()
    feats = read_features(data)
    assert feats.layers == ["y"] and feats.dataset == DATASET
    assert feats.layer("train", "y").tolist()[1] == [3.0, 4.0, 5.0]
    path = tmp_path / "f.h5"
    path.write_bytes(data)
    assert read_features(path).layer("train", "labels").tolist() == [0, 1, 0, 1]


def test_bad_feature_files_are_artifact_errors(tmp_path):
    with pytest.raises(ArtifactError, match="schema"):
        read_features(_feature_bytes(schema=99))
    with pytest.raises(ArtifactError, match="NaN"):
        read_features(_feature_bytes(values=np.full((4, 3), np.nan, dtype=np.float32)))
    with pytest.raises(ArtifactError, match="not a dimctl feature file"):
        read_features(b"definitely not hdf5")
    good = _feature_bytes()
    with pytest.raises(ArtifactError, match="damaged or truncated"):
        read_features(good[:-10])
    flipped = bytearray(good)
    flipped[700] ^= 0xFF
    with pytest.raises(ArtifactError, match="modified after dimctl wrote it"):
        read_features(bytes(flipped))
    with pytest.raises(ArtifactError, match="no data"):
        read_features(b"")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ArtifactError, match="no /train and /test groups"):
        read_features(plain)  # plain HDF5 that is no feature file of any tool


DEEP = "[" * 100_000 + "]" * 100_000  # past Python's recursion limit: json.loads raises RecursionError


@pytest.mark.parametrize("key, value, message", [
    ("dimctl.dataset", "[]", "dimctl.dataset is a JSON array, not an object"),
    ("dimctl.dataset", json.dumps({"name": 5}), "dimctl.dataset field 'name' is a JSON number"),
    ("dimctl.dataset", json.dumps({**DATASET, "normalisation": "x/255"}), "dimctl.dataset field 'normalisation' is a JSON string"),
    ("dimctl.config", "[1]", "dimctl.config is a JSON array, not an object"),
    ("dimctl.training", "5", "dimctl.training is a JSON number, not an object"),
    ("dimctl.training", DEEP, r"dimctl.training is not a readable JSON entry \(nested too deeply\)"),
    ("dimctl.training", '{"a":' * 900 + "1" + "}" * 900, "dimctl.training .*nested more than 32 levels deep"),
])
def test_header_entries_of_the_wrong_shape_or_depth_are_artifact_errors(tmp_path, key, value, message):
    # Each was an AttributeError or RecursionError later: in extract, inspect, or Encoder.preprocess.
    import dimctl
    from tests.cli.helpers import assert_one_line_error, run_here

    config = EncoderConfig(y_dim=4, width=0.125, fc_dim=8)
    path = save_encoder(tmp_path / "enc.safetensors", build_encoder(config), config, DATASET, step=0,
                        training={"lr": 1e-4})
    metadata, _ = read_metadata(path)
    bad = tmp_path / "bad.safetensors"
    save_file(build_encoder(config).state_dict(), str(bad), metadata={**metadata, key: value})
    for load in (load_encoder, dimctl.load_encoder):
        with pytest.raises(ArtifactError, match=f"^{bad}: {message}"):
            load(bad)
    for command in (["inspect", bad], ["extract", bad, "-o", tmp_path / "f.h5"]):
        result = run_here(*command)
        assert_one_line_error(result, 3)
        assert f"{bad}: {key}" in result.stderr.decode()

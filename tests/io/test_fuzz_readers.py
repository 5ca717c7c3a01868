"""Damaged artifacts: every truncation or byte flip of a valid file gives ArtifactError or a valid
load — never another exception, a hang or a crash."""

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dimctl.errors import ArtifactError
from dimctl.io.artifacts import load_encoder, save_encoder
from dimctl.io.feature_reader import read_features
from dimctl.io.features import create_feature_file, init_feature_file, seal_bytes
from dimctl.models.encoders import EncoderConfig, build_encoder

FUZZ = settings(max_examples=400, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def encoder_bytes(tmp_path_factory) -> bytes:
    config = EncoderConfig(fc_dim=8, y_dim=4)  # small: the fuzzing rewrites the file each time
    path = tmp_path_factory.mktemp("fuzz") / "enc.safetensors"
    save_encoder(path, build_encoder(config), config, {"name": "digits"}, step=1)
    return path.read_bytes()


@pytest.fixture(scope="module")
def feature_bytes() -> bytes:
    buf = io.BytesIO()
    with create_feature_file(buf) as f:
        init_feature_file(f, {"sha256": "ab"}, {"name": "digits"}, ["y", "fc"], {"train": 6, "test": 3},
                          {"y": (4,), "fc": (2, 3)})
        for split, n in (("train", 6), ("test", 3)):
            f[split]["y"][:] = np.random.default_rng(0).normal(size=(n, 4))
            f[split]["fc"][:] = 1.0
            f[split]["labels"][:] = np.arange(n) % 2
    return seal_bytes(buf.getvalue())


def _damage(data: bytes, cut: int, flips: list[tuple[int, int]]) -> bytes:
    damaged = bytearray(data[:cut])
    for position, value in flips:
        if damaged:
            damaged[position % len(damaged)] ^= value
    return bytes(damaged)


def _header_biased_flips(limit: int):
    # Half the flips land in the first 2 KiB, where headers and metadata live.
    position = st.one_of(st.integers(0, 2047), st.integers(0, limit))
    return st.lists(st.tuples(position, st.integers(1, 255)), max_size=4)


@FUZZ
@given(data=st.data())
def test_damaged_encoders_are_artifact_errors_or_valid(encoder_bytes, tmp_path, data):
    cut = data.draw(st.one_of(st.just(len(encoder_bytes)), st.integers(0, len(encoder_bytes))))
    damaged = _damage(encoder_bytes, cut, data.draw(_header_biased_flips(len(encoder_bytes))))
    path = tmp_path / "damaged.safetensors"
    path.write_bytes(damaged)
    try:
        artifact = load_encoder(path)
    except ArtifactError:
        return
    assert artifact.config.y_dim == 4  # it loaded: it must be a whole encoder


@FUZZ
@given(data=st.data())
def test_damaged_feature_files_are_artifact_errors_or_valid(feature_bytes, data):
    cut = data.draw(st.one_of(st.just(len(feature_bytes)), st.integers(0, len(feature_bytes))))
    damaged = _damage(feature_bytes, cut, data.draw(_header_biased_flips(len(feature_bytes))))
    try:
        feats = read_features(damaged)
    except ArtifactError:
        return
    for split in ("train", "test"):
        for layer in feats.layers:
            assert np.isfinite(feats.layer(split, layer)).all()

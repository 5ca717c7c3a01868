"""Damaged artifacts: every truncation or byte flip of a valid file gives ArtifactError or a valid
load — never another exception, a hang or a crash."""

import io
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dimctl import load_features
from dimctl.errors import ArtifactError
from dimctl.io.artifacts import load_encoder, save_encoder
from dimctl.io.feature_reader import read_features
from dimctl.io.features import create_feature_file, init_feature_file, seal_bytes
from dimctl.models.encoders import EncoderConfig, build_encoder
from tests.cli.helpers import assert_one_line_error, run_here

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


# --- .npz archives damaged at the zip level (issue 40) -----------------------------------------
# zipfile raises its own errors for these, not BadZipFile; each is "not a readable .npz".

LOCAL, CENTRAL = b"PK\x03\x04", b"PK\x01\x02"


def _patch_headers(data: bytearray, local_at: int, central_at: int) -> bytearray:
    """Patch a field of every member's local and central directory headers (offsets from each signature)."""
    for signature, at in ((LOCAL, local_at), (CENTRAL, central_at)):
        start = data.find(signature)
        while start != -1:
            yield start + at
            start = data.find(signature, start + 4)


def _encrypted(data: bytearray) -> None:
    for at in _patch_headers(data, 6, 8):  # general-purpose flag bit 0: encrypted
        data[at] |= 1


def _unknown_method(data: bytearray) -> None:
    for at in _patch_headers(data, 8, 10):  # compression method 99 (AES in WinZip's extension)
        data[at:at + 2] = (99).to_bytes(2, "little")


def _corrupt_deflate(data: bytearray) -> None:
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.infolist()[0]
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_length + extra_length
    data[start] = 0xFF  # a final block of the reserved type 3: "invalid block type"


@pytest.mark.parametrize("damage", [_encrypted, _unknown_method, _corrupt_deflate],
                         ids=["encrypted", "compression-method-99", "corrupt-deflate"])
def test_npz_damaged_at_the_zip_level_is_not_a_readable_npz(tmp_path, damage):
    path = tmp_path / "damaged.npz"
    labels = np.arange(6) % 2
    np.savez_compressed(path, train_labels=labels, test_labels=labels,
                        train_y=np.ones((6, 4), np.float32), test_y=np.ones((6, 4), np.float32))
    data = bytearray(path.read_bytes())
    damage(data)
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="is not a readable .npz of features"):
        load_features(path)
    result = run_here("probe", path, "--classifier", "logreg")
    assert_one_line_error(result, 3)
    assert f"{path} is not a readable .npz" in result.stderr.decode()

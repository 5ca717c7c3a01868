"""Feature files that reach outside themselves, sealed with a valid checksum as anyone can: external
raw storage (a secret file, a FIFO), virtual datasets, soft and external links, a looped link
graph. probe and inspect refuse each by name (exit 3, one line) before reading any data, and
never hang."""

import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from dimctl.io.features import seal_file
from tests.cli.helpers import ENV, assert_one_line_error, run_here


def crafted(sealed, folder, attack, reseal=True):
    """A copy of a real feature file changed by ``attack(f, shape)`` and sealed again."""
    path = folder / f"{attack.__name__}.h5"
    shutil.copy(sealed, path)
    with h5py.File(path, "a") as f:
        shape = f["train/y"].shape
        attack(f, shape)
    if reseal:
        seal_file(path)
    return path


def secret(folder):
    path = folder / "secret.bin"
    path.write_bytes(np.arange(10**6, dtype=np.float32).tobytes())
    return path


def test_external_storage_virtual_datasets_and_links_are_refused_by_name(sealed, tmp_path):
    outside = secret(tmp_path)
    with h5py.File(tmp_path / "other.h5", "w") as g:
        g["data"] = np.zeros((2000, 64), np.float32)

    def external_storage(f, shape):
        del f["train/y"]
        f.create_dataset("train/y", shape=shape, dtype="f4", external=[(str(outside), 0, h5py.h5f.UNLIMITED)])

    def virtual_dataset(f, shape):
        layout = h5py.VirtualLayout(shape=shape, dtype="f4")
        layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "data", shape=(2000, 64))[:shape[0], :shape[1]]
        del f["train/y"]
        f.create_virtual_dataset("train/y", layout)

    def soft_link(f, shape):
        del f["test/y"]
        f["test/y"] = h5py.SoftLink("/train/y")

    def external_link(f, shape):
        del f["test/y"]
        f["test/y"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/data")

    def looped_links(f, shape):
        loop = f.create_group("train/loop")
        loop["again"] = loop  # a hard link to itself: endless paths in a few bytes

    expected = {external_storage: "/train/y keeps its data in another file", virtual_dataset: "/train/y is a virtual",
                soft_link: "/test/y is a soft link", external_link: "/test/y is an external link",
                looped_links: "HDF5 objects (a looped"}
    for attack, message in expected.items():
        path = crafted(sealed, tmp_path, attack)
        for command in ("probe", "inspect"):
            result = run_here(command, path)
            assert_one_line_error(result, 3)
            assert message in result.stderr.decode(), (attack.__name__, command, result.stderr.decode())
    # Another tool's (unsealed) HDF5 gets the same checks.
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["train/labels"] = np.zeros(10, np.int64)
        f["test/labels"] = np.zeros(10, np.int64)
        f.create_dataset("train/emb", shape=(10, 4), dtype="f4", external=[(str(outside), 0, 160)])
        f["test/emb"] = np.zeros((10, 4), np.float32)
    result = run_here("probe", foreign)
    assert_one_line_error(result, 3)
    assert "keeps its data in another file" in result.stderr.decode()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_external_storage_on_a_fifo_is_refused_not_waited_on(sealed, tmp_path):
    """A real process: a reader that opened the FIFO would block until killed."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def fifo_storage(f, shape):
        del f["train/y"]
        f.create_dataset("train/y", shape=shape, dtype="f4", external=[(str(fifo), 0, h5py.h5f.UNLIMITED)])

    path = crafted(sealed, tmp_path, fifo_storage)
    result = subprocess.run([sys.executable, "-m", "dimctl", "probe", str(path)], capture_output=True, env=ENV,
                            timeout=120)
    assert_one_line_error(result, 3)
    assert "keeps its data in another file" in result.stderr.decode()


# --- VISSL folders (issue 40): a shard read is a regular file inside the folder given ----------


def vissl_with(folder, shard):
    """A VISSL folder whose r0_train_res5_features.npy is made by ``shard(path)`` instead."""
    from tests.io.test_hostile_sizes import vissl_folder

    vissl_folder(folder)
    target = folder / "r0_train_res5_features.npy"
    target.unlink()
    shard(target)
    return folder


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_shard_in_a_vissl_folder_is_refused_not_waited_on(tmp_path):
    """A real process for the CLI, a thread for the API: a reader that opened the FIFO would block."""
    import threading

    from dimctl import load_features
    from dimctl.errors import ArtifactError

    folder = vissl_with(tmp_path / "vissl", os.mkfifo)
    result = subprocess.run([sys.executable, "-m", "dimctl", "probe", str(folder)], capture_output=True, env=ENV,
                            timeout=120)
    assert_one_line_error(result, 3)
    assert "r0_train_res5_features.npy is not a regular file" in result.stderr.decode()
    raised = []

    def load():
        try:
            load_features(folder)
        except ArtifactError as e:
            raised.append(e)

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive() and "is not a regular file" in str(raised[0])


def test_a_vissl_shard_linking_outside_the_folder_is_refused(tmp_path):
    from dimctl import load_features
    from dimctl.errors import ArtifactError

    outside = tmp_path / "outside.npy"
    np.save(outside, np.ones((4, 4), np.float32))
    folder = vissl_with(tmp_path / "vissl", lambda target: target.symlink_to(outside))
    with pytest.raises(ArtifactError, match="r0_train_res5_features.npy links to a file outside the folder"):
        load_features(folder)
    result = run_here("probe", folder, "--classifier", "logreg")
    assert_one_line_error(result, 3)
    assert "links to a file outside the folder" in result.stderr.decode()
    # A link that stays inside (a shard shared by two names) is read as its target.
    inside = vissl_with(tmp_path / "inside", lambda target: target.symlink_to(target.parent / "r0_test_res5_features.npy"))
    assert load_features(inside)["train"]["res5"].shape == (4, 4)

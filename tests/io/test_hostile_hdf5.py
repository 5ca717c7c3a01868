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
from tests.cli.test_cli import ENV, assert_one_line_error, run_here


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

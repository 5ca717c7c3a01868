"""-o onto what is not a regular file: a device or FIFO gets the complete file written through
(never replaced by a regular file, no --force needed), a link keeps being a link (its target is
replaced), a folder is refused."""

import os
import stat
import threading

import pytest

from tests.cli.helpers import assert_one_line_error, run_here


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    assert run_here("pretrain", "--dataset", "digits", "--epochs", "0", "--mi-units", "8", "--width", "0.25",
                    "--fc-dim", "32", "--out", root / "run").returncode == 0
    return root / "run" / "encoder.safetensors"


def extract(encoder, target, *extra):
    return run_here("extract", encoder, "--layer", "y", "-o", target, *extra)


def test_devices_fifos_links_and_folders(encoder, tmp_path):
    assert extract(encoder, tmp_path / "plain.h5").returncode == 0
    expected = (tmp_path / "plain.h5").read_bytes()

    assert extract(encoder, "/dev/null").returncode == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)  # still the device

    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(open(fifo, "rb").read()))
    reader.start()
    assert extract(encoder, fifo).returncode == 0
    reader.join(timeout=60)
    assert received == [expected] and stat.S_ISFIFO(os.lstat(fifo).st_mode)

    target = tmp_path / "target.h5"
    target.write_bytes(b"old")
    link = tmp_path / "link.h5"
    link.symlink_to(target)
    assert extract(encoder, link, "--force").returncode == 0
    assert link.is_symlink() and target.read_bytes() == expected

    (tmp_path / "folder.h5").mkdir()
    assert_one_line_error(extract(encoder, tmp_path / "folder.h5", "--force"), 2)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

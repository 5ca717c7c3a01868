"""`dimctl extract` with its writer thread: the same bytes to a file and to a pipe, the same arrays
as the encoder's own forward, and every failure (in the thread, in the forward, SIGTERM, a reader
that stops) leaves no file behind and exits with the documented code."""

import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
import torch

import dimctl.cli.extract as extract_cli
from dimctl.cli.main import run
from dimctl.data.registry import load_dataset
from dimctl.evaluate.extract import iter_features
from dimctl.io.artifacts import save_encoder
from dimctl.io.feature_reader import read_features
from dimctl.io.features import FileSink, MemorySink
from dimctl.models.encoders import EncoderConfig, build_encoder
from tests.cli.helpers import DIMCTL, ENV, sh


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    data = load_dataset("digits")
    config = EncoderConfig(in_channels=1, image_size=32, y_dim=16)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("enc") / "encoder.safetensors"
    save_encoder(path, build_encoder(config).eval(), config, data.describe(), step=0, training={})
    return path


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("dimctl: error:") and "Traceback" not in err, err
    return lines[0]


def _no_writer_thread() -> bool:
    return not [t for t in threading.enumerate() if t.name == "dimctl-feature-writer"]


def test_file_and_stdout_are_the_same_bytes_and_the_encoders_own_features(encoder, tmp_path, capsysbinary,
                                                                          monkeypatch):
    out = tmp_path / "f.h5"
    assert run(["extract", str(encoder), "--layer", "y,conv,pixels", "--batch-size", "100", "-o", str(out)]) == 0
    capsysbinary.readouterr()
    assert run(["extract", str(encoder), "--layer", "y,conv,pixels", "--batch-size", "100"]) == 0
    piped = capsysbinary.readouterr().out
    assert piped == out.read_bytes()
    monkeypatch.setenv("DIMCTL_INLINE_WRITER", "1")  # no writer thread: the same bytes
    assert run(["extract", str(encoder), "--layer", "y,conv,pixels", "--batch-size", "100",
                "-o", str(tmp_path / "inline.h5")]) == 0
    assert (tmp_path / "inline.h5").read_bytes() == piped
    feats = read_features(piped)
    assert feats.layers == ["y", "conv", "pixels"]
    from dimctl.io.artifacts import load_encoder

    model = load_encoder(encoder).encoder
    data = load_dataset("digits")
    for split in ("train", "test"):
        images, labels = data.split(split)
        assert np.array_equal(feats.layer(split, "labels"), labels.numpy())
        for layer in ("y", "conv", "pixels"):
            expected = np.concatenate([b[layer] for _, b in iter_features(model, images, [layer], 100)])
            assert np.array_equal(feats.layer(split, layer), expected), (split, layer)


@pytest.mark.parametrize("error,code,message", [(OSError(28, "No space left on device"), 1, "No space left on device"),
                                                (RuntimeError("disk on fire"), 1, "unexpected RuntimeError: disk on fire")])
def test_a_failure_in_the_writer_thread_leaves_no_file(encoder, tmp_path, monkeypatch, capsys, error, code, message):
    calls = []
    real = FileSink.write

    def failing(self, offset, data):
        calls.append(threading.current_thread().name)
        if len(calls) == 20:  # mid-way: after some batches are on disk
            raise error
        real(self, offset, data)

    monkeypatch.setattr(FileSink, "write", failing)
    out = tmp_path / "f.h5"
    assert run(["extract", str(encoder), "--batch-size", "50", "-o", str(out)]) == code
    line = _one_error_line(capsys.readouterr().err)
    assert message in line
    if isinstance(error, OSError):
        assert str(out) in line  # the file the user named, not the temporary one
    assert "dimctl-feature-writer" in calls and len(calls) == 20
    assert list(tmp_path.iterdir()) == [] and _no_writer_thread()


def test_a_failure_in_the_writer_thread_writes_nothing_to_the_pipe(encoder, monkeypatch, capsysbinary):
    real, calls = MemorySink.write, []

    def failing(self, offset, data):
        calls.append(1)
        if len(calls) == 20:
            raise OSError(12, "Cannot allocate memory")
        real(self, offset, data)

    monkeypatch.setattr(MemorySink, "write", failing)
    assert run(["extract", str(encoder), "--batch-size", "50"]) == 1
    captured = capsysbinary.readouterr()
    assert captured.out == b"" and "Cannot allocate memory" in _one_error_line(captured.err.decode())
    assert _no_writer_thread()


def test_an_interrupt_during_the_forward_leaves_no_file(encoder, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        for i, item in enumerate(iter_features(*args, **kwargs)):
            if i == 3:
                raise KeyboardInterrupt  # what Ctrl-C and SIGTERM raise in the main thread
            yield item

    monkeypatch.setattr(extract_cli, "iter_features", interrupted)
    out = tmp_path / "f.h5"
    assert run(["extract", str(encoder), "--batch-size", "50", "-o", str(out)]) == 130
    assert "interrupted" in _one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == [] and _no_writer_thread()


def test_sigterm_mid_way_leaves_nothing_behind(encoder, tmp_path):
    out = tmp_path / "f.h5"
    # One image per forward: long enough to be caught mid-way.
    proc = subprocess.Popen([*DIMCTL, "extract", str(encoder), "--batch-size", "1", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob(".f.h5.*.tmp")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.fail(f"extract ended before it could be stopped: {proc.returncode} {proc.stderr.read().decode()}")
    time.sleep(0.3)  # into the forward passes
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("extract finished before SIGTERM arrived")
    assert proc.returncode == 130, err.decode()
    assert "interrupted" in _one_error_line(err.decode())
    assert list(tmp_path.iterdir()) == []


def test_a_reader_that_stops_early_is_not_an_error(encoder, tmp_path):
    result = sh(f"{' '.join(DIMCTL)} extract {encoder} | head -c 10", tmp_path)
    assert result.returncode == 0 and result.stderr == b"", result.stderr.decode()
    assert result.stdout == b"dimctl-fea"
    assert os.listdir(tmp_path) == []


def test_bf16_forward_still_writes_float32_and_records_it(encoder, tmp_path, capsys):
    fp32, bf16 = tmp_path / "fp32.h5", tmp_path / "bf16.h5"
    assert run(["extract", str(encoder), "--layer", "fc,y", "-o", str(fp32)]) == 0
    assert run(["extract", str(encoder), "--layer", "fc,y", "--precision", "bf16", "-o", str(bf16)]) == 0
    import h5py

    for path, precision in ((fp32, "fp32"), (bf16, "bf16")):
        with h5py.File(path) as f:
            assert f.attrs["dimctl.precision"] == precision and f["train/y"].dtype == np.float32
    a, b = read_features(fp32), read_features(bf16)
    for split in ("train", "test"):
        for layer in ("fc", "y"):
            x, y = a.layer(split, layer), b.layer(split, layer)
            assert not np.array_equal(x, y)  # it did run in bf16
            assert np.abs(x - y).max() <= 0.05 * np.abs(x).max()  # bf16 keeps 8 bits of mantissa
    assert run(["extract", str(encoder), "--precision", "fp16", "-o", str(tmp_path / "x.h5")]) == 2
    assert "--precision must be one of fp32, bf16, auto" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "x.h5").exists()

"""dimctl reads only what the user named, and a named input that is not a regular file is refused
before it is read (issue 40): a FIFO given to `inspect`, `generate score` (a samples file,
--inception-weights), `export --results`, `probe` or `--backbone-weights` is exit 2 "not a regular
file (a FIFO)", never "no such file" and never a hang; an encoder whose header records an image
folder outside its run folder ("source": "/etc") makes `extract` ask for --data-root instead of
scanning that folder."""

import contextlib
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from dimctl.io.artifacts import save_encoder, save_generator
from dimctl.models.encoders import EncoderConfig, build_encoder
from dimctl.models.generators import GeneratorConfig, build_generator
from tests.cli.helpers import ENV, assert_one_line_error, run_here

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A tiny digits encoder and generator, and FIFOs named as each kind of input."""
    root = tmp_path_factory.mktemp("named")
    config = EncoderConfig(in_channels=1, image_size=32, y_dim=8, width=0.125, fc_dim=16)
    torch.manual_seed(0)
    save_encoder(root / "encoder.safetensors", build_encoder(config).eval(), config, {"name": "digits"}, step=0)
    generator = GeneratorConfig(image_size=32, channels=1, z_dim=8, width=4)
    save_generator(root / "generator.safetensors", build_generator(generator).eval(), generator, {"name": "digits"},
                   step=0)
    for name in ("f.h5", "f.safetensors", "f.jsonl", "f.pth"):
        os.mkfifo(root / name)
    return root


@contextlib.contextmanager
def never_blocked(fifo):
    """A writer waiting on ``fifo``: a command that opened it for reading would get end-of-file from
    it, so a regression fails its test instead of hanging the suite."""
    writer = threading.Thread(target=lambda: os.close(os.open(fifo, os.O_WRONLY)), daemon=True)
    writer.start()
    try:
        yield
    finally:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer's open return, if no one read
        writer.join(10)
        os.close(fd)


# (the command, given the folder of `made`; the FIFO it names; how the message names it)
FIFO_READERS = {
    "inspect": (lambda r: ("inspect", r / "f.safetensors"), "f.safetensors", ""),
    "inspect h5": (lambda r: ("inspect", r / "f.h5"), "f.h5", ""),
    "probe": (lambda r: ("probe", r / "f.h5"), "f.h5", ""),
    "generate score samples": (lambda r: ("generate", "score", r / "f.h5", "--features", r / "encoder.safetensors",
                                          "--cpu"), "f.h5", ""),
    "--inception-weights": (lambda r: ("generate", "score", r / "generator.safetensors", "-n", "4", "--cpu",
                                       "--inception-weights", r / "f.pth"), "f.pth", ""),
    "export --results": (lambda r: ("export", r / "encoder.safetensors", "--format", "hf", "-o", r / "hf",
                                    "--results", r / "f.jsonl"), "f.jsonl", "--results "),
    "an encoder": (lambda r: ("neighbors", r / "f.safetensors", "--cpu", "--out", r / "nn"), "f.safetensors", ""),
    "--backbone-weights": (lambda r: ("pretrain", "--arch", "torchvision:resnet18", "--backbone-weights",
                                      r / "f.pth", "--out", r / "bb"), "f.pth", "--backbone-weights "),
}


@pytest.mark.parametrize("case", sorted(FIFO_READERS))
def test_a_fifo_is_refused_by_name_never_read(case, made):
    command, fifo, flag = FIFO_READERS[case]
    with never_blocked(made / fifo):
        result = run_here(*command(made))
    assert_one_line_error(result, 2)
    assert f"{flag}{made / fifo}: not a regular file (a FIFO); name a file" in result.stderr.decode()


@pytest.mark.parametrize("case", ["inspect", "generate score samples", "--inception-weights", "export --results"])
def test_a_missing_file_is_still_no_such_file(case, made, tmp_path):
    command, fifo, flag = FIFO_READERS[case]
    gone = tmp_path / fifo
    args = [gone if a == made / fifo else a for a in command(made)]
    result = run_here(*args)
    assert_one_line_error(result, 2)
    assert f"{flag}{gone}: no such file" in result.stderr.decode()


def test_a_fifo_in_a_real_process_is_refused_at_once(made):
    result = subprocess.run([sys.executable, "-m", "dimctl", "inspect", str(made / "f.h5")], capture_output=True,
                            env=ENV, timeout=120)
    assert_one_line_error(result, 2)


# --- an encoder's recorded image folder ---------------------------------------------------------

def folder_encoder(run, source) -> "os.PathLike":
    config = EncoderConfig(in_channels=3, image_size=32, y_dim=8, width=0.125, fc_dim=16)
    torch.manual_seed(0)
    run.mkdir(parents=True, exist_ok=True)
    return save_encoder(run / "encoder.safetensors", build_encoder(config).eval(), config,
                        {"name": "folder", "source": str(source)}, step=0)


def image_folder(folder):
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / label / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("outside") / "images")


RECORDED = {  # the header's "source", given the run folder and a folder outside it
    "/etc": lambda run, out: "/etc",
    "a folder outside the run": lambda run, out: out,
    "a link in the run to outside": lambda run, out: (run.mkdir(parents=True), (run / "images").symlink_to(out),
                                                      run / "images")[-1],
    "../ out of the run": lambda run, out: run / ".." / ".." / out.parent.name / "images",
}


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_a_recorded_folder_outside_the_run_is_not_read_unless_named(case, outside, tmp_path):
    run = tmp_path / "run"
    source = RECORDED[case](run, outside)
    encoder = folder_encoder(run, source)
    result = run_here("extract", encoder, "-o", tmp_path / "f.h5")
    assert_one_line_error(result, 2)
    assert f"pass --data-root {str(source)!r}" in result.stderr.decode() and not (tmp_path / "f.h5").exists()
    confirmed = run_here("extract", encoder, "--data-root", outside, "-o", tmp_path / "f.h5")
    assert confirmed.returncode == 0, confirmed.stderr.decode()


def test_the_runs_own_folder_is_read_without_data_root(tmp_path):
    run = tmp_path / "run"
    encoder = folder_encoder(run, image_folder(run / "images"))
    result = run_here("extract", encoder, "-o", tmp_path / "f.h5")
    assert result.returncode == 0, result.stderr.decode()

"""Commands that write several files into --out build the folder whole beside itself and rename it
into place (issue 40, group 9): a full disk, or a failure at any one file, is one line and leaves
no folder, no half set and no temporary — an earlier folder stays byte-identical. `generate sample
-o FILE.h5` on a full disk is one line naming FILE, not libhdf5's message naming its temporary."""

import os
import subprocess
import sys

import pytest
import torch

import dimctl.io.artifacts as artifacts
import dimctl.io.atomic as atomic
import dimctl.io.images as images
from dimctl.data.registry import load_dataset
from dimctl.io.artifacts import save_encoder, save_generator
from dimctl.models.encoders import EncoderConfig, build_encoder
from dimctl.models.generators import GeneratorConfig, build_generator
from tests.cli.helpers import ENV, run_here
from tests.io.test_multi_file_outputs import failing_after, snapshot, temporaries
from tests.train.test_force_and_full_disk import small_disk  # noqa: F401 (a fixture: an 8 MiB tmpfs)

NO_SPACE = os.strerror(28)

# command: (its flags after ENCODER, the files its --out folder gets)
COMMANDS = {
    "neighbors": (("-n", "2"), ("neighbors.png", "neighbors.jsonl")),
    "mine": (("--steps", "1", "--batch-size", "8"), ("metrics.jsonl", "result.json")),
    "reconstruct": (("--epochs", "0"), ("decoder.safetensors", "reconstructions.png", "metrics.jsonl", "result.json")),
}


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A random, narrow digits encoder: what the commands read, without training one."""
    config = EncoderConfig(in_channels=1, image_size=32, y_dim=16, width=0.125, fc_dim=32)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("enc") / "encoder.safetensors"
    return save_encoder(path, build_encoder(config).eval(), config, load_dataset("digits").describe(), step=0)


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    config = GeneratorConfig(image_size=32, channels=1, z_dim=16, width=4)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gen") / "generator.safetensors"
    return save_generator(path, build_generator(config).eval(), config, {"name": "digits"}, step=0)


def fill(disk) -> None:
    """Take every free byte of ``disk``."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / "filler", "wb") as f:
        os.posix_fallocate(f.fileno(), 0, free)


def command(name, encoder, out, *extra):
    flags, _ = COMMANDS[name]
    return run_here(name, encoder, *flags, "--cpu", "--out", out, *extra)


def one_line(result, code: int) -> str:
    """The one error line, last; before it only dimctl's own notes (mine reports its threads and steps)."""
    err = result.stderr.decode()
    lines = [line for line in err.splitlines() if line.strip()]
    assert result.returncode == code, err
    assert lines[-1].startswith("dimctl: error:") and all(line.startswith("dimctl: ") for line in lines), err
    assert sum("error:" in line for line in lines) == 1 and "Traceback" not in err, err
    return lines[-1]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_full_disk_is_one_line_and_leaves_no_folder(name, encoder, small_disk):  # noqa: F811
    fill(small_disk)
    err = one_line(command(name, encoder, small_disk / "out"), 1)
    assert NO_SPACE in err and "out" in err and "Safetensor" not in err and ".tmp" not in err, err
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # no folder, empty or partial


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_failure_at_the_second_file_leaves_the_old_set_byte_identical(name, encoder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert command(name, encoder, out).returncode == 0
    before = snapshot(out)
    second_fails = failing_after(atomic.atomic_path, 1, OSError(28, NO_SPACE))
    for module in (atomic, images, artifacts):  # every writer's temporary file comes from atomic_path
        monkeypatch.setattr(module, "atomic_path", second_fails)
    assert NO_SPACE in one_line(command(name, encoder, out, "--force"), 1)
    assert snapshot(out) == before and temporaries(tmp_path) == []
    monkeypatch.undo()
    fresh = tmp_path / "fresh"
    assert command(name, encoder, fresh).returncode == 0 and sorted(p.name for p in fresh.iterdir()) == \
        sorted(COMMANDS[name][1])


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_an_out_folder_holding_other_files_is_refused_before_any_work(name, encoder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    err = one_line(command(name, encoder, out, "--force"), 2)
    assert "holds notes.txt, which dimctl did not write there" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_generate_sample_h5_on_a_full_disk_names_the_file_not_its_temporary(generator, small_disk):  # noqa: F811
    fill(small_disk)
    target = small_disk / "s.h5"
    # A real process: libhdf5 crashed (exit 139) freeing its objects after the failed write.
    result = subprocess.run([sys.executable, "-m", "dimctl", "generate", "sample", str(generator), "-n", "64",
                             "-o", str(target)], capture_output=True, env=ENV, timeout=300)
    err = one_line(result, 1)
    assert f"{target}: {NO_SPACE}" in err and ".tmp" not in err, err
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]
    (small_disk / "filler").unlink()
    assert run_here("generate", "sample", generator, "-n", "4", "-o", target).returncode == 0
    assert run_here("inspect", target).returncode == 0  # the same file as before the change: sealed HDF5

"""A streamed image folder trains exactly like the same folder loaded into memory."""

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from dimctl.cli.main import run
from dimctl.data.registry import load_dataset
from dimctl.data.streaming import open_streaming_folder, stream_batches


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("pngs")
    data = load_dataset("digits")
    for i in range(240):
        label = int(data.train_labels[i])
        (root / str(label)).mkdir(exist_ok=True)
        Image.fromarray(data.train_images[i, 0].numpy()).save(root / str(label) / f"{i:04d}.png")
    return root


def test_streamed_batches_are_the_in_memory_images(folder):
    memory = load_dataset("folder", folder)
    streamed = open_streaming_folder(folder, 32)
    assert (streamed.num_train, streamed.channels) == (memory.train_images.shape[0], 1)
    order = torch.randperm(streamed.num_train)
    batches = [order[i:i + 16].tolist() for i in range(0, 64, 16)]
    got = torch.cat(list(stream_batches(streamed, batches, torch.device("cpu"), workers=2)))
    assert torch.equal(got, memory.train_images[order[:64]])


def test_pretrain_with_stream_matches_in_memory_training(folder, tmp_path, capsys):
    flags = ["pretrain", "--dataset", "folder", "--data-root", str(folder), "--mi-units", "32", "--epochs", "2",
             "--batch-size", "32", "--checkpoint-every", "0"]
    assert run(flags + ["--out", str(tmp_path / "memory")]) == 0
    assert run(flags + ["--stream", "--workers", "2", "--out", str(tmp_path / "stream")]) == 0
    a = load_file(str(tmp_path / "memory" / "encoder.safetensors"))
    b = load_file(str(tmp_path / "stream" / "encoder.safetensors"))
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_damaged_file_is_named_or_skipped_when_streaming(folder, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    for path in sorted(folder.rglob("*.png"))[:64]:
        (bad / path.parent.name).mkdir(exist_ok=True)
        (bad / path.parent.name / path.name).write_bytes(path.read_bytes())
    victim = sorted(bad.rglob("*.png"))[5]
    victim.write_bytes(b"not a png")
    flags = ["pretrain", "--dataset", "folder", "--data-root", str(bad), "--stream", "--workers", "1",
             "--mi-units", "16", "--epochs", "2", "--batch-size", "16"]
    capsys.readouterr()
    assert run(flags + ["--out", str(tmp_path / "r1")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and victim.name in err[0] and "--skip-bad-images" in err[0]
    assert not (tmp_path / "r1" / "encoder.safetensors").exists()
    assert run(flags + ["--skip-bad-images", "--out", str(tmp_path / "r2")]) == 0
    assert (tmp_path / "r2" / "encoder.safetensors").exists()


def test_stream_is_for_folders_only(tmp_path, capsys):
    assert run(["pretrain", "--dataset", "digits", "--stream", "--out", str(tmp_path / "r")]) == 2
    assert "--stream" in capsys.readouterr().err

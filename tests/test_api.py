"""The Python API (dimctl/api.py): a loaded encoder computes exactly the features `dimctl extract`
wrote, from images preprocessed as in training; feature files load as numpy arrays; the README's
example, and every docs page's block marked `<!-- runs: after make demo -->`, runs as written."""

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

import dimctl
from dimctl.cli.main import run
from dimctl.data.dataset import seeded_split

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "digits", "--epochs", "1", "--mi-units", "16", "--width", "0.25", "--fc-dim", "32",
        "--checkpoint-every", "0", "--precision", "fp32"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The files `make demo` makes that the README's example reads, from a tiny run."""
    root = tmp_path_factory.mktemp("api")
    with contextlib.redirect_stdout(io.StringIO()):
        assert run(["pretrain", *TINY, "--out", str(root / "runs/demo/dim-l")]) == 0
        assert run(["extract", str(root / "runs/demo/dim-l/encoder.safetensors"), "--layer", "conv,fc,y",
                    "-o", str(root / "runs/demo/dim-l.h5")]) == 0
    return root


def _raw_digits_test_split() -> np.ndarray:
    """The digits test images as scikit-learn gives them (8×8), scaled to uint8 as dimctl's loader does."""
    bunch = load_digits()
    _, test = seeded_split(len(bunch.target), 0.2)
    return np.round(bunch.images[test.numpy()] * (255.0 / 16.0)).astype(np.uint8)


def test_encoder_on_raw_images_gives_the_extracted_features(demo):
    encoder = dimctl.load_encoder(demo / "runs/demo/dim-l/encoder.safetensors")
    assert isinstance(encoder, torch.nn.Module) and not encoder.training
    raw = _raw_digits_test_split()[:40]
    with torch.no_grad():
        from_numpy = encoder.features(encoder.preprocess(raw))
        from_pil = encoder(encoder.preprocess([Image.fromarray(a) for a in raw]))
        from_float = encoder(encoder.preprocess(torch.from_numpy(raw).float().unsqueeze(1) / 255))
    with h5py.File(demo / "runs/demo/dim-l.h5") as f:
        for layer in ("conv", "fc", "y"):
            torch.testing.assert_close(from_numpy[layer], torch.from_numpy(f[f"test/{layer}"][:40]), rtol=0, atol=1e-5)
        torch.testing.assert_close(from_pil, torch.from_numpy(f["test/y"][:40]), rtol=0, atol=1e-5)
        torch.testing.assert_close(from_float, torch.from_numpy(f["test/y"][:40]), rtol=0, atol=1e-5)
    assert encoder.dataset["name"] == "digits" and len(encoder.sha256) == 64


def test_preprocess_pads_28_pixel_images_as_mnist_is_loaded(demo):
    encoder = dimctl.load_encoder(demo / "runs/demo/dim-l/encoder.safetensors")
    image = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    x = encoder.preprocess(image)
    assert x.shape == (1, 1, 32, 32)
    torch.testing.assert_close(x[0, 0, 2:30, 2:30], torch.from_numpy(image).float() / 127.5 - 1)
    assert torch.all(x[0, 0, :2] == -1) and torch.all(x[0, 0, :, :2] == -1)  # zero padding is black
    with pytest.raises(ValueError, match="1-channel"):
        encoder.preprocess(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(KeyError, match="no layer 'nope'"):
        encoder.features(x, layers=("nope",))


def test_load_features_gives_arrays_by_split_and_layer(demo):
    features = dimctl.load_features(demo / "runs/demo/dim-l.h5")
    with h5py.File(demo / "runs/demo/dim-l.h5") as f:
        for split in ("train", "test"):
            for key in ("conv", "fc", "y", "labels"):
                np.testing.assert_array_equal(features[split][key], f[f"{split}/{key}"][:])
    assert features.dataset["name"] == "digits" and features.layers == ["conv", "fc", "y"]


def test_load_features_reads_only_the_layers_asked_for(demo):
    from dimctl.errors import UsageError

    path = demo / "runs/demo/dim-l.h5"
    everything = dimctl.load_features(path)
    for asked in ("y,conv", ["y", "conv"]):
        some = dimctl.load_features(path, layers=asked)
        assert some.layers == ["y", "conv"] and some.available == ["conv", "fc", "y"]
        for split in ("train", "test"):
            assert set(some[split]) == {"y", "conv", "labels"}  # fc never read
            for key in ("y", "conv", "labels"):
                np.testing.assert_array_equal(some[split][key], everything[split][key])
    with pytest.raises(UsageError, match="no layer 'pixels'.*it has conv, fc, y"):
        dimctl.load_features(path, layers=["y", "pixels"])


def _run_in(folder: Path, code: str, name: str, monkeypatch) -> str:
    monkeypatch.chdir(folder)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, name, "exec"), {})
    return printed.getvalue()


def test_the_readme_example_runs_as_written(demo, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Use it from Python"):]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)[:1]
    assert _run_in(demo, code, "README.md", monkeypatch).startswith("(16, 64) (16, 64, 4, 4) (1438, 64) [")


# A docs block meant to run says so on the line before its fence; it runs where `make demo` has run.
RUNNABLE = re.compile(r"<!-- runs: after make demo -->\n```python\n(.*?)```", flags=re.S)
DOCS_BLOCKS = [(str(page.relative_to(ROOT)), i, code) for page in sorted((ROOT / "docs").rglob("*.md"))
               for i, code in enumerate(RUNNABLE.findall(page.read_text()))]


def test_the_docs_have_runnable_blocks():
    assert "docs/api.md" in {page for page, _, _ in DOCS_BLOCKS}


@pytest.mark.parametrize("page, index, code", DOCS_BLOCKS, ids=[f"{p}:{i}" for p, i, _ in DOCS_BLOCKS])
def test_the_docs_blocks_run_as_written(demo, monkeypatch, page, index, code):
    _run_in(demo, code, f"{page} block {index}", monkeypatch)


def test_import_dimctl_imports_no_torch():
    code = "import sys, dimctl; assert 'torch' not in sys.modules; print(dimctl.__version__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


"""Shared by the feature-file tests: one real `dimctl extract` file, made once per session."""

import pytest

from tests.cli.helpers import run_here


@pytest.fixture(scope="session")
def sealed(tmp_path_factory):
    """A real `dimctl extract` file of a random digits encoder: conv, fc and y."""
    root = tmp_path_factory.mktemp("open")
    assert run_here("pretrain", "--dataset", "digits", "--epochs", "0", "--mi-units", "8", "--width", "0.25",
                    "--fc-dim", "32", "--out", root / "run").returncode == 0
    path = root / "f.h5"
    assert run_here("extract", root / "run" / "encoder.safetensors", "--layer", "conv,fc,y", "-o", path).returncode == 0
    return path

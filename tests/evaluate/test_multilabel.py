"""Multi-label data (CelebA's attributes): (N, K) labels through extract, probe per attribute."""

import json

import h5py
import numpy as np
import pytest

from dimctl.cli.main import run
from dimctl.evaluate.probes import probe_attributes
from dimctl.io.artifacts import save_encoder
from dimctl.models.encoders import EncoderConfig, build_encoder
from tests.data.fakes import ATTRIBUTES, write_celeba


def test_probe_attributes_scores_each_attribute_on_its_own():
    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(size=(400, 6)), rng.normal(size=(200, 6))

    def attributes(x, constant):
        return np.stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0, constant, rng.integers(0, 2, len(x))], 1).astype(np.int64)

    y_train = attributes(x_train, np.ones(400))
    y_test = attributes(x_test, np.arange(200) % 4 != 0)  # the constant-in-train attribute is 1 on 3/4 of test
    accuracy = probe_attributes(x_train, y_train, x_test, y_test, "logreg")
    assert len(accuracy) == 4
    assert accuracy[0] > 0.95 and accuracy[1] > 0.95  # linear attributes of the features
    assert accuracy[2] == pytest.approx(0.75)  # predicted as its one training value
    assert 0.35 < accuracy[3] < 0.65  # noise stays at chance
    with pytest.raises(ValueError):
        probe_attributes(x_train, y_train[:, 0], x_test, y_test, "logreg")


def test_celeba_extract_writes_attribute_labels_and_probe_reports_each(tmp_path, capsys):
    written = write_celeba(tmp_path, partition=(0,) * 8 + (2,) * 4)
    config = EncoderConfig(in_channels=3, width=0.125, fc_dim=16, y_dim=8)
    encoder = save_encoder(tmp_path / "enc.safetensors", build_encoder(config), config, {"name": "celeba"}, step=0)
    features = tmp_path / "f.h5"
    assert run(["extract", str(encoder), "--dataset", "celeba", "--data-root", str(tmp_path), "--layer", "y",
                "-o", str(features)]) == 0
    with h5py.File(features) as f:
        assert f["train/labels"].shape == (8, 3) and f["train/labels"].dtype == np.int64
        np.testing.assert_array_equal(f["test/labels"][:], written["attributes"][8:])
    capsys.readouterr()
    assert run(["probe", str(features), "--classifier", "logreg,knn", "--knn-k", "3", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["classifier"] for r in rows] == ["logreg", "knn"]
    for row in rows:
        assert row["multi_label"] and row["n_attributes"] == 3 and list(row["attribute_accuracy"]) == ATTRIBUTES
        assert row["accuracy"] == pytest.approx(np.mean(list(row["attribute_accuracy"].values())), abs=1e-6)
        assert all(v in (0, 0.25, 0.5, 0.75, 1) for v in row["attribute_accuracy"].values())  # 4 test images
    assert run(["probe", str(features), "--classifier", "logreg"]) == 0  # the table: mean accuracy per layer
    assert "test accuracy" in capsys.readouterr().out

import numpy as np
import pytest
import torch

from dimctl.data.transforms import normalise
from dimctl.evaluate.extract import PIXELS, iter_features
from dimctl.evaluate.probes import CLASSIFIERS, ProbeConfig, probe
from dimctl.models.encoders import EncoderConfig, build_encoder


def _blobs(n, seed, shuffle_labels=False):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    centres = np.array([[4.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 4.0, 0]])
    x = (centres[labels] + rng.normal(size=(n, 4))).astype(np.float32)
    if shuffle_labels:
        labels = rng.permutation(labels)
    return x.reshape(n, 2, 2), labels  # 2-D per-sample features: probes must flatten


@pytest.mark.parametrize("classifier", list(CLASSIFIERS))
def test_probes_read_separable_labels_and_not_noise(classifier):
    config = ProbeConfig(mlp_epochs=30)
    (tx, ty), (ex, ey) = _blobs(300, 0), _blobs(150, 1)
    assert probe(tx, ty, ex, ey, classifier, config) > 0.95
    (tx, ty), (ex, ey) = _blobs(300, 0, shuffle_labels=True), _blobs(150, 1, shuffle_labels=True)
    assert probe(tx, ty, ex, ey, classifier, config) < 0.55  # chance is 1/3


def test_iter_features_batches_cover_every_image_and_pixels_is_the_input():
    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig())
    images = torch.randint(0, 256, (10, 1, 32, 32), dtype=torch.uint8)
    batches = list(iter_features(encoder, images, ["y", PIXELS], batch_size=4))
    assert [start for start, _ in batches] == [0, 4, 8]
    y = np.concatenate([b["y"] for _, b in batches])
    with torch.no_grad():
        assert np.allclose(y, encoder.eval()(normalise(images))["y"].numpy(), atol=1e-5)
    assert np.array_equal(np.concatenate([b[PIXELS] for _, b in batches]), normalise(images).numpy())

"""Fréchet distance against scipy, Inception score at its two extremes, and the FID Inception
network's weights file handling (built offline from random weights)."""

import pickle

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file
from scipy import linalg
from torch import nn

from dimctl.errors import ArtifactError
from dimctl.evaluate.frechet import (FIDInception, frechet_distance, frechet_distance_of, gaussian_statistics,
                                     inception_score, load_fid_inception, network_outputs)


def _scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook computation (pytorch-fid's): scipy.linalg.sqrtm of Σ₁Σ₂, real part."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root))


def _gaussian(rng, n, d, shift=0.0):
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mixing.T + shift


def test_agrees_with_scipy_sqrtm_on_gaussian_samples():
    rng = np.random.default_rng(0)
    for d in (1, 5, 32):
        a = _gaussian(rng, 500, d)
        b = 1.5 * _gaussian(rng, 700, d, shift=0.3)
        assert frechet_distance_of(a, b) == pytest.approx(_scipy_frechet(a, b), rel=1e-7, abs=1e-9)


def test_agrees_with_scipy_when_covariances_are_singular():
    # Fewer samples than dimensions (as with 2048 Inception features and few images).
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(20, 40)), rng.normal(size=(25, 40)) + 0.1
    ours = frechet_distance_of(a, b)
    assert np.isfinite(ours) and ours == pytest.approx(_scipy_frechet(a, b), rel=1e-5)


def test_closed_form_and_two_draws_of_one_distribution():
    d = 6
    # N(0, I) vs N(0, 4I): d + 4d − 2·tr(2I) = d; a mean shift of m adds ‖m‖².
    assert frechet_distance(np.zeros(d), np.eye(d), np.zeros(d), 4 * np.eye(d)) == pytest.approx(d)
    assert frechet_distance(np.zeros(d), np.eye(d), np.full(d, 0.5), np.eye(d)) == pytest.approx(d * 0.25)
    rng = np.random.default_rng(2)
    same = frechet_distance_of(rng.normal(size=(20_000, d)), rng.normal(size=(20_000, d)))
    shifted = frechet_distance_of(rng.normal(size=(20_000, d)), rng.normal(size=(20_000, d)) + 1)
    assert same < 0.01 and shifted == pytest.approx(d, rel=0.05)
    assert frechet_distance_of(a := rng.normal(size=(100, d)), a) == pytest.approx(0.0, abs=1e-9)


def test_statistics_are_float64_and_need_two_samples():
    mu, sigma = gaussian_statistics(np.ones((3, 4), dtype=np.float32))
    assert mu.dtype == np.float64 and sigma.shape == (4, 4)
    with pytest.raises(Exception, match="at least 2 samples"):
        gaussian_statistics(np.ones((1, 4)))


class _StandIn(nn.Module):
    """Reads the class off the image's brightness (image k of K is filled with k/K): a perfect
    classifier with ``confident``, a constant one otherwise."""

    def __init__(self, classes: int, confident: bool):
        super().__init__()
        self.classes, self.confident = classes, confident

    def forward(self, x):
        level = (x[:, 0].mean(dim=(1, 2)) * self.classes).round().long().clamp(0, self.classes - 1)
        logits = 50.0 * nn.functional.one_hot(level, self.classes).float() if self.confident else \
            torch.tensor([1.0, 2.0, 3.0] + [0.0] * (self.classes - 3)).expand(x.shape[0], -1)
        return x.flatten(1)[:, :4], logits


@pytest.mark.parametrize("channels", [1, 3])
def test_inception_score_is_1_for_a_constant_classifier_and_k_for_a_perfect_uniform_one(channels):
    k = 7
    labels = torch.arange(70) % k  # every split of 10 holds each class once... and the whole set evenly
    images = (labels.float() / k * 255).round().to(torch.uint8).view(-1, 1, 1, 1).expand(-1, channels, 8, 8)
    _, probs = network_outputs(_StandIn(k, confident=False), images, batch_size=16)
    mean, std = inception_score(probs, splits=10)
    assert mean == pytest.approx(1.0, abs=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    _, probs = network_outputs(_StandIn(k, confident=True), images, batch_size=16)
    mean, std = inception_score(probs, splits=10)
    assert mean == pytest.approx(k, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)


def test_inception_score_needs_a_sample_per_split():
    with pytest.raises(Exception, match="at least 10 samples"):
        inception_score(np.full((5, 3), 1 / 3), splits=10)


@pytest.fixture(scope="module")
def inception_state():
    torch.manual_seed(0)
    return FIDInception().net.state_dict()


def test_fid_inception_has_the_keys_of_torchvisions_inception3_with_1008_classes(inception_state):
    # pytorch-fid's weights load strictly into this exact key set.
    reference = torchvision.models.inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    assert set(inception_state) == set(reference.state_dict())
    assert inception_state["fc.weight"].shape == (1008, 2048)


def test_loads_weights_from_pth_and_safetensors_and_scores_grey_images(inception_state, tmp_path):
    pth, st = tmp_path / "inception.pth", tmp_path / "inception.safetensors"
    torch.save(inception_state, pth)
    save_file({k: v.contiguous() for k, v in inception_state.items()}, str(st))
    images = torch.randint(0, 256, (2, 1, 32, 32), dtype=torch.uint8)
    outputs = []
    for path in (pth, st):
        network = load_fid_inception(path)
        assert not network.training
        pool, probs = network_outputs(network, images, batch_size=2)
        assert pool.shape == (2, 2048) and probs.shape == (2, 1008)
        np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-9)
        outputs.append(pool)
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5)


class _Payload:
    """Unpickling this would create a file: a stand-in for code a malicious weights file runs."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_that_runs_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"fc.weight": _Payload(marker)}, protocol=2))
    with pytest.raises(ArtifactError, match="not a readable weights file"):
        load_fid_inception(evil)
    assert not marker.exists()


def test_wrong_tensors_are_an_artifact_error(tmp_path):
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(other))
    with pytest.raises(ArtifactError, match="does not hold the FID Inception weights"):
        load_fid_inception(other)
    with pytest.raises(Exception, match="no such file"):
        load_fid_inception(tmp_path / "missing.pth")

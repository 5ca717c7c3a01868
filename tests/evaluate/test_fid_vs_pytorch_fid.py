"""dimctl's FID Inception network and Fréchet distance against pytorch-fid's, with the same
(random, seeded) weights loaded into both: the same pool3 activations and the same FID. (Real FID
needs the user's copy of the Inception weights file: `dimctl generate score --inception-weights`.)"""

import numpy as np
import pytest
import torch

pytorch_fid = pytest.importorskip("pytorch_fid")  # a test extra (pyproject.toml): installed in CI
from pytorch_fid import fid_score, inception  # noqa: E402

from dimctl.evaluate.fid_inception import FIDInception  # noqa: E402
from dimctl.evaluate.frechet import frechet_distance, gaussian_statistics  # noqa: E402


@pytest.fixture(scope="module")
def networks():
    torch.manual_seed(0)
    ours = FIDInception().eval()
    for module in ours.modules():  # running statistics that are not the identity, so BN is exercised
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    state = {k: v.clone() for k, v in ours.net.state_dict().items()}
    original = inception.load_state_dict_from_url
    inception.load_state_dict_from_url = lambda *args, **kwargs: state  # instead of the download
    try:
        theirs = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    finally:
        inception.load_state_dict_from_url = original
    return ours, theirs


def test_same_activations_and_same_fid(networks):
    ours, theirs = networks
    generator = torch.Generator().manual_seed(1)
    a = torch.rand(8, 3, 32, 32, generator=generator)
    b = torch.rand(8, 3, 32, 32, generator=generator) * 0.8 + 0.1
    with torch.no_grad():
        ours_a, ours_b = ours(a)[0].double().numpy(), ours(b)[0].double().numpy()
        theirs_a = theirs(a)[0].flatten(1).double().numpy()
        theirs_b = theirs(b)[0].flatten(1).double().numpy()
    scale = np.abs(theirs_a).max()
    assert np.abs(ours_a - theirs_a).max() <= 1e-5 * scale and np.abs(ours_b - theirs_b).max() <= 1e-5 * scale
    # The distance itself, on the same activations, by each library's formula.
    mu_a, sigma_a = gaussian_statistics(theirs_a)
    mu_b, sigma_b = gaussian_statistics(theirs_b)
    theirs_fid = fid_score.calculate_frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
    assert frechet_distance(mu_a, sigma_a, mu_b, sigma_b) == pytest.approx(theirs_fid, rel=1e-4)
    assert np.allclose(np.cov(theirs_a, rowvar=False), sigma_a)  # both take the unbiased covariance

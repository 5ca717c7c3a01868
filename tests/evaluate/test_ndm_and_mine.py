import torch

from dimctl.evaluate.mine import MINEConfig, estimate_image_mi
from dimctl.evaluate.ndm import NDMConfig, neural_dependency, shuffle_dimensions


def test_shuffling_is_per_dimension():
    y = torch.arange(200, dtype=torch.float32).view(100, 2)  # column 0 even, column 1 odd numbers
    shuffled = shuffle_dimensions(y, torch.Generator().manual_seed(0))
    for col in range(2):
        assert torch.equal(shuffled[:, col].sort().values, y[:, col])  # each marginal kept
    # The two columns were permuted differently: the rows no longer match up.
    assert not torch.equal(shuffled[:, 1] - shuffled[:, 0], torch.ones(100))


def _standard(x):
    return (x - x.mean(0)) / x.std(0)


def test_ndm_is_near_zero_for_independent_and_large_for_dependent_factors():
    g = torch.Generator().manual_seed(0)
    independent = _standard(torch.randn(4000, 8, generator=g))
    z = torch.randn(4000, 4, generator=g)
    duplicated = _standard(torch.cat([z, z + 0.1 * torch.randn(4000, 4, generator=g)], 1))
    config = NDMConfig(steps=600, lr=1e-3)
    low = neural_dependency(independent[:3000], independent[3000:], config)
    high = neural_dependency(duplicated[:3000], duplicated[3000:], config)
    assert abs(low.ndm) < 0.15, low
    assert high.ndm > 1.5 and high.ndm > low.ndm + 10 * (low.stderr + high.stderr), (low, high)


def test_mine_sees_information_only_when_y_depends_on_the_image():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (1200, 1, 16, 16), dtype=torch.uint8, generator=g)
    informative = _standard(images[:, 0, :4, :4].reshape(1200, -1).float())  # Y = a patch of the image
    noise = torch.randn(1200, 16, generator=g)  # Y independent of the image
    config = MINEConfig(steps=300, lr=1e-3)
    seen = estimate_image_mi(images[:1000], informative[:1000], images[1000:], informative[1000:], config)
    blind = estimate_image_mi(images[:1000], noise[:1000], images[1000:], noise[1000:], config)
    assert blind.estimate < 0.2, blind
    assert seen.estimate > blind.estimate + 0.5, (seen, blind)
    assert len(seen.curve) == 3 and seen.curve[-1]["lr"] < config.lr  # the learning rate decays

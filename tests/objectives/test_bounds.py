"""The MI bounds on hand-made score matrices whose values are worked out here by hand."""

import math

import pytest
import torch

from dimctl.objectives.bounds import ESTIMATORS, DVMovingAverage, _split, dv, infonce, jsd, smile


def sp(x):
    return math.log1p(math.exp(x))


def test_jsd_by_hand_2x2():
    a, b, c, d = 1.0, -0.5, 0.25, 2.0  # positives a, d; negatives b, c
    scores = torch.tensor([[a, b], [c, d]])
    expected = (-sp(-a) - sp(-d)) / 2 - (sp(b) + sp(c)) / 2
    assert jsd(scores).item() == pytest.approx(expected, abs=1e-6)


def test_dv_by_hand_2x2():
    a, b, c, d = 1.0, -0.5, 0.25, 2.0
    scores = torch.tensor([[a, b], [c, d]])
    expected = (a + d) / 2 - math.log((math.exp(b) + math.exp(c)) / 2)
    assert dv(scores).item() == pytest.approx(expected, abs=1e-6)


def test_infonce_by_hand_with_locations():
    # N = 2 images, M = 2 locations. For (i, m) the candidates are s[i, i, m] and all s[i, j != i, :].
    s = torch.tensor([[[1.0, 0.5], [0.2, -0.3]],
                      [[0.1, 0.4], [2.0, -1.0]]])
    terms = []
    for i in range(2):
        j = 1 - i
        negatives = [s[i, j, 0].item(), s[i, j, 1].item()]
        for m in range(2):
            pos = s[i, i, m].item()
            terms.append(pos - math.log(math.exp(pos) + sum(math.exp(v) for v in negatives)))
    expected = sum(terms) / len(terms) + math.log(1 + 1 * 2)
    assert infonce(s).item() == pytest.approx(expected, abs=1e-6)


def _brute_force(name, s):
    """Each bound written pair by pair: negatives of (i, m) are s[i, j, m'] for j != i only."""
    n, _, m = s.shape
    pos = [(i, k) for i in range(n) for k in range(m)]
    neg = [(i, j, k) for i in range(n) for j in range(n) if j != i for k in range(m)]
    if name == "jsd":
        return (sum(-sp(-s[i, i, k]) for i, k in pos) / len(pos)
                - sum(sp(s[i, j, k]) for i, j, k in neg) / len(neg))
    if name == "dv":
        return (sum(s[i, i, k] for i, k in pos) / len(pos)
                - math.log(sum(math.exp(s[i, j, k]) for i, j, k in neg) / len(neg)))
    if name == "smile":  # DV with the negatives clipped to [-5, 5]
        return (sum(s[i, i, k] for i, k in pos) / len(pos)
                - math.log(sum(math.exp(min(max(s[i, j, k], -5), 5)) for i, j, k in neg) / len(neg)))
    if name == "nwj":
        return (sum(s[i, i, k] for i, k in pos) / len(pos)
                - sum(math.exp(s[i, j, k] - 1) for i, j, k in neg) / len(neg))
    total = 0.0
    for i, k in pos:
        denominator = math.exp(s[i, i, k]) + sum(math.exp(s[i, j, kk]) for j in range(n) if j != i for kk in range(m))
        total += s[i, i, k] - math.log(denominator)
    return total / len(pos) + math.log(1 + (n - 1) * m)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_matches_pairwise_definition_with_own_locals_excluded(name):
    torch.manual_seed(0)
    s = torch.randn(3, 3, 4) * 3
    # Make an image's own locals at other positions stand out: were they counted as negatives
    # (or in infoNCE's denominator), the estimate would differ from the pairwise definition.
    s[torch.eye(3, dtype=torch.bool)] += 4.0
    expected = _brute_force(name, s.double().numpy())
    assert ESTIMATORS[name](s).item() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("n, m", [(2, 1), (3, 4), (7, 5)])
def test_split_takes_what_the_diagonal_mask_takes_in_its_order_with_its_gradient(n, m):
    # Strided views instead of boolean-mask indexing: the same elements, rows i and within them
    # j != i in order, and the same gradient back into the scores.
    s = torch.randn(n, n, m, dtype=torch.float64, requires_grad=True)
    eye = torch.eye(n, dtype=torch.bool)
    positives, negatives = _split(s)
    assert torch.equal(positives, s[eye]) and torch.equal(negatives, s[~eye].reshape(n, -1))
    weights = torch.randn(n, m, dtype=torch.float64), torch.randn(n, (n - 1) * m, dtype=torch.float64)
    by_views = torch.autograd.grad((positives * weights[0]).sum() + (negatives * weights[1]).sum(), s)[0]
    by_mask = torch.autograd.grad((s[eye] * weights[0]).sum() + (s[~eye].reshape(n, -1) * weights[1]).sum(), s)[0]
    assert torch.equal(by_views, by_mask)


def test_jsd_negative_part_ignores_diagonal_blocks():
    torch.manual_seed(1)
    s = torch.randn(5, 5, 2)
    eye = torch.eye(5, dtype=torch.bool)
    pos = s[eye]
    e_pos = (-torch.nn.functional.softplus(-pos)).mean()
    t = s.clone()
    t[eye] = 100.0  # saturate the positives: their term → 0
    assert jsd(t).item() == pytest.approx((jsd(s) - e_pos).item(), abs=1e-5)


def test_infonce_is_capped_by_log_candidates_and_reaches_it():
    n, m = 8, 4
    perfect = torch.full((n, n, m), -50.0)
    perfect[torch.eye(n, dtype=torch.bool)] = 50.0
    assert infonce(perfect).item() == pytest.approx(math.log(1 + (n - 1) * m), abs=1e-4)
    assert infonce(torch.randn(n, n, m)).item() < math.log(1 + (n - 1) * m)


def test_uninformative_critic_gives_zero_for_dv_and_infonce():
    # A critic that scores every pair alike carries no information: DV = 0, infoNCE = 0.
    flat = torch.full((6, 6, 2), 0.7)
    assert dv(flat).item() == pytest.approx(0.0, abs=1e-6)
    assert infonce(flat).item() == pytest.approx(0.0, abs=1e-6)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError):
        jsd(torch.zeros(3, 4))
    with pytest.raises(ValueError):
        dv(torch.zeros(1, 1, 2))


def test_smile_has_the_clipped_dv_value_and_the_jsd_gradient():
    torch.manual_seed(0)
    s = (torch.randn(4, 4, 2) * 3).requires_grad_(True)
    (g_smile,) = torch.autograd.grad(smile(s), s)
    (g_jsd,) = torch.autograd.grad(jsd(s), s)
    torch.testing.assert_close(g_smile, g_jsd)


def test_dv_moving_average_keeps_the_dv_value_and_reweights_the_gradient():
    torch.manual_seed(0)
    s = torch.randn(5, 5, 1).requires_grad_(True)
    corrected = DVMovingAverage(rate=0.5)
    first = corrected(s)
    assert first.item() == pytest.approx(dv(s).item(), abs=1e-6)
    # First call: the average is the batch mean, so the gradient equals plain DV's.
    torch.testing.assert_close(torch.autograd.grad(first, s)[0], torch.autograd.grad(dv(s), s)[0])
    # After a batch with much larger negatives the average is larger: the negatives' pull shrinks.
    corrected(torch.full((5, 5, 1), 3.0))
    (g,) = torch.autograd.grad(corrected(s), s)
    (g_plain,) = torch.autograd.grad(dv(s), s)
    off = ~torch.eye(5, dtype=torch.bool)
    assert (g[off].abs() < g_plain[off].abs()).all()
    torch.testing.assert_close(g[~off], g_plain[~off])  # positives unchanged

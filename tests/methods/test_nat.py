"""Noise as targets: the targets, the Hungarian reassignment, and the assignment as a permutation."""

import itertools

import torch

from dimctl.methods.nat import NATModel, best_permutation, random_targets
from dimctl.models.encoders import EncoderConfig, build_encoder

SMALL = EncoderConfig(in_channels=1, image_size=32, width=0.25, fc_dim=64, y_dim=8)


def test_targets_lie_on_the_unit_sphere_and_follow_the_seed():
    t = random_targets(100, 8, seed=3)
    torch.testing.assert_close(t.norm(dim=1), torch.ones(100))
    assert torch.equal(t, random_targets(100, 8, seed=3)) and not torch.equal(t, random_targets(100, 8, seed=4))


def test_best_permutation_is_the_brute_force_optimum():
    torch.manual_seed(0)
    for _ in range(5):
        features = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
        targets = random_targets(6, 4, seed=int(torch.randint(100, ())))
        p = best_permutation(features, targets)
        assert sorted(p.tolist()) == list(range(6))
        cost = lambda perm: (features - targets[list(perm)]).pow(2).sum().item()  # noqa: E731
        assert abs(cost(p.tolist()) - min(cost(q) for q in itertools.permutations(range(6)))) < 1e-5


def test_assignment_stays_a_permutation_and_only_batch_images_trade():
    torch.manual_seed(0)
    nat = NATModel(build_encoder(SMALL), 8, num_train=50, seed=0)
    before = nat.assignment.clone()
    for step in range(10):
        index = torch.randperm(50)[:16]
        out = nat(torch.rand(16, 1, 32, 32) * 2 - 1, index)
        assert torch.isfinite(out.terms["nat_l2"])
        held_before = set(before[index].tolist())
        assert set(nat.assignment[index].tolist()) == held_before  # the batch traded among itself
        others = torch.ones(50, dtype=torch.bool)
        others[index] = False
        assert torch.equal(nat.assignment[others], before[others])  # nobody else's target moved
        assert sorted(nat.assignment.tolist()) == list(range(50))
        before = nat.assignment.clone()


def test_reassignment_lowers_the_loss_and_is_saved_with_the_model():
    torch.manual_seed(0)
    nat = NATModel(build_encoder(SMALL), 8, num_train=32, seed=0)
    x, index = torch.rand(32, 1, 32, 32) * 2 - 1, torch.arange(32)
    nat.eval()  # eval: no reassignment, BN fixed — the loss under the identity assignment
    identity_loss = nat(x, index).terms["nat_l2"].item()
    nat.train()
    nat(x, index)  # reassigns
    nat.eval()
    assert nat(x, index).terms["nat_l2"].item() <= identity_loss + 1e-6
    state = nat.state_dict()
    assert "assignment" in state and "targets" in state

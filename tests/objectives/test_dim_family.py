"""The DIM family's pieces (paper §4.2–4.3, App. A.7): occlusion masks, coordinate targets,
multiple-globals blocks, both local critics, and the whole objective training through the loop."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from dimctl.data.registry import load_dataset
from dimctl.models.encoders import EncoderConfig, build_encoder
from dimctl.models.heads import ConcatCritic, LocalEmbedding, VectorEmbedding, dot_scores
from dimctl.objectives import coordinates
from dimctl.objectives.blocks import random_blocks
from dimctl.objectives.bounds import ESTIMATORS, PAIRED_ESTIMATORS, _split
from dimctl.objectives.occlusion import block_size, occlusion_masks, receptive_field
from dimctl.train.config import PretrainConfig
from dimctl.train.pretrain import pretrain


def test_dcgan_receptive_field_and_block_size():
    encoder = build_encoder(EncoderConfig(in_channels=1, image_size=32))
    # conv4×4/2 twice: 4 + 3·2 = 10 pixels; the smallest divisor of 32 covering it is 16.
    assert receptive_field(encoder, 1, 32) == 10
    assert block_size(32, 10) == 16 and block_size(64, 10) == 16 and block_size(32, 40) == 16


def test_occlusion_masks_hide_and_keep_whole_blocks():
    masks = occlusion_masks(500, 32, 8, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert masks.shape == (500, 1, 32, 32) and set(masks.unique().tolist()) <= {0.0, 1.0}
    blocks = masks[:, 0].unfold(1, 8, 8).unfold(2, 8, 8)  # (N, 4, 4, 8, 8)
    per_block = blocks.reshape(500, 16, 64)
    assert torch.all((per_block.min(2).values == per_block.max(2).values))  # each block all-visible or all-hidden
    visible = per_block[:, :, 0].sum(1)
    assert torch.all(visible >= 1) and torch.all(visible <= 15)  # at least one block shown and one hidden
    assert 0.4 < per_block[:, :, 0].mean() < 0.6  # each block hidden about half the time


def test_absolute_coordinate_targets_match_locations():
    n, h, w = 2, 3, 4
    local = torch.arange(n * h * w, dtype=torch.float32).view(n, 1, h, w)
    rows, cols = coordinates.absolute_targets(n, h, w, torch.device("cpu"))
    flat = local.flatten(2).transpose(1, 2).reshape(-1)  # the order absolute_loss uses
    for k in range(n * h * w):
        i, rest = divmod(int(flat[k]), h * w)
        assert (rows[k].item(), cols[k].item()) == divmod(rest, w)


def test_relative_coordinate_targets_are_offsets_from_the_source():
    h, w = 3, 5
    source = torch.tensor([0, 7])  # (0, 0) and (1, 2)
    rows, cols = coordinates.relative_targets(source, h, w)
    rows, cols = rows.view(2, h * w), cols.view(2, h * w)
    for i, (sr, sc) in enumerate([(0, 0), (1, 2)]):
        for t in range(h * w):
            tr, tc = divmod(t, w)
            assert rows[i, t] == tr - sr + h - 1 and cols[i, t] == tc - sc + w - 1
    assert rows.min() >= 0 and rows.max() <= 2 * h - 2 and cols.max() <= 2 * w - 2


def test_multiple_globals_blocks_are_rectangles_of_the_local_grid():
    masks = random_blocks(400, 7, 7, torch.device("cpu"), min_side=2, generator=torch.Generator().manual_seed(1))
    assert masks.shape == (400, 1, 7, 7)
    sides = set()
    for m in masks[:, 0]:
        r, c = m.nonzero(as_tuple=True)
        height, width = int(r.max() - r.min() + 1), int(c.max() - c.min() + 1)
        assert m.sum() == height * width  # one filled rectangle
        assert 2 <= height <= 7 and 2 <= width <= 7
        sides.add((height, width))
    assert len(sides) > 20  # sizes vary across draws
    corners = {(int(m[0].nonzero()[0, 0]), int(m[0].nonzero()[0, 1])) for m in masks}
    assert len(corners) > 10  # and positions too


def test_paired_bounds_equal_the_square_form():
    scores = torch.randn(6, 6, 5)
    for name in ESTIMATORS:
        torch.testing.assert_close(ESTIMATORS[name](scores), PAIRED_ESTIMATORS[name](*_split(scores)))


def _toy(n=32, c=8, side=4, y_dim=6, seed=0):
    """Local maps whose features share an image-level code that Y carries."""
    mix = torch.randn(y_dim, c, generator=torch.Generator().manual_seed(12345))  # fixed across batches
    g = torch.Generator().manual_seed(seed)
    code = torch.randn(n, y_dim, generator=g)
    local = (code @ mix)[:, :, None, None] + 0.3 * torch.randn(n, c, side, side, generator=g)
    return code + 0.1 * torch.randn(n, y_dim, generator=g), local


@pytest.mark.parametrize("critic", ["dot", "concat"])
def test_both_local_critics_score_positives_above_negatives_after_training(critic):
    torch.manual_seed(0)
    if critic == "dot":
        modules = torch.nn.ModuleList([VectorEmbedding(6, 32), LocalEmbedding(8, 32)])

        def pairs(y, local):
            return _split(dot_scores(modules[0](y), modules[1](local)))
    else:
        modules = torch.nn.ModuleList([ConcatCritic(8, 6, hidden=32)])

        def pairs(y, local):
            return modules[0].score_shifted(*modules[0].project(y, local), negatives=3)
    optimiser = torch.optim.Adam(modules.parameters(), lr=1e-3)
    for step in range(150):
        y, local = _toy(seed=step)
        loss = -PAIRED_ESTIMATORS["jsd"](*pairs(y, local))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    modules.eval()
    with torch.no_grad():
        positives, negatives = pairs(*_toy(seed=10_000))
    assert positives.mean() > negatives.mean() + 2.0, (positives.mean(), negatives.mean())


@pytest.mark.parametrize("options", [
    dict(local_critic="concat", estimator="infonce"),
    dict(occlude=True, alpha=0.5),
    dict(coord="both", coord_abs_weight=0.5),
    dict(arch="folded-resnet", width=0.125, globals=2, estimator="infonce", gamma=0.0),
])
def test_each_extension_trains_with_finite_losses(options, tmp_path):
    digits = load_dataset("digits")
    data = replace(digits, train_images=digits.train_images[:192], train_labels=digits.train_labels[:192])
    config = PretrainConfig.of(mi_units=32, batch_size=32, epochs=2, checkpoint_every=0, log_every=1, **options)
    result = pretrain(config, data, tmp_path / "run")
    assert all(np.isfinite(v) for v in result.final_metrics.values())
    if options.get("coord"):
        assert {"coord_abs_ce", "coord_rel_ce"} <= set(result.final_metrics)
        # The predictors learn: the absolute cross-entropy falls below chance (log 8 + log 8).
        assert result.final_metrics["coord_abs_ce"] < 2 * np.log(8)


@pytest.mark.parametrize("globals_", [0, 2])
def test_the_locals_are_embedded_once_for_every_global_with_the_same_value_and_gradients(globals_):
    # With less-global summaries (--globals K) every global meets the same local embedding: it is
    # computed once a step, not K + 1 times; the term and its gradients are those of K + 1 embeddings.
    from dimctl.objectives.dim import DIMConfig, DIMHeads
    torch.manual_seed(0)
    config = DIMConfig(alpha=0.0, beta=1.0, gamma=0.0, estimator="jsd", mi_units=16, globals=globals_)
    heads = DIMHeads(config, {"local": (6, 4, 4), "y": (5,)}).double()
    local, y = torch.randn(4, 6, 4, 4, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    summaries = [torch.randn(4, 5, dtype=torch.float64) for _ in range(globals_)]
    calls = []
    hook = heads.local_map.register_forward_hook(lambda *_: calls.append(1))
    once = heads.terms(local, y, summaries)["local_mi"]
    hook.remove()
    assert len(calls) == 1
    grads = torch.autograd.grad(once, list(heads.parameters()))
    each = torch.stack([ESTIMATORS["jsd"](dot_scores(heads.local_y(g), heads.local_map(local)).float())
                        for g in [y, *summaries]]).mean()  # the bounds run in float32 in both
    torch.testing.assert_close(once, each)
    for got, expected in zip(grads, torch.autograd.grad(each, list(heads.parameters()))):
        torch.testing.assert_close(got, expected)

"""CPC: summaries only see the rows above, and predictions are scored only against the intended rows."""

import pytest
import torch

from dimctl.methods.cpc import CPCModel, positive_index, split_scores
from dimctl.models.encoders import EncoderConfig, build_encoder, tap_shapes

SMALL = EncoderConfig(in_channels=1, image_size=32, width=0.25, fc_dim=32, y_dim=8)


def cpc(rows=2, estimator="infonce"):
    torch.manual_seed(0)
    return CPCModel(build_encoder(SMALL), tap_shapes(SMALL), rows, mi_units=16, estimator=estimator)


def test_positive_index_is_same_image_same_column_k_rows_down():
    n, h, w, k = 3, 5, 4, 2
    expected = [img * h * w + (r + k) * w + c for img in range(n) for r in range(h - k) for c in range(w)]
    assert positive_index(n, h, w, k).tolist() == expected


def test_split_scores_separates_the_positive():
    scores = torch.arange(12.0).view(3, 4)
    positives, negatives = split_scores(scores, torch.tensor([1, 0, 3]))
    assert positives.view(-1).tolist() == [1.0, 4.0, 11.0]
    assert negatives.tolist() == [[0.0, 2.0, 3.0], [5.0, 6.0, 7.0], [8.0, 9.0, 10.0]]


def test_summary_of_a_row_sees_only_the_rows_above_in_its_column():
    model = cpc().eval()
    local = torch.randn(2, 32, 6, 5)
    changed = local.clone()
    changed[:, :, 3:, :] += torch.randn_like(changed[:, :, 3:, :])  # rows 3.. change
    changed[:, :, :, 4] += 1.0  # and all of column 4
    with torch.no_grad():
        a, b = model.context(local), model.context(changed)
    torch.testing.assert_close(a[:, :, :3, :4], b[:, :, :3, :4])  # rows 0-2 of columns 0-3: unchanged
    assert not torch.allclose(a[:, :, 3:, :4], b[:, :, 3:, :4])
    assert not torch.allclose(a[:, :, :, 4], b[:, :, :, 4])


@pytest.mark.parametrize("k", [1, 2])
def test_offset_k_scores_no_summary_of_the_last_k_rows(k):
    model = cpc(rows=2).train()
    local = torch.randn(4, 32, 6, 5)
    context = model.context(local).detach().requires_grad_(True)
    model.offset_mi(local, context, k).backward()
    grad = context.grad.abs().sum(dim=(0, 1, 3))  # per row
    assert (grad[:6 - k] > 0).all() and (grad[6 - k:] == 0).all()


def test_the_positive_is_the_local_feature_k_rows_below():
    """With the embedding of a local feature equal to one-hot of its (image, row, column), and the
    prediction made to point at the feature k rows below, infoNCE reaches its cap log K: only
    the intended row scores high."""
    model = cpc(rows=1)
    n, c, h, w = 2, 8, 6, 5
    q = n * h * w
    local = torch.zeros(n, c, h, w)

    class OneHot(torch.nn.Module):
        def forward(self, x):  # (N, C, H, W) → (N, H·W, Q): feature (img, r, col) → one-hot
            return torch.eye(q).view(n, h * w, q) * 100

    class PointDown(torch.nn.Module):
        def forward(self, sources):  # the P sources in (image, row, column) order → one-hot of their positives
            return torch.eye(q)[positive_index(n, h, w, 1)] * 100

    model.embed[0], model.predict[0] = OneHot(), PointDown()
    value = model.offset_mi(local, torch.zeros(n, c, h, w), 1)
    assert value.item() == pytest.approx(torch.log(torch.tensor(float(q))).item(), abs=1e-3)


def test_cpc_rows_must_fit_the_map():
    with pytest.raises(ValueError, match="rows ahead"):
        cpc(rows=8)


def test_cpc_trains_on_the_folded_encoders_crop_grid():
    folded = EncoderConfig(arch="folded-resnet", in_channels=1, image_size=32, width=0.0625, fc_dim=16, y_dim=8)
    assert tap_shapes(folded)["local"][1:] == (7, 7)
    torch.manual_seed(0)
    model = CPCModel(build_encoder(folded), tap_shapes(folded), 3, mi_units=16, estimator="infonce")
    out = model(torch.rand(4, 1, 32, 32) * 2 - 1)
    assert set(out.terms) == {"cpc_mi", "cpc_mi_1", "cpc_mi_2", "cpc_mi_3"}
    model.loss(out.terms).backward()
    crop_grads = [p.grad for p in model.encoder.crops.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in crop_grads)
    assert not any(p.requires_grad for p in [*model.encoder.fc.parameters(), *model.encoder.head.parameters()])
    assert all(p.requires_grad for p in model.encoder.crops.parameters())

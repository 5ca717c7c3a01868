"""Coordinate prediction (paper §4.3, App. A.7): auxiliary tasks that make a local feature's place
in the image predictable from it and the global feature.

- Absolute: from [local feature at (r, c); Y] predict r and c, two categorical cross-entropies,
  over every location of every image (the paper marginalises over all local features).
- Relative: per image one random source location s; for every target location t, from
  [local at s; local at t; Y] predict the offset t - s (rows and columns, 2H-1 and 2W-1 classes).
The losses are minimised by the encoder and the predictors together (minimising the cross-entropy
maximises a lower bound on the conditional MI with the coordinates).
"""

import torch
import torch.nn.functional as F

from dimctl.models.heads import CoordinatePredictor


def absolute_targets(n: int, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of every location, in the order of ``local.flatten(2)``: (N·H·W,) each."""
    rows = torch.arange(h, device=device).repeat_interleave(w).repeat(n)
    cols = torch.arange(w, device=device).repeat(h).repeat(n)
    return rows, cols


def absolute_loss(predictor: CoordinatePredictor, local: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    n, c, h, w = local.shape
    features = local.flatten(2).transpose(1, 2)  # (N, M, C)
    inputs = torch.cat([features, y[:, None, :].expand(n, h * w, y.shape[1])], dim=2).reshape(n * h * w, -1)
    row_logits, col_logits = predictor(inputs)
    rows, cols = absolute_targets(n, h, w, local.device)
    return F.cross_entropy(row_logits, rows) + F.cross_entropy(col_logits, cols)


def relative_targets(source: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Offsets from each image's source location (N,) to every location, shifted to class indices:
    row offset + (H-1) in [0, 2H-2], column offset + (W-1) in [0, 2W-2]; shape (N·H·W,) each."""
    n = source.shape[0]
    src_r, src_c = (source // w)[:, None], (source % w)[:, None]
    tgt_r = torch.arange(h, device=source.device).repeat_interleave(w)[None]
    tgt_c = torch.arange(w, device=source.device).repeat(h)[None]
    return ((tgt_r - src_r) + (h - 1)).reshape(n * h * w), ((tgt_c - src_c) + (w - 1)).reshape(n * h * w)


def relative_loss(predictor: CoordinatePredictor, local: torch.Tensor, y: torch.Tensor,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    n, c, h, w = local.shape
    m = h * w
    features = local.flatten(2).transpose(1, 2)  # (N, M, C)
    source = torch.randint(0, m, (n,), device=local.device, generator=generator)
    source_features = features[torch.arange(n, device=local.device), source]  # (N, C)
    inputs = torch.cat([source_features[:, None].expand(n, m, c), features,
                        y[:, None, :].expand(n, m, y.shape[1])], dim=2).reshape(n * m, -1)
    row_logits, col_logits = predictor(inputs)
    rows, cols = relative_targets(source, h, w)
    return F.cross_entropy(row_logits, rows) + F.cross_entropy(col_logits, cols)

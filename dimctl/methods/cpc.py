"""Contrastive predictive coding (CPC, Oord et al. 2018) over the grid of local features, in the
paper's Table 3 setting.

The local map (N, C, H, W) — with the folded encoders, the 7×7 grid of strided crops — is read
column by column, top to bottom, by a GRU whose hidden state has the map's depth (App. A.2: "a
GRU-based PixelRNN with the same number of hidden units as the feature map depth"). Its output at
row r is the summary c[r] of rows 0..r of that column. For each offset k = 1..K (``--cpc-rows``)
a separate encode-and-dot-product network (the heads DIM uses: models/heads.py) scores the
prediction from c[r] against every local feature of the (global) batch; the positive is the local
feature k rows below in the same column, (r + k, column), of the same image, and every other
local feature — other images and other positions of the same image — is a negative. The bound is
``--estimator`` (infoNCE in the paper), averaged over the K offsets.

The summaries of the last k rows have nothing below them to predict and are not scored for k.
Prior matching is left out, as in the paper. CPC trains the layers up to the local map; the
layers after it (conv, fc, Y) see no loss, so they are frozen at their initialisation (which also
keeps DDP from waiting for gradients that never come); their BatchNorm statistics still follow the
trained local map. Probe the local map: ``conv`` for the folded encoders, where conv is the local map.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn

from dimctl.collectives import gather_with_grad
from dimctl.errors import UsageError
from dimctl.methods.base import Method, MethodOutput
from dimctl.models.encoders import EncoderConfig, tap_shapes
from dimctl.models.heads import LocalEmbedding, VectorEmbedding
from dimctl.objectives.bounds import PAIRED_ESTIMATORS, REGISTRY, display_name
from dimctl.settings import setting


def positive_index(n: int, height: int, width: int, k: int) -> torch.Tensor:
    """For the predictions from rows 0..height-1-k of n images, flattened (image, row, column), the
    index of each one's positive among the n·height·width local features flattened the same way:
    the same image and column, k rows down."""
    image = torch.arange(n).view(n, 1, 1)
    row = torch.arange(height - k).view(1, -1, 1)
    column = torch.arange(width).view(1, 1, -1)
    return (image * height * width + (row + k) * width + column).reshape(-1)


def split_scores(scores: torch.Tensor, positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """scores (P, Q) of P predictions against Q candidates → positives (P, 1), negatives (P, Q−1)."""
    mask = torch.ones_like(scores, dtype=torch.bool)
    mask[torch.arange(scores.shape[0], device=scores.device), positive] = False
    positives = scores.gather(1, positive.view(-1, 1))
    return positives, scores[mask].view(scores.shape[0], -1)


def _parameters_after_local_map(encoder: nn.Module) -> list[nn.Parameter]:
    """The encoder's parameters that the local map does not depend on: one backward from a blank
    local map of two images finds them."""
    was_training = encoder.training
    encoder.eval()
    size = encoder.config.image_size
    encoder.encode_local(torch.zeros(2, encoder.config.in_channels, size, size)).sum().backward()
    unused = [p for p in encoder.parameters() if p.grad is None]
    encoder.zero_grad(set_to_none=True)
    encoder.train(was_training)
    return unused


class CPCModel(nn.Module):
    def __init__(self, encoder: nn.Module, tap_shapes: dict[str, tuple[int, ...]], rows: int, mi_units: int,
                 estimator: str):
        super().__init__()
        channels, height, width = tap_shapes["local"]
        if not 1 <= rows < height:
            raise ValueError(f"CPC predicts 1 to {height - 1} rows ahead on a local map {height} rows high, not {rows}")
        if estimator not in REGISTRY:
            raise ValueError(f"unknown estimator {estimator!r}")
        self.encoder = encoder
        for parameter in _parameters_after_local_map(encoder):
            parameter.requires_grad_(False)
        self.rows = rows
        self.estimator = estimator
        self.summary = nn.GRU(channels, channels, batch_first=True)
        self.predict = nn.ModuleList(VectorEmbedding(channels, mi_units) for _ in range(rows))
        self.embed = nn.ModuleList(LocalEmbedding(channels, mi_units) for _ in range(rows))

    def context(self, local: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → the summaries (N, C, H, W): at (r, column), of rows 0..r of that column."""
        n, c, h, w = local.shape
        columns = local.permute(0, 3, 2, 1).reshape(n * w, h, c)  # each column a sequence of rows
        summaries, _ = self.summary(columns)
        return summaries.reshape(n, w, h, c).permute(0, 3, 2, 1)

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> MethodOutput:
        local = self.encoder.encode_local(x)
        with torch.no_grad():  # Y for the record (and BatchNorm statistics); no loss reaches it
            y = self.encoder.summarise(local)["y"]
        terms = {f"cpc_mi_{k}": self.offset_mi(local, self.context(local), k) for k in range(1, self.rows + 1)}
        terms["cpc_mi"] = torch.stack(list(terms.values())).mean()
        return MethodOutput(y, terms, self.loss(terms))

    def offset_mi(self, local: torch.Tensor, context: torch.Tensor, k: int) -> torch.Tensor:
        """The bound for offset k: predictions from rows 0..H-1-k against every local feature."""
        n, c, h, w = local.shape
        sources = context[:, :, :h - k, :].permute(0, 2, 3, 1).reshape(-1, c)  # (N·(H-k)·W, C), (image, row, column)
        predictions = gather_with_grad(self.predict[k - 1](sources))
        candidates = self.embed[k - 1](local).reshape(n * h * w, -1)  # (N·H·W, U), (image, row, column)
        candidates = gather_with_grad(candidates)
        scores = (predictions @ candidates.T).float() / math.sqrt(candidates.shape[1])
        images = candidates.shape[0] // (h * w)  # the global batch
        positives, negatives = split_scores(scores, positive_index(images, h, w, k).to(scores.device))
        return PAIRED_ESTIMATORS[self.estimator](positives, negatives)

    def loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return -terms["cpc_mi"]


@dataclass(frozen=True)
class CPCSettings:
    """CPC's own settings (``CPC.settings``): options of `dimctl pretrain`, refused with another --method."""

    PANEL = "CPC"  # the --help heading of the settings declared here

    cpc_rows: int = setting(3, "--method cpc: predict 1 to this many rows ahead, one network per offset.",
                            positive=True)


class CPC(Method):
    name, label = "cpc", "CPC"
    settings = CPCSettings
    default_estimator = "infonce"  # CPC's own bound (van den Oord et al.)
    help = "cpc (contrastive predictive coding over the local map's rows; best with --arch folded-resnet)"

    def build(self, config, encoder, encoder_config, num_train):
        objective, rows = config.objective, self.own_settings(config).cpc_rows
        return CPCModel(encoder, tap_shapes(encoder_config), rows, objective.mi_units, objective.estimator), None

    def validate(self, config) -> None:
        encoder = EncoderConfig(arch=config.encoder.arch, image_size=config.input_size(), y_dim=config.encoder.y_dim,
                                width=config.encoder.width, fc_dim=config.encoder.fc_dim)
        height = tap_shapes(encoder)["local"][1]
        rows = self.own_settings(config).cpc_rows
        if not 1 <= rows < height:
            raise UsageError(f"--cpc-rows {rows}: the {config.encoder.arch} local map is {height} "
                             f"rows high, so CPC can predict 1 to {height - 1} rows ahead")

    def describe(self, settings, weight=str):
        estimator = settings.get("estimator")
        return f"{self.label} {display_name(estimator)} {settings.get('cpc_rows')} rows"

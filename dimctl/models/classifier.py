"""The paper's small classifier: linear 200 → dropout 0.1 → batch norm → ReLU → linear.

The authors' code puts it on a frozen layer to probe it (`dimctl probe --classifier mlp`,
evaluate/probes.py) and on the last convolutional layer to fine-tune the whole encoder
(`dimctl finetune`, train/finetune.py).
"""

from torch import nn

PAPER_HIDDEN = 200
PAPER_DROPOUT = 0.1


def paper_classifier(in_features: int, classes: int, hidden: int = PAPER_HIDDEN,
                     dropout: float = PAPER_DROPOUT) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, hidden), nn.Dropout(dropout), nn.BatchNorm1d(hidden), nn.ReLU(),
                         nn.Linear(hidden, classes))
